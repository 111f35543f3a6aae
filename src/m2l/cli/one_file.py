"""One input file through a codec: `m2l reconstruct in.wav -o out.wav` (and `encode`, `decode`)
reads the file, runs the codec on it and writes the output atomically, in one plain function
(`run_one_file`); many inputs (folders, manifests, torchrun ranks) go through `m2l.cli.jobs`.

Here too are what both ways share: the options of a codec command (`CodecOptions`, made once from
the parsed arguments), loading the codec they name (`load_codec`), reading audio for the model
(`read_for_model`), what to do with an output that exists (`output_action`: --force,
--skip-existing), and writing decoded audio (`write_audio`).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from tqdm import tqdm

from m2l.audio.extensions import DEFAULT_SUBTYPE, WRITE_EXTENSIONS
from m2l.cli.args import KEEP_RATE, check_device
from m2l.cli.report import (
    EXIT_OUTPUTS_EXIST,
    EXPECTED_ERRORS,
    PROG,
    BeyondFullScale,
    WithinFileBar,
    audio_rate,
    describe,
    error,
    naming,
    summary_line,
    warning,
)
from m2l.config import DEFAULT_MODEL, PRESETS, preset_name, resolve_precision
from m2l.datasets import MANIFEST_SUFFIX
from m2l.errors import M2LError
from m2l.files import exists_error, not_a_folder_error
from m2l.sniff import LATENT_SUFFIX

if TYPE_CHECKING:
    import torch

RANK_VARIABLES = ("RANK", "WORLD_SIZE")
"""The environment of a torchrun rank (`m2l.cli.prefetch.rank_and_world` reads it)."""


@dataclass(frozen=True)
class CodecOptions:
    """What a codec command (`m2l encode`, `decode`, `reconstruct`) was asked to do, made once
    from its parsed arguments; the options a command does not take keep their defaults."""

    inputs: tuple[str, ...]
    output: str
    model: str | None = DEFAULT_MODEL
    """The model source; None for `decode` without --model (the one its first file records)."""
    checkpoint: str | None = None
    device: str | None = None
    precision: str = "auto"
    window: float | None = None
    batch_size: int | None = None
    stereo: str | None = None
    force: bool = False
    skip_existing: bool = False
    quiet: bool = False
    workers: int | None = None
    downmix: bool = False
    steps: int = 1
    seed: int | None = None
    sigma_cond: float | None = None
    allow_model_mismatch: bool = False
    sample_rate: int | str | None = None
    subtype: str = DEFAULT_SUBTYPE
    format: str | None = None
    pack: str | None = None

    def one_file(self) -> Path | None:
        """The input when it is one file that is no manifest and no torchrun rank runs: the job
        of `run_one_file`; None for the jobs of `m2l.cli.jobs`."""
        if len(self.inputs) != 1 or any(name in os.environ for name in RANK_VARIABLES):
            return None
        src = Path(self.inputs[0])
        return src if src.is_file() and src.suffix.lower() != MANIFEST_SUFFIX else None


# ----------------------------------------------------------------------------- the codec
def load_codec(options: CodecOptions, local_device: bool = False) -> Any:
    """The codec of the --model, --checkpoint, --device, --window, --batch-size, --stereo and
    --precision options.

    With `local_device` (a rank of a torchrun job) and no --device, each rank takes the GPU of its
    LOCAL_RANK when there are GPUs.

    Raises:
        M2LError: for a --checkpoint without a preset --model, a missing device or a bad model.
    """
    from m2l.loading import load

    if options.checkpoint is not None and preset_name(options.model) not in PRESETS:
        raise M2LError(
            f"--checkpoint only applies to a preset --model "
            f"({', '.join(sorted(PRESETS))}), not {options.model!r}"
        )
    check_device(options.device)
    device = options.device
    if device is None and local_device:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    settings = {"window_seconds": options.window, "batch_size": options.batch_size, "stereo": options.stereo}
    given = {name: value for name, value in settings.items() if value is not None}
    codec = load(options.model or DEFAULT_MODEL, device=device, checkpoint=options.checkpoint, **given)
    codec.precision = resolve_precision(options.precision, codec.device)
    return codec


def announce_model(codec: Any, options: CodecOptions) -> None:
    """Say which model runs (and which checkpoint of a training run folder), unless --quiet."""
    if options.quiet:
        return
    which = ""
    if options.model is not None and Path(options.model).is_dir():
        kind = "best" if Path(codec.source).name == "best.safetensors" else "newest"
        which = f" (the {kind} checkpoint of run folder {options.model}: {codec.source})"
    print(f"{PROG}: model {codec.model_id}{which}", file=sys.stderr)


def recorded_model(paths: list[Path], quiet: bool) -> str:
    """The model source the first readable latent file of `paths` records (the shipped model if
    none): `m2l decode` without --model."""
    from m2l.formats import load_latents

    for path in paths:
        try:
            source = load_latents(path).model_source
        except EXPECTED_ERRORS:
            continue  # its job reports it
        if source:
            if not quiet:
                print(f"{PROG}: using the model recorded in {path}: {source}", file=sys.stderr)
            return source
        break
    return DEFAULT_MODEL


# ----------------------------------------------------------------------------- reading
class Loaded(NamedTuple):
    """An input read for the model: what `Codec.encode_file(wave, model_rate,
    source_sample_rate=rate)` takes."""

    wave: torch.Tensor
    """The audio [channels, samples] resampled to the model's rate."""
    rate: int
    """The file's own sample rate."""
    peak: float
    """The largest absolute sample of the file as read (before resampling)."""


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what C libraries print on file descriptor 2 to /dev/null for a moment.

    libsndfile's MPEG decoder (mpg123) prints "Note: Illegal Audio-MPEG-Header ..." lines
    straight to fd 2 while it probes a corrupt file; the CLI reports the failure in one line
    instead. Python-level output is not affected unless it is written meanwhile.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
        finally:
            os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


