"""The codec commands: `m2l encode`, `m2l decode`, `m2l reconstruct` and `m2l convert`.

    m2l encode INPUT... -o OUT        audio -> .m2l latent files
    m2l decode INPUT... -o OUT        .m2l latent files -> audio (.wav / .flac)
    m2l reconstruct INPUT... -o OUT   audio -> audio through the codec
    m2l convert SOURCE OUT            any loadable model source -> m2l checkpoint

Each command is an `add_*(parser)` that declares its options and a `run_*(args)` that returns the
exit code; torch and the model code are imported only when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from collections import deque
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from m2l.audio.extensions import AUDIO_EXTENSIONS, DEFAULT_SUBTYPE, SUBTYPES, WRITE_EXTENSIONS
from m2l.audio.stereo import STEREO_MODES
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
    Loaded,
    check_format_conflict,
    is_manifest,
    one_at_a_time,
    read_for_model,
    resolve_jobs,
    run_files,
)
from m2l.cli.prefetch import WriteBehind
from m2l.cli.report import EXPECTED_ERRORS, PROG, QuietOutput, describe, error, naming, warning
from m2l.config import DEFAULT_MODEL, PRESETS
from m2l.datasets import MANIFEST_SUFFIX
from m2l.errors import M2LError
from m2l.files import check_output
from m2l.precision import PRECISIONS
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


def _output_rate(choice: int | str | None, lf: Any, src: Path) -> int:
    """The rate to write a decoding of `lf` at: the model's (None), the source audio's
    (`KEEP_RATE`; the model's, with a warning, for a file made before m2l recorded it), or `choice`."""
    if choice is None:
        return lf.sample_rate
    if choice != KEEP_RATE:
        return int(choice)
    if lf.source_sample_rate is None:
        warning(
            f"{src}: records no source sample rate (made by an older m2l); written at the "
            f"model rate, {lf.sample_rate} Hz"
        )
        return lf.sample_rate
    return lf.source_sample_rate


def _write_audio(args: argparse.Namespace, job: Job, audio: Any, lf: Any) -> None:
    """Write a decoding of `lf` for `job` at the asked rate (resampled) and sample format."""
    from m2l.audio.io import resample, save_audio

    rate = _output_rate(args.sample_rate, lf, job.src)
    out = resample(audio, lf.sample_rate, rate)
    save_audio(job.dst, out, rate, force=args.force or job.replace, subtype=args.subtype)


def _audio_loader(args: argparse.Namespace) -> Callable[[Any], Callable[[Job], Any]]:
    """For `run_files`: a codec -> the picklable reader of one job's audio at the codec's rate."""
    return lambda codec: partial(read_for_model, downmix=args.downmix, model_rate=codec.sample_rate)


def _add_workers(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=non_negative_int,
        metavar="N",
        help="processes that decode and resample the next inputs while the model works "
        "(default: 1 for several inputs; 0 for one, or on a CPU device whose cores all run "
        "torch's threads, where a worker slows the network more than reading in line costs)",
    )


def _audio_jobs(
    args: argparse.Namespace, in_suffixes: frozenset[str], what: str, manifests: bool
) -> tuple[list[Job], list[str]]:
    """Jobs that write audio: --format (default wav) names outputs in a folder; `manifests`: the
    inputs may be manifests of audio files."""
    ext = f".{args.format or 'wav'}"
    jobs, errors = resolve_jobs(args.inputs, args.output, in_suffixes, WRITE_EXTENSIONS, ext, what, manifests)
    if not errors:
        try:
            check_format_conflict(args, jobs)
            if jobs:  # every output has the same format
                _check_subtype(jobs[0].dst, args.subtype)
        except M2LError as err:
            errors.append(str(err))
    return jobs, errors


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
    suffixes = frozenset({LATENT_SUFFIX})
    jobs, errors = resolve_jobs(
        args.inputs, args.output, AUDIO_EXTENSIONS, suffixes, LATENT_SUFFIX, "audio", manifests=True
    )
    if args.pack is not None and not errors:
        errors += _pack_errors(args, jobs)
    stream = partial(_encode_stream, args)
    code = run_files(args, jobs, errors, stream, "encoded", _audio_loader(args))
    if code == 0 and args.pack is not None:
        from m2l.latents.cli import add_pack, run_pack

        parser = argparse.ArgumentParser()
        add_pack(parser)
        flags = ["--force"] * args.force + ["--quiet"] * args.quiet
        if len(args.inputs) == 1 and is_manifest(args.inputs[0]):
            flags += ["--manifest", args.inputs[0]]
        code = run_pack(parser.parse_args([args.output, "-o", args.pack, *flags]))
    return code


def _pack_errors(args: argparse.Namespace, jobs: list[Job]) -> list[str]:
    """Why --pack cannot be done in this run (an output file, not a folder; several ranks)."""
    from m2l.cli.prefetch import rank_and_world

    if len(jobs) == 1 and jobs[0].dst == Path(args.output):
        return [f"{args.output}: --pack needs an output folder, not a file"]
    if rank_and_world()[1] > 1:
        return [
            "--pack runs in one process: under torchrun, run `m2l pack OUT -o DATASET_DIR` after the ranks"
        ]
    return []


def _encode_stream(
    args: argparse.Namespace, codec: Any, inputs: Iterator[tuple[Job, Any, str | None]]
) -> Iterator[tuple[Job, float | BaseException]]:
    """`m2l encode`'s jobs: the encoder passes of several files share batches
    (`m2l.packing.encode_many`); each file is written as soon as its last pass has run, in a
    background thread while the next batches run (`m2l.cli.prefetch.WriteBehind`)."""
    from m2l.formats import save_latents
    from m2l.packing import encode_many

    def write(job: Job, lf: Any) -> float:
        save_latents(job.dst, lf, force=args.force or job.replace)
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
    from m2l.formats import load_latents

    jobs, errors = _audio_jobs(args, frozenset({LATENT_SUFFIX}), LATENT_SUFFIX, manifests=False)
    if args.model is None:
        args.model = _recorded_model(jobs, args.quiet)

    def work(codec: Any, job: Job, _: None) -> float:
        lf = load_latents(job.src)
        audio = codec.decode(
            lf,
            steps=args.steps,
            seed=args.seed,
            sigma_cond=args.sigma_cond,
            allow_model_mismatch=args.allow_model_mismatch,
        )
        _write_audio(args, job, audio, lf)
        return lf.length / lf.sample_rate

    return run_files(args, jobs, errors, one_at_a_time(work), "decoded")


def _recorded_model(jobs: list[Job], quiet: bool) -> str:
    """The model source the first readable latent file records (the shipped model if none)."""
    from m2l.formats import load_latents

    for job in jobs:
        try:
            source = load_latents(job.src).model_source
        except EXPECTED_ERRORS:
            continue  # the job reports it
        if source:
            if not quiet:
                print(f"{PROG}: using the model recorded in {job.src}: {source}", file=sys.stderr)
            return source
        break
    return DEFAULT_MODEL


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
    jobs, errors = _audio_jobs(args, AUDIO_EXTENSIONS, "audio", manifests=True)
    quiet = QuietOutput()

    def work(codec: Any, job: Job, loaded: Loaded) -> float:
        lf = codec.encode_file(loaded.wave, codec.sample_rate, source_sample_rate=loaded.rate)
        audio = codec.decode(lf, steps=args.steps, seed=args.seed, sigma_cond=args.sigma_cond)
        quiet.check(codec.model_id, loaded.wave, audio)
        _write_audio(args, job, audio, lf)
        return lf.length / lf.sample_rate

    return run_files(args, jobs, errors, one_at_a_time(work), "reconstructed", load=_audio_loader(args))


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
