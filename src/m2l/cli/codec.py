"""The codec commands: `m2l encode`, `m2l decode`, `m2l reconstruct` and `m2l convert`.

    m2l encode INPUT... -o OUT        audio -> .m2l latent files
    m2l decode INPUT... -o OUT        .m2l latent files -> audio (.wav / .flac)
    m2l reconstruct INPUT... -o OUT   audio -> audio through the codec
    m2l convert SOURCE OUT            any loadable model source -> m2l checkpoint

Each command is an `add_*(parser)` that declares its options and a `run_*(args)` that turns them
into a `CodecOptions` once and runs one input file (`m2l.cli.one_file.run_one_file`) or many
(`m2l.cli.jobs.run_files`: folders, manifests, torchrun ranks); it returns the exit code. Torch
and the model code are imported only when a command runs.
"""

from __future__ import annotations

import argparse
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2l.audio.extensions import AUDIO_EXTENSIONS, DEFAULT_SUBTYPE, SUBTYPES, WRITE_EXTENSIONS
from m2l.cli.args import (
    KEEP_RATE,
    add_quiet,
    device_arg,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    sample_rate_arg,
)
from m2l.cli.jobs import (
    Job,
    check_format_conflict,
    is_manifest,
    one_at_a_time,
    read_job,
    resolve_jobs,
    run_files,
)
from m2l.cli.one_file import (
    CodecOptions,
    Loaded,
    Work,
    check_format,
    output_path,
    recorded_model,
    run_one_file,
    write_audio,
)
from m2l.cli.prefetch import WriteBehind
from m2l.cli.report import EXPECTED_ERRORS, QuietOutput, describe, error, naming
from m2l.config import DEFAULT_MODEL, PRECISIONS, PRESETS, STEREO_MODES
from m2l.datasets import MANIFEST_SUFFIX
from m2l.errors import M2LError
from m2l.files import check_output
from m2l.sniff import LATENT_SUFFIX

if TYPE_CHECKING:
    import torch


# ----------------------------------------------------------------------------- shared options
def _add_model_options(p: argparse.ArgumentParser, recorded: bool = False) -> None:
    g = p.add_argument_group("model")
    default = "the model recorded in the first latent file, else " if recorded else ""
    g.add_argument(
        "--model",
        default=None if recorded else DEFAULT_MODEL,
        metavar="SOURCE",
        help=f"model: {DEFAULT_MODEL!r} (the model shipped with m2l), 'music2latent' "
        f"(the authors' checkpoint, fetched from the hub), a checkpoint path, a training run folder "
        f"(its best checkpoint, else its newest), or a "
        f"preset name ({', '.join(sorted(PRESETS))}) (default: {default}{DEFAULT_MODEL})",
    )
    g.add_argument("--checkpoint", metavar="PATH", help="weights for a preset --model")
    g.add_argument("--device", type=device_arg, help="cpu, cuda, cuda:N, mps (default: best available)")
    g.add_argument(
        "--precision",
        choices=sorted(PRECISIONS),
        default="auto",
        help="arithmetic of the networks: bf16/fp16 autocast (latents and audio stay float32); "
        "auto = bf16 on a CUDA GPU that has it, else fp32 (default: auto)",
    )
    g.add_argument(
        "--window",
        type=positive_float,
        metavar="SECONDS",
        help="process audio in windows of this length (bounds memory; default 10)",
    )
    g.add_argument(
        "--batch-size",
        type=positive_int,
        metavar="N",
        help="rows per model pass; on a GPU also the windows (v1) one encoder pass packs, from "
        "several files (default 4; on the CPU a v1 encoder pass holds one window, where more "
        "are no faster); raise it to fill a large GPU, lower it to save memory",
    )


def _add_io_options(p: argparse.ArgumentParser, inputs: str, with_format: bool, manifests: bool) -> None:
    lists = f", or {MANIFEST_SUFFIX} manifests (a `path` per line)" if manifests else ""
    what = f"{inputs} files or directories (walked recursively){lists}"
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=what)
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output directory (or output file for a single input file)",
    )
    if with_format:
        p.add_argument(
            "--format",
            choices=sorted(e.lstrip(".") for e in WRITE_EXTENSIONS),
            help="audio format of the outputs (default: wav, or the suffix of -o FILE)",
        )
    done = p.add_mutually_exclusive_group()
    done.add_argument(
        "--force",
        action="store_true",
        help="overwrite existing outputs (without it or --skip-existing, existing outputs are kept, "
        "each named in one line, and a folder job exits 3; an existing -o FILE fails, exit 1)",
    )
    done.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave outputs that are already finished (verified) alone and redo damaged ones: "
        "re-run an interrupted folder job",
    )
    add_quiet(p, "no progress bar or summary")


