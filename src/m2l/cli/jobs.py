"""Batch inputs of the codec commands: which file goes where, and running a model over them (one
input file takes the plainer path of `m2l.cli.one_file`).

Inputs may be files or directories; a directory is walked recursively (hidden files and folders
are skipped) and its tree is mirrored under the output folder. The audio commands also take
JSON-lines manifests (`MANIFEST_SUFFIX`; `m2l data fetch` writes them): each row's `path` is an
input, found as `m2l.datasets.manifest_files` says, and mirrored under the output folder as
written (an absolute path without its root). `resolve_jobs` maps inputs to `Job`s; `run_files`
loads the model once and runs one job after the other, reporting each failure as one line and
going on with the rest. A file in a folder that is not a regular file (a FIFO, a looping link) is
reported and counted as skipped, and fails the run.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from m2l.cli.one_file import (
    LATENT_SUFFIX,
    CodecOptions,
    Loaded,
    Work,
    announce_model,
    check_format,
    load_codec,
    output_action,
    read_for_model,
)
from m2l.cli.prefetch import default_workers, rank_and_world, read_ahead, shard
from m2l.cli.report import (
    EXIT_OUTPUTS_EXIST,
    EXPECTED_ERRORS,
    BeyondFullScale,
    WithinFileBar,
    audio_rate,
    describe,
    error,
    naming,
    summary_line,
)
from m2l.datasets import MANIFEST_SUFFIX, manifest_files
from m2l.errors import M2LError
from m2l.files import not_a_folder_error, walk_files

__all__ = ["LATENT_SUFFIX", "Job", "check_format_conflict", "is_manifest", "resolve_jobs", "run_files"]


@dataclass(frozen=True)
class Job:
    """One input file and the output it produces."""

    src: Path
    dst: Path
    replace: bool = False
    """The output exists but is not a finished one (`--skip-existing`): write it again."""
    unreadable: str | None = None
    """Why `src`, found in a folder, cannot be read (a FIFO, a looping link): reported, never run."""


def _walk(root: Path, suffixes: frozenset[str], skip: Path | None) -> list[tuple[Path, str | None]]:
    """(file, None) for the regular files under `root` (recursively) whose lowercase suffix is in
    `suffixes`, and (entry, why it is skipped) for FIFOs, sockets, devices and broken or looping
    links with such a suffix; sorted by path."""
    skipped: list[tuple[Path, str | None]] = []
    files = walk_files(root, suffixes, skip=skip, on_skip=lambda path, line: skipped.append((path, line)))
    return sorted([(f, None) for f in files] + skipped)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return path.absolute()


def is_manifest(path: str | os.PathLike) -> bool:
    """Whether an input names a manifest: an existing file ending in `MANIFEST_SUFFIX`."""
    path = Path(path)
    return path.suffix.lower() == MANIFEST_SUFFIX and path.is_file()


def resolve_jobs(
    inputs: Sequence[str],
    out: str,
    in_suffixes: frozenset[str],
    out_suffixes: frozenset[str],
    out_ext: str,
    what: str,
    manifests: bool = False,
) -> tuple[list[Job], list[str]]:
    """Map inputs to outputs.

    Args:
        inputs: files, directories or (with `manifests`) manifests given on the command line.
        out: the -o argument.
        in_suffixes: suffixes picked up in directories.
        out_suffixes: suffixes that make OUT a file path (single file input only).
        out_ext: extension of outputs written into a directory OUT.
        what: name of the input kind for messages ("audio", ".m2l").
        manifests: whether a `.jsonl` input is a manifest (its files are the inputs).

    Returns:
        (jobs, errors): errors are one-line messages; when there are any nothing should run. A
        missing input is named as missing, whatever OUT looks like.
    """
    missing = [f"{item}: no such file or directory" for item in inputs if not os.path.exists(item)]
    if missing:
        return [], missing
    out_path = Path(out)
    single_file = len(inputs) == 1 and Path(inputs[0]).is_file()
    single_file = single_file and not (manifests and is_manifest(inputs[0]))
    out_is_file = single_file and out_path.suffix.lower() in out_suffixes and not out_path.is_dir()
    if not out_is_file and out_path.exists() and not out_path.is_dir():
        return [], [str(not_a_folder_error(out_path))]
    suffix = out_path.suffix.lower()
    if single_file and suffix and not out_is_file and not out_path.exists():
        return [], [
            f"{out_path}: unsupported output format {suffix!r} (use {', '.join(sorted(out_suffixes))}; "
            f"for an output folder, create it first or drop the suffix)"
        ]
    if not out_is_file and not out_path.exists() and out_path.suffix.lower() in out_suffixes:
        return [], [
            f"{out_path}: looks like a file; several inputs, a directory or a manifest need an output folder"
        ]
    jobs, errors = _collect(inputs, out_path, out_is_file, in_suffixes, out_ext, what, manifests)
    unique, clashes = _deduplicate(jobs)
    return unique, errors + clashes


def _collect(
    inputs: Sequence[str],
    out_path: Path,
    out_is_file: bool,
    in_suffixes: frozenset[str],
    out_ext: str,
    what: str,
    manifests: bool,
) -> tuple[list[Job], list[str]]:
    """One job per input file (directories walked, manifests read), and an error per unusable input."""
    errors: list[str] = []
    jobs: list[Job] = []
    skip = _resolved(out_path)
    for item in inputs:
        src = Path(item)
        if manifests and is_manifest(src):
            listed, problem = _listed(src, out_path, out_ext)
            jobs += listed
            errors += [problem] if problem else []
        elif src.is_dir():
            files = _walk(src, in_suffixes, skip)
            if not files:
                errors.append(
                    f"{src}: no {what} files found in this directory (looked for "
                    f"{', '.join(sorted(in_suffixes))})"
                )
            for f, unreadable in files:
                rel = f.relative_to(src)
                jobs.append(Job(f, out_path / rel.with_suffix(out_ext), unreadable=unreadable))
        elif src.is_file():
            if out_is_file:
                jobs.append(Job(src, out_path))
            else:
                jobs.append(Job(src, out_path / (src.stem + out_ext)))
        elif src.exists():
            errors.append(f"{src}: not a regular file or directory")
        else:
            errors.append(f"{src}: no such file or directory")
    return jobs, errors


def _listed(manifest: Path, out_path: Path, out_ext: str) -> tuple[list[Job], str | None]:
    """The jobs of a manifest's files (a missing one fails when it runs), or why there are none."""
    try:
        files = manifest_files(manifest)
    except M2LError as err:
        return [], str(err)
    if not files:
        return [], f"{manifest}: the manifest lists no files"
    return [Job(f.path, out_path / PurePosixPath(f.name).with_suffix(out_ext)) for f in files], None


