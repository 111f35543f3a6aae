"""The `m2l` entry point: the command registry, the parser and the error reporting around it.

Subcommands live in `COMMANDS` (name -> `Command(help, add_arguments, run)`); adding one is one
entry there. `run` receives the parsed namespace and returns the exit code. Exit codes: 0 success,
1 when any input failed, 2 for usage errors, 3 when a codec command into an output folder failed
nothing but found outputs there already (`m2l.cli.report.EXIT_OUTPUTS_EXIST`), 130 when
interrupted.

A command's module is imported when its options are declared or it runs, and `main` declares the
options of the one command it runs: `m2l --help` lists every command from this table alone.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from m2l.cli.report import PROG, describe, error, show_warning
from m2l.errors import M2LError


@dataclass(frozen=True)
class Command:
    """A subcommand: `add_arguments(parser)` declares its options, `run(args)` returns the exit
    code; an `M2LError` it raises is reported as one line with exit code 1. Expensive imports
    belong inside `run` so that `m2l --help` stays fast (and free of torch)."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def deferred(module: str, function: str) -> Callable[..., Any]:
    """`module.function`, imported when it is first called."""

    def call(*args: Any) -> Any:
        return getattr(importlib.import_module(module), function)(*args)

    call.__qualname__ = call.__name__ = function
    return call


def command(module: str, name: str, help: str) -> Command:
    """The command whose `add_<name>` and `run_<name>` are in `module` (imported when used)."""
    return Command(help, deferred(module, f"add_{name}"), deferred(module, f"run_{name}"))


COMMANDS: dict[str, Command] = {
    "encode": command("m2l.cli.codec", "encode", "encode audio files to .m2l latent files"),
    "decode": command("m2l.cli.codec", "decode", "decode .m2l latent files to audio"),
    "reconstruct": command("m2l.cli.codec", "reconstruct", "encode and decode audio (audio -> audio)"),
    "info": command("m2l.cli.info", "info", "describe .m2l latent files and model checkpoints"),
    "convert": command(
        "m2l.cli.codec", "convert", "write a model (e.g. the authors' music2latent.pt) as an m2l checkpoint"
    ),
    "train": command("m2l.train.cli", "train", "train a model (one process, or many under torchrun)"),
    "export": command(
        "m2l.train.cli", "export", "write a training checkpoint's EMA weights as an inference checkpoint"
    ),
    "eval": command(
        "m2l.evaluate.cli",
        "eval",
        "reconstruct a fixed item set with one or more models; metrics + HTML report",
    ),
    "probe": command(
        "m2l.probe.cli", "probe", "MIR probes (pitch, pitch class, instrument) on a labelled note set"
    ),
    "data": command(
        "m2l.datasets.cli",
        "data",
        "build open music/speech/note data sets with manifests (m2l data fetch DATA_DIR)",
    ),
    "pack": command(
        "m2l.latents.cli",
        "pack",
        "pack a folder of .m2l files into a sharded latent dataset (shards + index.jsonl)",
    ),
    "stats": command(
        "m2l.latents.cli",
        "stats",
        "per-dimension mean/std of the latents of a dataset or .m2l folder (JSON)",
    ),
    "gen": command(
        "m2l.generate.cli",
        "gen",
        "latent generator jobs: m2l gen train DATASET --out RUN, m2l gen export RUN OUT, "
        "m2l gen eval TEST_AUDIO -o OUT",
    ),
    "generate": command(
        "m2l.generate.cli", "generate", "generate audio with a latent generator (sampled latents -> codec)"
    ),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The `m2l` parser with one subparser per entry of `COMMANDS`.

    Args:
        only: declare the options of this command alone (the others are listed with their help,
            and refuse nothing they are not given); every command's when None.
    """
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
        if only is None or name == only:
            cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


def chosen_command(argv: list[str]) -> str:
    """The command `argv` names: its first word that is not an option (`m2l` itself takes no
    option with a value); "" when there is none."""
    return next((word for word in argv if not word.startswith("-")), "")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 failures, 2 usage, 3 outputs existed,
    130 interrupt).

    Args:
        argv: the arguments after the program name (default: `sys.argv[1:]`).
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(only=chosen_command(argv))
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