def _add_decode_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    g.add_argument("--steps", type=positive_int, default=1, help="consistency steps (default: %(default)s)")
    g.add_argument("--seed", type=non_negative_int, help="seed for reproducible decoding (default: random)")
    g.add_argument(
        "--sigma-cond",
        type=non_negative_float,
        metavar="SIGMA",
        help="v2 models: noise level of the re-noised previous chunk (default: 0.4)",
    )


def _add_downmix(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--downmix",
        action="store_true",
        help="average audio with more than 2 channels to mono (instead of refusing it); "
        "mono and stereo keep their channels",
    )


def _add_stereo(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stereo",
        choices=STEREO_MODES,
        default=None,
        help="how a model that codes channels apart (v1, mono v2) carries a stereo pair: ms = "
        "mid/side, decoded back to left/right (default; keeps the stereo image), lr = left/right "
        "as the authors code it (each channel with its own noise); recorded in each latent file",
    )


def _add_output_audio_options(p: argparse.ArgumentParser, keep: str) -> None:
    g = p.add_argument_group("output audio")
    g.add_argument(
        "--sample-rate",
        type=sample_rate_arg,
        metavar=f"HZ|{KEEP_RATE}",
        help=f"rate of the written audio in Hz, or {KEEP_RATE!r}: {keep} (default: the model's "
        "rate, 44100 Hz for the shipped model)",
    )
    g.add_argument(
        "--subtype",
        choices=SUBTYPES,
        default=DEFAULT_SUBTYPE,
        help="sample format of the written audio (default: %(default)s; FLOAT is 32-bit float, .wav only)",
    )


def _add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=non_negative_int,
        metavar="N",
        help="processes that decode and resample the next inputs while the model works "
        "(default: 1 for several inputs; 0 for one, or on a CPU device whose cores all run "
        "torch's threads, where a worker slows the network more than reading in line costs)",
    )


# ----------------------------------------------------------------------------- running
def codec_options(args: argparse.Namespace, **own: Any) -> CodecOptions:
    """The options of a codec command: those every codec command declares, read from its parsed
    arguments, and `own`, those of the command itself."""
    return CodecOptions(
        inputs=tuple(args.inputs),
        output=args.output,
        model=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        precision=args.precision,
        window=args.window,
        batch_size=args.batch_size,
        force=args.force,
        skip_existing=args.skip_existing,
        quiet=args.quiet,
        **own,
    )


def run_writing_audio(
    options: CodecOptions, in_suffixes: frozenset[str], what: str, verb: str, work: Work, read: bool
) -> int:
    """Run a command that writes audio (decode, reconstruct) on one input file or on its jobs;
    `read`: the inputs are audio files (or manifests of them), read for the model (`what`: the
    input kind, for messages)."""
    ext = f".{options.format or 'wav'}"
    src = options.one_file()
    if src is not None:
        try:
            dst = output_path(options, src, WRITE_EXTENSIONS, ext)
            check_format(options, dst)
            _check_subtype(dst, options.subtype)
        except M2LError as err:
            error(str(err))
            return 1
        options = _with_model(options, [src])
        return run_one_file(options, src, dst, verb, work, read)
    jobs, errors = resolve_jobs(
        options.inputs, options.output, in_suffixes, WRITE_EXTENSIONS, ext, what, manifests=read
    )
    if not errors:
        try:
            check_format_conflict(options, jobs)
            if jobs:  # every output has the same format
                _check_subtype(jobs[0].dst, options.subtype)
        except M2LError as err:
            errors.append(str(err))
    options = _with_model(options, [job.src for job in jobs])
    return run_files(
        options, jobs, errors, one_at_a_time(work), verb, _audio_reader(options) if read else None
    )


def _with_model(options: CodecOptions, sources: list[Path]) -> CodecOptions:
    """`options` with the model the first of the latent files `sources` records when none is
    named (`m2l decode` without --model)."""
    if options.model is not None:
        return options
    return replace(options, model=recorded_model(sources, options.quiet))


