"""`m2l eval` (registered in `m2l.cli.COMMANDS`, which reports its M2LError as one line)."""

from __future__ import annotations

import argparse
import math
import shlex
from pathlib import Path

from m2l.cli.args import add_quiet, check_device, finite_float, int_at_least, number_list, positive_int
from m2l.config import STEREO_MODES

DEFAULT_EMBEDDINGS = ("mel-stats", "vggish", "clap")


_steps_list = number_list(int, lambda v: v >= 1, "positive integers")
_sigma_list = number_list(float, lambda v: math.isfinite(v) and v >= 0, "numbers >= 0")
_seconds = finite_float("a positive number", lambda v: v >= 1e-3)
_count = int_at_least(0, "an integer >= 0")


def add_eval(p: argparse.ArgumentParser) -> None:
    """Declare the options of `m2l eval`."""
    _add_eval_inputs(p)
    _add_eval_decoding(p)
    _add_eval_report(p)


def _add_eval_inputs(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what to evaluate")
    g.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="[LABEL=]SOURCE",
        help="model to evaluate (preset, checkpoint, run checkpoint or 'music2latent'); "
        "repeat to compare several side by side; LABEL names it in the report",
    )
    g.add_argument(
        "--data",
        required=True,
        metavar="DIR|MANIFEST",
        help="folder of audio (recursive) or a manifest.jsonl from `m2l data fetch`",
    )
    g.add_argument(
        "--out",
        required=True,
        metavar="OUT_DIR",
        help="report folder (results.json, report.html, audio/, images/)",
    )
    g.add_argument(
        "--items",
        type=positive_int,
        metavar="N",
        help="evaluate the first N files in sorted order (default: all)",
    )
    g.add_argument(
        "--seconds",
        type=_seconds,
        metavar="S",
        help="evaluate one centred crop of S seconds per file (default: whole files)",
    )


def _add_eval_decoding(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument(
        "--steps",
        type=_steps_list,
        default=(1,),
        metavar="K[,K...]",
        help="consistency steps to sweep, e.g. 1,2,4 (default: 1)",
    )
    g.add_argument(
        "--sigma-cond",
        type=_sigma_list,
        default=(),
        metavar="S[,S...]",
        help="v2 models: sigma_cond values to sweep, e.g. 0.2,0.4,0.6 (default: the codec's "
        "0.4); ignored for v1 models, refused when no model is v2",
    )
    g.add_argument(
        "--seed",
        type=_count,
        default=0,
        help="decoding seed, the same for every item (default: 0)",
    )
    g.add_argument("--device", help="cpu, cuda, cuda:N, mps (default: best available)")
    g.add_argument(
        "--window",
        type=_seconds,
        metavar="SECONDS",
        help="v1 window length (sets where window seams fall; default 10 s)",
    )
    g.add_argument(
        "--stereo",
        choices=STEREO_MODES,
        default=None,
        help="stereo coding of models that code channels apart: ms (mid/side, their default) or lr",
    )


def _add_eval_report(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("report")
    g.add_argument(
        "--embedding",
        default="mel-stats",
        metavar="NAME",
        help=f"FAD embedding model: {', '.join(DEFAULT_EMBEDDINGS)} (default: %(default)s; "
        f"mel-stats FAD is not comparable with published VGGish FAD)",
    )
    g.add_argument("--embedding-weights", metavar="PATH", help="local weights for vggish / clap")
    g.add_argument(
        "--audio-items",
        type=_count,
        default=4,
        metavar="N",
        help="write audio players and spectrograms for the first N items (default: 4)",
    )
    g.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (slow) even when installed")
    g.add_argument("--force", action="store_true", help="write into a non-empty OUT_DIR, overwriting")
    add_quiet(g)


def command_line(args: argparse.Namespace) -> str:
    """The canonical `m2l eval ...` command line of the parsed options (recorded in results.json)."""
    parts = ["m2l", "eval"]
    for model in args.model:
        parts += ["--model", model]
    parts += ["--data", args.data, "--out", args.out]
    optional = {
        "--items": args.items,
        "--seconds": args.seconds,
        "--embedding-weights": args.embedding_weights,
        "--device": args.device,
        "--window": args.window,
        "--stereo": args.stereo,
    }
    for flag, value in optional.items():
        if value is not None:
            parts += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    parts += ["--steps", ",".join(str(k) for k in args.steps)]
    if args.sigma_cond:
        parts += ["--sigma-cond", ",".join(f"{s:g}" for s in args.sigma_cond)]
    parts += ["--embedding", args.embedding, "--audio-items", str(args.audio_items), "--seed", str(args.seed)]
    parts += [flag for flag, on in (("--no-visqol", args.no_visqol), ("--force", args.force)) if on]
    return shlex.join(parts)


def run_eval(args: argparse.Namespace) -> int:
    """Run `m2l eval`; prints where the report is. Returns the exit code."""
    from m2l.errors import M2LError
    from m2l.evaluate.run import EvalOptions, parse_model_arg, run_evaluation

    check_device(args.device)
    opts = EvalOptions(
        models=tuple(parse_model_arg(m) for m in args.model),
        data=Path(args.data),
        out=Path(args.out),
        items=args.items,
        seconds=args.seconds,
        steps=tuple(args.steps),
        sigma_cond=tuple(args.sigma_cond),
        embedding=args.embedding,
        embedding_weights=args.embedding_weights,
        audio_items=args.audio_items,
        seed=args.seed,
        force=args.force,
        device=args.device,
        window=args.window,
        stereo=args.stereo,
        visqol=not args.no_visqol,
        progress=not args.quiet,
        command=command_line(args),
    )
    try:
        run_evaluation(opts)
    except OSError as err:  # a filesystem problem that no check above foresaw: still one line
        raise M2LError(f"{err.filename or args.out}: {err.strerror or err}") from None
    print(Path(args.out) / "report.html")
    return 0
