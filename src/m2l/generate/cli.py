"""`m2l gen train` (train a latent generator), `m2l gen eval` (score one against references) and
`m2l generate` (audio from a generator)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from m2l.cli.args import add_quiet, check_device, device_arg, finite_float, int_at_least
from m2l.config import DEFAULT_MODEL, GENERATE_STEPS
from m2l.errors import M2LError
from m2l.files import check_output

GENERATOR_PRESET_NAMES = ("gen-tiny", "gen-small")
GENERATOR_OBJECTIVES = ("flow", "edm")
"""`m2l.generate.model`'s preset names and objectives, without importing torch to parse arguments."""


def add_gen(p: argparse.ArgumentParser) -> None:
    """`m2l gen train DATASET --out RUN`, `m2l gen export RUN OUT` and `m2l gen eval TEST_AUDIO -o OUT`."""
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
    export = sub.add_parser(
        "export",
        help="copy a run's generator to one file (float16 with --fp16, as the shipped one)",
        description="Copy the generator of a training run (its generator.safetensors: the EMA "
        "weights of the last checkpoint) or of a generator file to OUT; --fp16 halves its size.",
    )
    export.add_argument("source", metavar="RUN_OR_FILE", help="a generator run folder or file")
    export.add_argument("out", metavar="OUT", type=Path, help="generator file to write (.safetensors)")
    export.add_argument("--fp16", action="store_true", help="store the weights as float16")
    export.add_argument("--force", action="store_true", help="overwrite OUT")
    add_gen_eval(
        sub.add_parser(
            "eval",
            help="FAD of generated audio beside references, continuations, a listening page",
            description="Evaluate a latent generator on a test split: FAD of generated clips against "
            "real crops beside the codec's floor (decoded real latents), a Gaussian baseline and "
            "time-shuffled real latents; the mel distance of continuations to the true ones beside "
            "repeating the prompt. Writes OUT/results.json, OUT/report.html and OUT/audio/.",
        )
    )


_SECONDS = finite_float("seconds in (0, 3600]", lambda v: 0 < v <= 3600)


def add_gen_eval(p: argparse.ArgumentParser) -> None:
    """`m2l gen eval TEST_AUDIO -o OUT [options]`."""
    p.add_argument("data", metavar="TEST_AUDIO", type=Path, help="folder of audio or a manifest.jsonl")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="OUT", help="report folder")
    p.add_argument(
        "--model", default=DEFAULT_MODEL, metavar="RUN_OR_FILE", help="generator file or run folder"
    )
    p.add_argument(
        "--clips", type=int_at_least(1, "a positive integer"), default=32, help="clips per set (default 32)"
    )
    p.add_argument("--seconds", type=_SECONDS, default=10.0, help="clip length (default 10)")
    p.add_argument(
        "--prompt-seconds", type=_SECONDS, default=5.0, help="prompt of each continuation (default 5)"
    )
    p.add_argument(
        "--steps",
        type=int_at_least(1, "a positive integer"),
        default=GENERATE_STEPS,
        help=f"sampler steps (Heun; default {GENERATE_STEPS})",
    )
    p.add_argument(
        "--seed", type=int_at_least(0, "a non-negative integer"), default=0, help="same seed, same numbers"
    )
    p.add_argument(
        "--embedding",
        default="mel-stats",
        metavar="NAME",
        help="FAD embedding model: mel-stats (default, offline), vggish or clap (with --embedding-weights)",
    )
    p.add_argument("--embedding-weights", metavar="PATH", help="local weights for vggish / clap")
    p.add_argument(
        "--reference-audio",
        type=Path,
        metavar="TRAIN_AUDIO",
        help="the generator's training audio (folder or manifest): adds train_floor, its decoded real "
        "latents scored against the test crops (what a perfect generator of that audio would score)",
    )
    p.add_argument(
        "--audio-items",
        type=int_at_least(0, "an integer >= 0"),
        default=4,
        metavar="N",
        help="audio players for the first N clips of every set (default 4)",
    )
    p.add_argument("--device", type=device_arg, help="cpu, cuda, mps (default: the best available)")
    p.add_argument("--force", action="store_true", help="write into a non-empty OUT, overwriting")
    add_quiet(p)