def _deduplicate(jobs: list[Job]) -> tuple[list[Job], list[str]]:
    """The same input twice is done once; two inputs writing one output is an error."""
    errors: list[str] = []
    seen_src: set[Path] = set()
    by_dst: dict[Path, Job] = {}
    unique: list[Job] = []
    for job in jobs:
        key = _resolved(job.src)
        if key in seen_src:
            continue
        seen_src.add(key)
        if job.unreadable is not None:  # never written
            unique.append(job)
            continue
        dst_key = _resolved(job.dst)
        if dst_key in by_dst:
            errors.append(
                f"{by_dst[dst_key].src} and {job.src} would both be written to "
                f"{job.dst}; rename one or run them separately"
            )
            continue
        by_dst[dst_key] = job
        unique.append(job)
    return unique, errors


def check_format_conflict(options: CodecOptions, jobs: list[Job]) -> None:
    """Refuse `-o x.wav --format flac` rather than guess (`m2l.cli.one_file.check_format`).

    Raises:
        M2LError: when the single output file's suffix and --format disagree.
    """
    if len(jobs) == 1:
        check_format(options, jobs[0].dst)


def read_job(job: Job, downmix: bool, model_rate: int) -> Loaded:
    """Read one job's audio for the model (`m2l.cli.one_file.read_for_model`; picklable as a
    partial, for the read-ahead workers)."""
    return read_for_model(job.src, downmix, model_rate)


Outcome = tuple[Job, "float | BaseException"]
"""What a job came to: the seconds of audio it covered, or the expected error that failed it."""

Stream = Callable[[Any, Iterator[tuple[Job, Any, "str | None"]]], Iterator[Outcome]]
"""(codec, (job, what `load` read or None, None or why reading failed) per job) -> one `Outcome`
per job, in any order: a command that works on several jobs at once (`m2l encode` packs the
encoder passes of several files into one batch)."""


