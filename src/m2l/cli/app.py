"""The `m2l` entry point: the command registry, the parser and the error reporting around it.

Subcommands live in `COMMANDS` (name -> `Command(help, add_arguments, run)`); adding one is one
entry there. `run` receives the parsed namespace and returns the exit code. Exit codes: 0 success,
1 when any input failed, 2 for usage errors, 3 when a codec command into an output folder failed
nothing but found outputs there already (`m2l.cli.report.EXIT_OUTPUTS_EXIST`), 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from m2l.cli import codec, info
from m2l.cli.report import PROG, describe, error, show_warning
from m2l.datasets import cli as data_cli
from m2l.errors import M2LError
from m2l.evaluate import cli as eval_cli
from m2l.latents import cli as latents_cli
from m2l.probe import cli as probe_cli
from m2l.train import cli as train_cli


@dataclass(frozen=True)
class Command:
    """A subcommand: `add_arguments(parser)` declares its options, `run(args)` returns the exit
    code; an `M2LError` it raises is reported as one line with exit code 1. Expensive imports
    belong inside `run` so that `m2l --help` stays fast (and free of torch)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {
    "encode": Command("encode audio files to .m2l latent files", codec.add_encode, codec.run_encode),
    "decode": Command("decode .m2l latent files to audio", codec.add_decode, codec.run_decode),
    "reconstruct": Command(
        "encode and decode audio (audio -> audio)", codec.add_reconstruct, codec.run_reconstruct
    ),
    "info": Command("describe .m2l latent files and model checkpoints", info.add_info, info.run_info),
    "convert": Command(
        "write a model (e.g. the authors' music2latent.pt) as an m2l checkpoint",
        codec.add_convert,
        codec.run_convert,
    ),
    "train": Command(
        "train a model (one process, or many under torchrun)", train_cli.add_train, train_cli.run_train
    ),
    "export": Command(
        "write a training checkpoint's EMA weights as an inference checkpoint",
        train_cli.add_export,
        train_cli.run_export,
    ),
    "eval": Command(
        "reconstruct a fixed item set with one or more models; metrics + HTML report",
        eval_cli.add_eval,
        eval_cli.run_eval,
    ),
    "probe": Command(
        "MIR probes (pitch, pitch class, instrument) on a labelled note set",
        probe_cli.add_probe,
        probe_cli.run_probe,
    ),
    "data": Command(
        "build open music/speech/note data sets with manifests (m2l data fetch DATA_DIR)",
        data_cli.add_data,
        data_cli.run_data,
    ),
    "pack": Command(
        "pack a folder of .m2l files into a sharded latent dataset (shards + index.jsonl)",
        latents_cli.add_pack,
        latents_cli.run_pack,
    ),
    "stats": Command(
        "per-dimension mean/std of the latents of a dataset or .m2l folder (JSON)",
        latents_cli.add_stats,
        latents_cli.run_stats,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The `m2l` parser with one subparser per entry of `COMMANDS`."""
    from m2l import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Consistency autoencoders for audio (Music2Latent).",
        epilog="Each command's options: m2l COMMAND --help. Exit status: 0 success, 1 an input "
        "failed (one line names it), 2 usage error, 3 a codec command into an output folder "
        "failed nothing but found outputs there already, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failures, 2 usage, 3 outputs existed,
    130 interrupt).

    Args:
        argv: the arguments after the program name (default: `sys.argv[1:]`).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            return int(args.run(args))
    except M2LError as err:  # a command's bad input: one line, exit 1
        error(describe(err))
        return 1
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `m2l info ... | head`: stop quietly
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            pass
        return 1
    except OSError as err:  # a failing disk or folder (permissions, missing, full): one line, exit 1
        error(describe(err))
        return 1
    except RuntimeError as err:  # torch.OutOfMemoryError (a GPU's) where no smaller batch is tried
        if type(err).__name__ != "OutOfMemoryError":
            raise
        error(f"{describe(err)} (lower --batch-size or --window; for training, --set batch_size)")
        return 1