DECODER_FAILURES = (OSError, RuntimeError, ValueError, MemoryError)
"""What an audio decoder may raise on a damaged file, besides the M2LErrors of `load_audio`."""


def read_for_model(path: Path, downmix: bool, model_rate: int) -> Loaded:
    """Read an audio file for the model (see `Loaded`), without native decoder chatter on stderr.

    Raises:
        M2LError: the file cannot be read; a decoder's own error as one line ("ValueError: ...").
    """
    from m2l.audio.io import load_audio, resample

    try:
        with native_stderr_silenced():
            wave, rate = load_audio(path, downmix=downmix)
    except M2LError:
        raise
    except DECODER_FAILURES as err:
        raise M2LError(f"{type(err).__name__}: {err}".splitlines()[0]) from None
    peak = float(wave.abs().max()) if wave.numel() else 0.0
    return Loaded(wave if rate == model_rate else resample(wave, rate, model_rate), rate, peak)


# ----------------------------------------------------------------------------- writing
def output_action(dst: Path, options: CodecOptions, resumable: bool) -> str:
    """What to do about the output `dst`: "write" it (missing, or --force), "skip" it (finished,
    with --skip-existing), "redo" it (unfinished, with --skip-existing: warned) or "refuse" (it
    exists: reported, the hint naming --skip-existing when the job is `resumable`)."""
    if options.force or not dst.exists():
        return "write"
    if not options.skip_existing:
        error(str(exists_error(dst, resumable=resumable)))
        return "refuse"
    problem = unfinished_output(dst)
    if problem is None:
        return "skip"
    warning(f"{problem}; making it again")
    return "redo"


def unfinished_output(path: Path) -> str | None:
    """Why an existing output is not a finished one, or None when it is: a latent file must pass
    all its checks, an audio file must hold every frame its header promises."""
    from m2l.audio.io import check_complete
    from m2l.formats import load_latents

    try:
        if path.suffix == LATENT_SUFFIX:
            load_latents(path)
        else:
            check_complete(path)
    except M2LError as err:
        return str(err)
    return None


def check_format(options: CodecOptions, dst: Path) -> None:
    """Refuse `-o x.wav --format flac` rather than guess (when `dst` is the -o file).

    Raises:
        M2LError: when the output file's suffix and --format disagree.
    """
    out = Path(options.output)
    suffix = out.suffix.lower()
    given = options.format is not None and suffix != f".{options.format}"
    if dst == out and suffix in WRITE_EXTENSIONS and given:
        raise M2LError(f"-o {out} does not match --format {options.format}")


def output_rate(choice: int | str | None, lf: Any, src: Path) -> int:
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


