"""`m2l train` and `m2l export` (registered in `m2l.cli.COMMANDS`, which reports their errors)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from m2l.cli.args import add_quiet, device_arg, non_negative_int
from m2l.cli.report import PROG

if TYPE_CHECKING:
    from m2l.train.loop import Trainer


TRAIN_PRESET_NAMES = ("paper", "small", "tiny", "paper-v2", "small-v2", "small-v2-stereo", "tiny-v2")
"""The names of `m2l.train.config.TRAIN_PRESETS`, in its order (a test keeps them equal): spelled
out here because that module imports torch, which `m2l train --help` must not."""

RECIPE_NAMES = ("published", "fast")
"""The names of `m2l.train.config.RECIPES`, in its order (a test keeps them equal), for the help."""

TRAIN_EPILOG = (
    "--set takes any field of m2l.train.config.TrainConfig (each is commented there). "
    f"--set recipe=NAME ({', '.join(RECIPE_NAMES)}) applies a bundle of the objective's options, "
    "which single --set fields then refine: published (the paper presets) is the released recipe "
    "(teacher at a decaying offset, 1 / gap loss weights); fast (the CPU presets) starts as plain "
    "denoising, then halves the teacher gap stage by stage (gap_stage_steps, gap_min), weights the "
    "loss by 1 / c_out (weighting=edm) and adds a multi-resolution STFT loss on one-step decodes "
    "(spectral_weight, spectral_share). Fidelity terms, any recipe: phase_weight, coherence_weight, "
    "level_weight, rollout_weight (a two-step loss; rollout_sigma_min, rollout_sigma_max; "
    "rollout_context=true for v2's decoding path), and "
    "aux_fade_start / aux_fade_steps to fade out those named in aux_fade_terms (all but coherence "
    "by default); model_set changes the model preset's architecture. A run's config is fixed: a "
    "command that changes a field or the preset is refused (steps too, unless --extend). Logs: "
    "RUN_DIR/log.jsonl, validation audio and spectrograms in RUN_DIR/val/; "
    "checkpoints/best.safetensors is the best by validation mel distance."
)


def add_train(p: argparse.ArgumentParser) -> None:
    p.epilog = TRAIN_EPILOG
    p.add_argument(
        "config",
        metavar="CONFIG",
        help=f"training preset ({', '.join(TRAIN_PRESET_NAMES)}) or a run's config.json",
    )
    p.add_argument(
        "--data",
        metavar="DIR[:WEIGHT]",
        action="append",
        required=True,
        help="folder of audio (recursive) with a sampling weight (default 1); repeatable. Files are "
        "indexed once (RUN_DIR/data_index.json); unreadable ones are skipped with a warning; crops "
        "quieter than min_rms are redrawn, and a folder with no audible crop is refused",
    )
    p.add_argument(
        "--val",
        metavar="DIR",
        action="append",
        default=[],
        help="validation folder (default: hold out val_fraction=0.02 of the training files)",
    )
    p.add_argument(
        "--out",
        metavar="RUN_DIR",
        required=True,
        help="run folder (checkpoints, logs); an existing run is resumed (one trainer at a time: "
        "RUN_DIR/.lock)",
    )
    p.add_argument(
        "--set",
        metavar="FIELD=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override a config field, e.g. --set lr=3e-4 --set batch_size=32",
    )
    p.add_argument(
        "--extend",
        action="store_true",
        help="train an existing run on to a larger `steps` (e.g. --set steps=200000 --extend): the "
        "learning rate and teacher schedules continue from their current values and decay to their "
        "final ones at the new last step (no restart; a finished run stays at min_lr)",
    )
    p.add_argument(
        "--init",
        metavar="MODEL",
        default=None,
        help="fine-tune: start a new run from the weights of MODEL (default, a checkpoint or a run "
        "folder) of the same model preset; recorded as the config's `init`",
    )
    p.add_argument(
        "--until",
        metavar="STEP",
        type=non_negative_int,
        default=None,
        help="stop (with a checkpoint) after this step; the schedule still spans `steps`",
    )
    p.add_argument(
        "--device", type=device_arg, default=None, help="cpu, cuda, cuda:N, mps (default: cuda if available)"
    )
    add_quiet(p)


def run_train(args: argparse.Namespace) -> int:
    """Run `m2l train`; ends with one closing line on stderr (see `train_closing_line`)."""
    from m2l.train.config import apply_overrides, load_train_config
    from m2l.train.data import parse_source
    from m2l.train.loop import Trainer
    from m2l.train.run_folder import sigterm_interrupts

    overrides = [*args.overrides, *([f"init={args.init}"] if args.init else [])]
    cfg = apply_overrides(load_train_config(args.config), overrides)
    sources = [parse_source(s) for s in args.data]
    val = [parse_source(s) for s in args.val] or None
    with sigterm_interrupts():  # a start killed by SIGTERM still releases the run's lock
        trainer = Trainer(
            cfg,
            sources,
            Path(args.out),
            val_sources=val,
            device=args.device,
            show_progress=not args.quiet,
            extend=args.extend,
        )
        first_step, wall, cpu = trainer.step, time.perf_counter(), time.process_time()
        trainer.train(until=args.until)
    if trainer.dist.main:
        times = (time.perf_counter() - wall, time.process_time() - cpu, trainer.cpu_seconds())
        print(train_closing_line(trainer, first_step, *times), file=sys.stderr, flush=True)
    return 0


def train_closing_line(
    trainer: Trainer, first_step: int, wall_s: float, cpu_s: float, run_cpu_s: float
) -> str:
    """The line `m2l train` ends with: the steps done, where the newest and the best checkpoints
    are, and the time this run took (wall and CPU) with the CPU time of the whole run.

    Args:
        trainer: the trainer after `train()`.
        first_step: the step it started (or resumed) at.
        wall_s: wall seconds of this run; cpu_s: CPU seconds of this process in it.
        run_cpu_s: CPU seconds of the training processes over every resumption.
    """
    from m2l.formats import list_checkpoints

    done = trainer.step - first_step
    steps = f"trained {done} step{'s' if done != 1 else ''} (step {trainer.step} of {trainer.cfg.steps})"
    found = list_checkpoints(trainer.ckpt_dir)
    newest = f"newest checkpoint {found[-1][1]}" if found else "no checkpoint yet"
    best_path, best_step = trainer.ckpt_dir / "best.safetensors", trainer.counters.get("best_step")
    best = ""
    if best_path.is_file() and best_step is not None:
        best = f", best {best_path} (step {best_step}, mel distance {trainer.counters['best_mel']:.4g})"
    took = f"{wall_s:.1f} s wall, {cpu_s:.1f} s CPU (run total {run_cpu_s:.1f} s CPU)"
    return f"{PROG}: {steps} in {trainer.run_dir}: {newest}{best}; {took}"


def add_export(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source",
        metavar="RUN_DIR|CKPT",
        help="a training checkpoint, or a run folder (its best checkpoint, else the latest)",
    )
    p.add_argument("out", metavar="OUT", help="inference checkpoint to write (.safetensors)")
    p.add_argument("--force", action="store_true", help="overwrite OUT")
    p.add_argument("--fp16", action="store_true", help="store the weights as float16 (half the size)")


def run_export(args: argparse.Namespace) -> int:
    """Run `m2l export`: prints the new model id on stdout and one line on stderr saying what
    was written where (path, model id, size, precision, the checkpoint and step it came from)."""
    from m2l.train.export import export, export_line

    out = Path(args.out)
    model_id = export(Path(args.source), out, force=args.force, half=args.fp16)
    print(model_id)
    print(f"{PROG}: {export_line(out, model_id, args.fp16)}", file=sys.stderr)
    return 0