def _audio_reader(options: CodecOptions) -> Any:
    """For `run_files`: a codec -> the picklable reader of one job's audio at the codec's rate."""
    return lambda codec: partial(read_job, downmix=options.downmix, model_rate=codec.sample_rate)


def _check_subtype(path: Path, subtype: str) -> None:
    """`m2l.audio.io.check_subtype` (imported here: it needs the audio libraries)."""
    from m2l.audio.io import check_subtype

    check_subtype(path, subtype)


# ----------------------------------------------------------------------------- encode
def add_encode(p: argparse.ArgumentParser) -> None:
    """Declare the options of `m2l encode`."""
    _add_io_options(p, "audio", with_format=False, manifests=True)
    _add_downmix(p)
    _add_stereo(p)
    _add_workers(p)
    p.add_argument(
        "--pack",
        metavar="DATASET_DIR",
        help="when every file is encoded, also pack the output folder into a latent dataset "
        "(as `m2l pack OUT -o DATASET_DIR`, with `--manifest M` when the one input is a manifest M)",
    )
    _add_model_options(p)


def run_encode(args: argparse.Namespace) -> int:
    """Run `m2l encode`: audio files to .m2l latent files. Returns the exit code."""
    options = codec_options(
        args, stereo=args.stereo, workers=args.workers, downmix=args.downmix, pack=args.pack
    )

    def work(codec: Any, src: Path, dst: Path, replace: bool, loaded: Loaded) -> float:
        from m2l.formats import save_latents

        lf = codec.encode_file(loaded.wave, codec.sample_rate, source_sample_rate=loaded.rate)
        save_latents(dst, lf, force=options.force or replace)
        return lf.length / lf.sample_rate

    suffixes = frozenset({LATENT_SUFFIX})
    src = options.one_file()
    if src is not None and options.pack is None:
        try:
            dst = output_path(options, src, suffixes, LATENT_SUFFIX)
        except M2LError as err:
            error(str(err))
            return 1
        return run_one_file(options, src, dst, "encoded", work, read=True)
    jobs, errors = resolve_jobs(
        options.inputs, options.output, AUDIO_EXTENSIONS, suffixes, LATENT_SUFFIX, "audio", manifests=True
    )
    if options.pack is not None and not errors:
        errors += _pack_errors(options, jobs)
    stream = partial(_encode_stream, options)
    code = run_files(options, jobs, errors, stream, "encoded", _audio_reader(options))
    if code == 0 and options.pack is not None:
        from m2l.latents.cli import pack

        listed = options.inputs[0] if len(options.inputs) == 1 and is_manifest(options.inputs[0]) else None
        code = pack(options.output, options.pack, manifest=listed, force=options.force, quiet=options.quiet)
    return code


def _pack_errors(options: CodecOptions, jobs: list[Job]) -> list[str]:
    """Why --pack cannot be done in this run (an output file, not a folder; several ranks)."""
    from m2l.cli.prefetch import rank_and_world

    if len(jobs) == 1 and jobs[0].dst == Path(options.output):
        return [f"{options.output}: --pack needs an output folder, not a file"]
    if rank_and_world()[1] > 1:
        return [
            "--pack runs in one process: under torchrun, run `m2l pack OUT -o DATASET_DIR` after the ranks"
        ]
    return []


def _encode_stream(
    options: CodecOptions, codec: Any, inputs: Iterator[tuple[Job, Any, str | None]]
) -> Iterator[tuple[Job, float | BaseException]]:
    """`m2l encode`'s jobs: the encoder passes of several files share batches
    (`m2l.packing.encode_many`); each file is written as soon as its last pass has run, in a
    background thread while the next batches run (`m2l.cli.prefetch.WriteBehind`)."""
    from m2l.formats import save_latents
    from m2l.packing import encode_many

    def write(job: Job, lf: Any) -> float:
        save_latents(job.dst, lf, force=options.force or job.replace)
        return lf.length / lf.sample_rate

    unreadable: deque[tuple[Job, BaseException]] = deque()

    def clips() -> Iterator[tuple[Job, torch.Tensor, int]]:
        for job, loaded, reason in inputs:
            if reason is not None:
                unreadable.append((job, M2LError(reason)))
            else:
                yield job, loaded.wave, loaded.rate

    with WriteBehind(expected=EXPECTED_ERRORS) as writes:
        for job, result in encode_many(codec, clips()):
            while unreadable:
                yield unreadable.popleft()
            if isinstance(result, BaseException):
                yield job, result
            else:
                yield from writes.submit(job, partial(write, job, result))
        yield from writes.drain()
    while unreadable:
        yield unreadable.popleft()