def run_files(
    options: CodecOptions,
    jobs: list[Job],
    errors: list[str],
    stream: Stream,
    verb: str,
    load: Callable[[Any], Callable[[Job], Any]] | None = None,
) -> int:
    """Report resolution errors, skip existing outputs, load the model once, run `stream` over
    the jobs.

    Under torchrun (RANK / WORLD_SIZE set) this process does its rank's share of the jobs
    (`m2l.cli.prefetch.shard`). With `load`, inputs are read ahead in `--workers` processes.

    Args:
        options: the command's options (--force, --skip-existing, --workers, --quiet, the model).
        jobs: from `resolve_jobs`.
        errors: from `resolve_jobs`; when there are any, they are reported and nothing runs.
        stream: works through the jobs with the loaded codec and what `load` read (None
            without `load`); `one_at_a_time(work)` for a command that does one job after the
            other. An expected error fails only its job.
        verb: past tense for the progress bar and the summary line ("encoded").
        load: given the loaded codec, the function that reads one job's input for it (run in
            worker processes, so picklable: a partial of a module-level function).

    Returns:
        The exit code: 1 when a job failed or an input was not a regular file, else
        `EXIT_OUTPUTS_EXIST` when outputs in the output folder existed (a single output file
        that exists fails, as with every command), else 0.
    """
    if errors:
        for message in errors:
            error(message)
        return 1
    rank, world = rank_and_world()
    resumable = not (len(jobs) == 1 and jobs[0].dst == Path(options.output))  # into an output folder
    jobs = shard(jobs, lambda job: str(job.dst), rank, world)
    started = time.perf_counter()
    todo, skipped, refused, unreadable = _pending(options, jobs, resumable)
    existed, failed = (refused, 0) if resumable else (0, refused)
    audio_s = 0.0
    if todo:
        try:
            codec = load_codec(options, local_device=world > 1)
        except EXPECTED_ERRORS as err:
            error(describe(err))
            return 1
        announce_model(codec, options)
        audio_s, errors_run = _run_jobs(options, codec, todo, stream, verb, load, bar=rank == 0)
        failed += errors_run
    if not options.quiet:
        wall_s = time.perf_counter() - started
        who = f"rank {rank}/{world}: " if world > 1 else ""
        counts = {"existed": existed, "unreadable": unreadable}
        line = summary_line(verb, len(jobs), failed, audio_s, wall_s, options.output, skipped, who, **counts)
        print(line, file=sys.stderr)
    return 1 if failed or unreadable else EXIT_OUTPUTS_EXIST if existed else 0


def one_at_a_time(work: Work) -> Stream:
    """The `Stream` that runs `work(codec, job.src, job.dst, job.replace, loaded)` per job, in order."""

    def stream(codec: Any, inputs: Iterator[tuple[Job, Any, str | None]]) -> Iterator[Outcome]:
        for job, value, reason in inputs:
            try:
                if reason is not None:
                    raise M2LError(reason)
                yield job, work(codec, job.src, job.dst, job.replace, value)
            except EXPECTED_ERRORS as err:
                yield job, err

    return stream


def _run_jobs(
    options: CodecOptions,
    codec: Any,
    todo: list[Job],
    stream: Stream,
    verb: str,
    load: Callable[[Any], Callable[[Job], Any]] | None,
    bar: bool = True,
) -> tuple[float, int]:
    """Run `stream` over `todo` (inputs read ahead when `load` is given) -> (audio seconds, failures).
    Without `bar` (torchrun ranks other than 0) no progress bar is drawn: one per job, not per rank."""
    import torch

    bars = WithinFileBar(codec.progress_unit) if not options.quiet and bar and sys.stderr.isatty() else None
    codec.progress = bars
    workers = options.workers
    if workers is None:
        workers = default_workers(len(todo), codec.device.type, torch.get_num_threads())
    inputs = read_ahead(todo, load(codec), workers) if load else ((job, None, None) for job in todo)
    loud = BeyondFullScale()
    disable = options.quiet or not bar or (len(todo) == 1 and not sys.stderr.isatty())
    audio_s, failed, started = 0.0, 0, time.perf_counter()
    options = {"unit": "file", "file": sys.stderr, "disable": disable, "dynamic_ncols": True}
    with tqdm(total=len(todo), desc=verb, **options) as bar:
        for job, outcome in stream(codec, _watch_peaks(inputs, loud)):
            if bars is not None:
                bars.close()
            if isinstance(outcome, BaseException):
                error(naming(describe(outcome), job.src, job.dst))
                failed += 1
            else:
                audio_s += outcome
            bar.update()
            bar.set_postfix_str(audio_rate(audio_s, time.perf_counter() - started), refresh=False)
    loud.finish()
    return audio_s, failed


def _watch_peaks(
    inputs: Iterator[tuple[Job, Any, str | None]], loud: BeyondFullScale
) -> Iterator[tuple[Job, Any, str | None]]:
    """`inputs`, each audio input's peak shown to `loud` as it passes."""
    for job, value, reason in inputs:
        if isinstance(value, Loaded):
            loud.check(job.src, value.peak)
        yield job, value, reason


def _pending(options: CodecOptions, jobs: list[Job], resumable: bool) -> tuple[list[Job], int, int, int]:
    """(jobs to run, finished outputs skipped, jobs refused because their output exists (with
    `resumable`, the hint names --skip-existing), unreadable inputs), each refusal reported."""
    todo, skipped, refused, unreadable = [], 0, 0, 0
    for job in jobs:
        if job.unreadable is not None:
            error(job.unreadable)
            unreadable += 1
            continue
        action = output_action(job.dst, options, resumable)
        if action in ("write", "redo"):
            todo.append(replace(job, replace=True) if action == "redo" else job)
        skipped += action == "skip"
        refused += action == "refuse"
    return todo, skipped, refused, unreadable