def gen_eval_command(args: argparse.Namespace) -> str:
    """The canonical `m2l gen eval ...` command line of the parsed options (for results.json)."""
    parts = ["m2l", "gen", "eval", str(args.data), "-o", str(args.out), "--model", str(args.model)]
    parts += ["--clips", str(args.clips), "--seconds", f"{args.seconds:g}"]
    parts += ["--prompt-seconds", f"{args.prompt_seconds:g}", "--steps", str(args.steps)]
    parts += ["--seed", str(args.seed), "--embedding", args.embedding, "--audio-items", str(args.audio_items)]
    optional = (
        ("--embedding-weights", args.embedding_weights),
        ("--reference-audio", args.reference_audio),
        ("--device", args.device),
    )
    for flag, value in optional:
        if value is not None:
            parts += [flag, str(value)]
    return shlex.join(parts + (["--force"] if args.force else []))


def run_gen_eval(args: argparse.Namespace) -> int:
    """Run `m2l gen eval`; prints the headline numbers and where the report is."""
    from m2l.evaluate.report import format_number
    from m2l.generate.evaluate import GenEvalOptions, run_gen_evaluation

    check_device(args.device)
    opts = GenEvalOptions(
        data=args.data,
        out=args.out,
        model=args.model,
        clips=args.clips,
        seconds=args.seconds,
        prompt_seconds=args.prompt_seconds,
        steps=args.steps,
        seed=args.seed,
        embedding=args.embedding,
        embedding_weights=args.embedding_weights,
        audio_items=args.audio_items,
        device=args.device,
        force=args.force,
        progress=not args.quiet,
        command=gen_eval_command(args),
        reference=args.reference_audio,
    )
    results = run_gen_evaluation(opts)
    fad, mel = results["fad"], results["continuation"]["mel_distance"]
    names = ("floor", "baseline", "shuffled", *(("train_floor",) if "train_floor" in fad else ()))
    refs = ", ".join(f"{name} {format_number(fad[name])}" for name in names)
    print(
        f"m2l gen eval: FAD generated {format_number(fad['generated'])} ({refs}); continuation mel "
        f"{format_number(mel['continuation'])} (repeat {format_number(mel['repeat'])}); "
        f"{args.out / 'report.html'}"
    )
    return 0


def run_gen_export(args: argparse.Namespace) -> int:
    """Run `m2l gen export`: one line saying what was written."""
    from m2l.generate.checkpoint import export_generator

    gen = export_generator(args.source, args.out, half=args.fp16, force=args.force)
    size = args.out.stat().st_size / 2**20
    print(
        f"m2l gen export: {args.out} ({gen.cfg.name}, {size:.1f} MiB, "
        f"{'float16' if args.fp16 else 'float32'}, step {gen.extra.get('step', '?')}, codec {gen.codec_id})"
    )
    return 0


def run_gen(args: argparse.Namespace) -> int:
    if args.gen_command == "eval":
        return run_gen_eval(args)
    if args.gen_command == "export":
        return run_gen_export(args)
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
        "--steps",
        type=int_at_least(1, "a positive integer"),
        default=GENERATE_STEPS,
        help=f"sampler steps (Heun; default {GENERATE_STEPS})",
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
    from m2l.generate.make import Request, generate_audio, generator_and_codec

    if args.inpaint is not None and args.prompt is None:
        raise M2LError("--inpaint needs --prompt (the audio whose seconds START..END are made anew)")
    check_output(args.output, args.force)
    check_device(args.device)
    gen, codec = generator_and_codec(args.model, args.device)
    request = Request(
        args.seconds, args.seed, args.steps, args.prompt, args.inpaint, args.style, args.guidance
    )
    audio = generate_audio(gen, codec, request)  # [1, samples]
    save_audio(args.output, audio, codec.sample_rate, force=args.force)
    print(f"m2l generate: {args.output} ({audio.shape[-1] / codec.sample_rate:.2f} s, seed {args.seed})")
    return 0