# ----------------------------------------------------------------------------- decode
def add_decode(p: argparse.ArgumentParser) -> None:
    """Declare the options of `m2l decode`."""
    _add_io_options(p, LATENT_SUFFIX, with_format=True, manifests=False)
    _add_output_audio_options(
        p,
        "the rate of the audio the latents were made from (a file from an older m2l records none: "
        "then the model's rate, with a warning)",
    )
    _add_decode_options(p)
    p.add_argument(
        "--allow-model-mismatch",
        action="store_true",
        help="decode latents made with other weights of the same architecture",
    )
    _add_model_options(p, recorded=True)


def run_decode(args: argparse.Namespace) -> int:
    """Run `m2l decode`: .m2l latent files to audio. Returns the exit code."""
    options = codec_options(
        args,
        steps=args.steps,
        seed=args.seed,
        sigma_cond=args.sigma_cond,
        allow_model_mismatch=args.allow_model_mismatch,
        sample_rate=args.sample_rate,
        subtype=args.subtype,
        format=args.format,
    )

    def work(codec: Any, src: Path, dst: Path, replace: bool, _: None) -> float:
        from m2l.formats import load_latents

        lf = load_latents(src)
        audio = codec.decode(
            lf,
            steps=options.steps,
            seed=options.seed,
            sigma_cond=options.sigma_cond,
            allow_model_mismatch=options.allow_model_mismatch,
        )
        write_audio(options, src, dst, replace, audio, lf)
        return lf.length / lf.sample_rate

    return run_writing_audio(options, frozenset({LATENT_SUFFIX}), LATENT_SUFFIX, "decoded", work, read=False)


# ----------------------------------------------------------------------------- reconstruct
def add_reconstruct(p: argparse.ArgumentParser) -> None:
    """Declare the options of `m2l reconstruct`."""
    _add_io_options(p, "audio", with_format=True, manifests=True)
    _add_output_audio_options(p, "the rate of each input file")
    _add_downmix(p)
    _add_stereo(p)
    _add_workers(p)
    _add_decode_options(p)
    _add_model_options(p)


def run_reconstruct(args: argparse.Namespace) -> int:
    """Run `m2l reconstruct`: audio through the codec and back (a model that gives audio back
    near silence is named in one warning). Returns the exit code."""
    options = codec_options(
        args,
        stereo=args.stereo,
        workers=args.workers,
        downmix=args.downmix,
        steps=args.steps,
        seed=args.seed,
        sigma_cond=args.sigma_cond,
        sample_rate=args.sample_rate,
        subtype=args.subtype,
        format=args.format,
    )
    quiet = QuietOutput()

    def work(codec: Any, src: Path, dst: Path, replace: bool, loaded: Loaded) -> float:
        lf = codec.encode_file(loaded.wave, codec.sample_rate, source_sample_rate=loaded.rate)
        audio = codec.decode(lf, steps=options.steps, seed=options.seed, sigma_cond=options.sigma_cond)
        quiet.check(codec.model_id, loaded.wave, audio)
        write_audio(options, src, dst, replace, audio, lf)
        return lf.length / lf.sample_rate

    return run_writing_audio(options, AUDIO_EXTENSIONS, "audio", "reconstructed", work, read=True)


# ----------------------------------------------------------------------------- convert
def add_convert(p: argparse.ArgumentParser) -> None:
    """Declare the options of `m2l convert`."""
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="the authors' music2latent.pt, an m2l checkpoint, 'music2latent' (fetched "
        f"from the hub), {DEFAULT_MODEL!r} (shipped) or a preset name (untrained)",
    )
    p.add_argument("out", metavar="OUT", help="m2l checkpoint to write (.safetensors)")
    p.add_argument("--force", action="store_true", help="overwrite OUT")


def run_convert(args: argparse.Namespace) -> int:
    """Run `m2l convert`: prints the written checkpoint's model id. Returns the exit code."""
    from m2l.loading import convert

    out = Path(args.out)
    try:
        check_output(out, args.force)
    except M2LError as err:
        error(str(err))
        return 1
    try:
        model_id = convert(args.source, out, force=args.force)
    except EXPECTED_ERRORS as err:
        error(naming(describe(err), Path(args.source), out))
        return 1
    print(model_id)
    return 0