def write_audio(options: CodecOptions, src: Path, dst: Path, replace: bool, audio: Any, lf: Any) -> None:
    """Write a decoding [channels, samples] of `lf` (made from `src`) to `dst` at the asked rate
    (resampled) and sample format; `replace`: an unfinished output is there."""
    from m2l.audio.io import resample, save_audio

    rate = output_rate(options.sample_rate, lf, src)
    out = resample(audio, lf.sample_rate, rate)
    save_audio(dst, out, rate, force=options.force or replace, subtype=options.subtype)


# ----------------------------------------------------------------------------- one file
Work = Callable[[Any, Path, Path, bool, "Loaded | None"], float]
"""(codec, input path, output path, whether it replaces an unfinished output, the input read for
the model or None) -> the seconds of audio done: what a command does with one file."""


def output_path(options: CodecOptions, src: Path, out_suffixes: frozenset[str], out_ext: str) -> Path:
    """Where one input file's output goes: -o itself when its suffix is one of `out_suffixes`, else
    the folder -o, named after the input with `out_ext`.

    Raises:
        M2LError: -o is a file where a folder is needed, or has a suffix m2l does not write.
    """
    out = Path(options.output)
    suffix = out.suffix.lower()
    if suffix in out_suffixes and not out.is_dir():
        return out
    if out.exists() and not out.is_dir():
        raise not_a_folder_error(out)
    if suffix and not out.exists():
        raise M2LError(
            f"{out}: unsupported output format {suffix!r} (use {', '.join(sorted(out_suffixes))}; "
            f"for an output folder, create it first or drop the suffix)"
        )
    return out / (src.stem + out_ext)


def run_one_file(options: CodecOptions, src: Path, dst: Path, verb: str, work: Work, read: bool) -> int:
    """Read `src` (the audio for the model when `read`), run `work` on it with the codec of the
    options and write `dst`: the one-file job of a codec command, reported as a corpus job would
    be (the model, a progress bar on a terminal, one line per problem, the summary line).

    Returns:
        The exit code: 1 when the file failed (or its output file exists), `EXIT_OUTPUTS_EXIST`
        when its output exists in the output folder, else 0.
    """
    started = time.perf_counter()
    resumable = dst != Path(options.output)  # written into an output folder
    action = output_action(dst, options, resumable)
    refused = action == "refuse"
    failed, audio_s = int(refused and not resumable), 0.0
    if action in ("write", "redo"):
        try:
            codec = load_codec(options)
        except EXPECTED_ERRORS as err:
            error(describe(err))
            return 1
        announce_model(codec, options)
        on_file = partial(work, codec, src, dst, action == "redo")
        outcome = run_with_progress(codec, options, verb, src, on_file, read)
        if isinstance(outcome, BaseException):
            error(naming(describe(outcome), src, dst))
            failed = 1
        else:
            audio_s = outcome
    if not options.quiet:
        counts = {"existed": int(refused and resumable), "skipped": int(action == "skip")}
        line = summary_line(verb, 1, failed, audio_s, time.perf_counter() - started, options.output, **counts)
        print(line, file=sys.stderr)
    return 1 if failed else EXIT_OUTPUTS_EXIST if refused else 0


def run_with_progress(
    codec: Any,
    options: CodecOptions,
    verb: str,
    src: Path,
    work: Callable[[Loaded | None], float],
    read: bool,
) -> float | BaseException:
    """Read `src` when `read` (warning when it goes beyond full scale) and `work` on it, with a
    bar over the file's windows or chunks on a terminal -> the seconds of audio done, or the
    expected error that failed the file."""
    terminal = not options.quiet and sys.stderr.isatty()
    codec.progress = bars = WithinFileBar(codec.progress_unit) if terminal else None
    loud = BeyondFullScale()
    started = time.perf_counter()
    options_bar = {"unit": "file", "file": sys.stderr, "disable": not terminal, "dynamic_ncols": True}
    with tqdm(total=1, desc=verb, **options_bar) as bar:
        try:
            loaded = read_for_model(src, options.downmix, codec.sample_rate) if read else None
            if loaded is not None:
                loud.check(src, loaded.peak)
            outcome: float | BaseException = work(loaded)
        except EXPECTED_ERRORS as err:
            outcome = err
        if bars is not None:
            bars.close()
        bar.update()
        done = 0.0 if isinstance(outcome, BaseException) else outcome
        bar.set_postfix_str(audio_rate(done, time.perf_counter() - started), refresh=False)
    loud.finish()
    return outcome
