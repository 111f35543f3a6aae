"""`m2l gen train` (train a latent generator) and `m2l generate` (audio from a generator)."""

from __future__ import annotations

import argparse
from pathlib import Path

from m2l.cli.args import check_device, device_arg, finite_float, int_at_least
from m2l.config import DEFAULT_MODEL
from m2l.errors import M2LError
from m2l.files import check_output

GENERATOR_PRESET_NAMES = ("gen-tiny", "gen-small")
GENERATOR_OBJECTIVES = ("flow", "edm")
"""`m2l.generate.model`'s preset names and objectives, without importing torch to parse arguments."""


def add_gen(p: argparse.ArgumentParser) -> None:
    """`m2l gen train DATASET --out RUN`."""
    sub = p.add_subparsers(dest="gen_command", metavar="ACTION", required=True)
    train = sub.add_parser(
        "train",
        help="train a latent generator on a latent dataset (resumes when run again)",
        description="Train a latent generator (rectified flow, or EDM-style diffusion with --objective "
        "edm) on a packed latent dataset or a folder of .m2l files (v1 latents). Running the same "
        "command again resumes the run (on the same dataset: another one needs --change-config). "
        "RUN/generator.safetensors (EMA weights) is written at each checkpoint; m2l generate --model "
        "RUN uses it.",
    )
    train.add_argument("dataset", metavar="DATASET", help="packed latent dataset or folder of .m2l files")
    train.add_argument("--out", required=True, metavar="RUN", help="run folder (created, or resumed)")
    train.add_argument("--preset", default="gen-small", choices=GENERATOR_PRESET_NAMES, help="network size")
    train.add_argument(
        "--objective",
        default="flow",
        choices=GENERATOR_OBJECTIVES,
        help="training objective and sampler, saved with the generator (default: flow)",
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="training setting, e.g. steps=5000, batch_size=16, label_column=genre, precision=bf16, "
        "context_mix=0.5,0.3,0.2 (repeatable)",
    )
    train.add_argument("--device", type=device_arg, help="cpu, cuda, mps (default: cuda when there is one)")
    train.add_argument(
        "--change-config",
        action="store_true",
        help="resume a run with a training config or a dataset other than its own",
    )


def run_gen(args: argparse.Namespace) -> int:
    from m2l.generate.model import generator_preset
    from m2l.generate.train_config import GenTrainConfig, apply_gen_overrides
    from m2l.generate.training import train_generator

    cfg = apply_gen_overrides(GenTrainConfig(), args.set)
    check_device(args.device)
    network = generator_preset(args.preset, objective=args.objective)
    summary = train_generator(
        args.dataset, args.out, network, cfg, change_config=args.change_config, device=args.device
    )
    loss = "-" if summary["loss"] is None else f"{summary['loss']:.4f}"
    val = "-" if summary["val_loss"] is None else f"{summary['val_loss']:.4f}"
    how = f"stopped by {summary['stopped']} (saved; run again to resume)" if summary["stopped"] else "done"
    print(
        f"m2l gen train: {how} at step {summary['step']}/{cfg.steps}, loss {loss}, val_loss {val}; {args.out}"
    )
    return 0


def inpaint_range(text: str) -> tuple[float, float]:
    """START:END seconds, 0 <= START < END."""
    start, sep, end = text.partition(":")
    try:
        pair = (float(start), float(end))
    except ValueError:
        pair = (-1.0, -1.0)
    if not sep or not 0 <= pair[0] < pair[1] < float("inf"):
        raise argparse.ArgumentTypeError(f"expected START:END seconds with 0 <= START < END, got {text!r}")
    return pair


def add_generate(p: argparse.ArgumentParser) -> None:
    """`m2l generate -o out.wav [options]`."""
    p.description = (
        "Generate audio with a latent generator: latents are sampled, then decoded by the codec the "
        "generator learned from. Output is mono: for a stereo (mid/side) codec the mid row is "
        "generated and decoded as mono, for now."
    )
    p.add_argument(
        "-o", "--output", required=True, type=Path, metavar="OUT", help="audio file to write (.wav, .flac)"
    )
    p.add_argument(
        "--seconds",
        type=finite_float("seconds in (0, 3600]", lambda v: 0 < v <= 3600),
        default=30.0,
        help="length in seconds (default 30; with --inpaint the prompt's)",
    )
    p.add_argument(
        "--seed", type=int_at_least(0, "a non-negative integer"), default=0, help="same seed, same audio"
    )
    p.add_argument(
        "--steps", type=int_at_least(1, "a positive integer"), default=8, help="sampler steps (Heun)"
    )
    p.add_argument(
        "--prompt", type=Path, metavar="IN", help="audio to continue (or to inpaint with --inpaint)"
    )
    p.add_argument(
        "--inpaint", type=inpaint_range, metavar="START:END", help="regenerate these seconds of --prompt"
    )
    p.add_argument(
        "--style", metavar="NAME", help="a class the generator was trained with (m2l info FILE lists them)"
    )
    p.add_argument(
        "--guidance",
        type=finite_float("a number in [0, 100]", lambda v: 0 <= v <= 100),
        default=1.0,
        help="classifier-free guidance scale (with --style; 1: none)",
    )
    p.add_argument(
        "--model", default=DEFAULT_MODEL, metavar="RUN_OR_FILE", help="generator file or run folder"
    )
    p.add_argument("--device", type=device_arg, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--force", action="store_true", help="overwrite OUT")


def run_generate(args: argparse.Namespace) -> int:
    from m2l.audio.io import save_audio
    from m2l.generate.checkpoint import load_generator
    from m2l.generate.make import Request, generate_audio
    from m2l.loading import load

    if args.inpaint is not None and args.prompt is None:
        raise M2LError("--inpaint needs --prompt (the audio whose seconds START..END are made anew)")
    check_output(args.output, args.force)
    check_device(args.device)
    gen = load_generator(args.model)
    codec = load(gen.codec_source, device=args.device)
    gen.model.to(codec.device)  # the generator runs beside its codec
    if codec.version != "v1":
        raise M2LError(
            f"{gen.path}: its codec {gen.codec_source} is {codec.version}; the generator decodes v1"
        )
    request = Request(
        args.seconds, args.seed, args.steps, args.prompt, args.inpaint, args.style, args.guidance
    )
    audio = generate_audio(gen, codec, request)  # [1, samples]
    save_audio(args.output, audio, codec.sample_rate, force=args.force)
    print(f"m2l generate: {args.output} ({audio.shape[-1] / codec.sample_rate:.2f} s, seed {args.seed})")
    return 0
