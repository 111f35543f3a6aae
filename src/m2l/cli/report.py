"""How the `m2l` command line reports: problems one line each on stderr (never a traceback),
progress bars, and the summary line every codec command ends with."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from m2l.errors import M2LError

PROG = "m2l"
"""The program name that starts every error and warning line."""

EXPECTED_ERRORS = (M2LError, OSError)
"""Errors that are the input's fault: reported as one line, never as a traceback."""

EXIT_OUTPUTS_EXIST = 3
"""The exit code of a codec job into an output folder where nothing failed but some outputs
already existed: not written, since neither --skip-existing nor --force said what to do with them."""


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


def error(message: str) -> None:
    """Print `m2l: error: message` as one line on stderr (without breaking a progress bar)."""
    tqdm.write(f"{PROG}: error: {one_line(message)}", file=sys.stderr)


def warning(message: str) -> None:
    """Print `m2l: warning: message` as one line on stderr (without breaking a progress bar)."""
    tqdm.write(f"{PROG}: warning: {one_line(message)}", file=sys.stderr)


FULL_SCALE = 1.0
"""The models take and give audio within [-FULL_SCALE, FULL_SCALE]."""


class BeyondFullScale:
    """Warnings for inputs that go beyond full scale: possible in float files, and common by a few
    percent in lossy ones (their decoders overshoot); outside what the models are trained on, and
    a reconstruction is clipped at full scale. The first `named` such files get a line each; the
    rest are counted and `finish` reports them in one line, so a corpus of lossy files does not
    bury its progress under one warning per file."""

    def __init__(self, named: int = 3) -> None:
        self.named = named
        self.shown = 0
        self.more: list[tuple[float, Path]] = []

    def check(self, path: Path, peak: float) -> None:
        """Note the input `path` whose largest absolute sample is `peak`."""
        if peak <= FULL_SCALE:
            return
        if self.shown < self.named:
            self.shown += 1
            warning(
                f"{path}: peaks at {peak:.3g}, beyond full scale ({FULL_SCALE}): the model takes and "
                "gives audio within [-1, 1], so scale it down for a faithful reconstruction"
            )
        else:
            self.more.append((peak, path))

    def finish(self) -> None:
        """One line for the inputs beyond full scale that got no line of their own."""
        if self.more:
            peak, path = max(self.more, key=lambda item: item[0])
            inputs = "input peaks" if len(self.more) == 1 else "inputs peak"
            warning(
                f"{len(self.more)} more {inputs} beyond full scale, up to {peak:.3g} ({path}); "
                "scale them down for a faithful reconstruction"
            )


SILENT_DBFS = -60.0
"""An input whose RMS level is at or below this (dB relative to full scale) counts as silence."""
QUIETER_DB = 40.0
"""A model that gives a non-silent input back more than this many dB quieter is likely untrained."""


def rms_dbfs(wave: Any) -> float:
    """The RMS level of a tensor of samples in dB relative to full scale (-inf for silence)."""
    power = float(wave.double().square().mean()) if wave.numel() else 0.0
    return 10 * math.log10(power) if power > 0 else -math.inf


class QuietOutput:
    """One warning per run when a model gives a non-silent input back near silence (more than
    `QUIETER_DB` quieter): what an untrained or barely trained model does, and otherwise unseen
    until someone listens."""

    def __init__(self) -> None:
        self.warned = False

    def check(self, model_id: str, before: Any, after: Any) -> None:
        """Compare the level of the audio a model was given (`before`) with what it gave back."""
        if self.warned:
            return
        level_in, level_out = rms_dbfs(before), rms_dbfs(after)
        if level_in <= SILENT_DBFS or level_in - level_out <= QUIETER_DB:
            return
        self.warned = True
        drop = (
            "silence for" if level_out == -math.inf else f"audio {level_in - level_out:.0f} dB quieter than"
        )
        warning(f"model {model_id} returned {drop} its input (is it trained?)")


def describe(err: BaseException) -> str:
    """One line for an expected error (M2LError, OSError)."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return one_line(str(err)) or type(err).__name__


def naming(message: str, *paths: Path) -> str:
    """Make sure an error message names the file it is about (the first of `paths` if none)."""
    if any(str(p) in message for p in paths):
        return message
    return f"{paths[0]}: {message}"


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """A `warnings.showwarning` that prints `m2l: warning: message` as one line on stderr."""
    tqdm.write(f"{PROG}: warning: {one_line(str(message))}", file=sys.stderr)


def audio_rate(audio_s: float, wall_s: float) -> str:
    """The progress bar's postfix: the audio done and its speed, in the units of `summary_line`
    (seconds of audio, "x real time")."""
    return f"{audio_s:.1f} s of audio, {audio_s / max(wall_s, 1e-9):.1f}x real time"


class WithinFileBar:
    """A `m2l.codec.Progress` callback that draws a tqdm bar on stderr over the windows (v1) or
    chunks (v2) of one file: a new bar for each task ("encoding", "decoding"), gone when done.

    `run_files` installs it as `codec.progress` when stderr is a terminal and --quiet is not given.
    """

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.bar: tqdm | None = None

    def __call__(self, task: str, done: int, total: int) -> None:
        """Start a bar at done = 0, move it on, close it at done = total."""
        if done == 0 or self.bar is None:
            self.close()
            self.bar = tqdm(
                total=total,
                desc=task,
                unit=self.unit.rstrip("s"),
                leave=False,
                file=sys.stderr,
                dynamic_ncols=True,
            )
        self.bar.update(done - self.bar.n)
        if done >= total:
            self.close()

    def close(self) -> None:
        """Take the current bar off the screen (after a task, or a failed file)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def summary_line(
    verb: str,
    total: int,
    failed: int,
    audio_s: float,
    wall_s: float,
    output: str,
    skipped: int = 0,
    who: str = "",
    *,
    existed: int = 0,
    unreadable: int = 0,
) -> str:
    """The line every codec command ends with: what was written where, how long, how fast
    (`who` is "rank R/W: " for one rank of a torchrun job).

    Of the `total` inputs, `skipped` had finished outputs (--skip-existing), `existed` had
    outputs that were left alone (neither --skip-existing nor --force), `unreadable` were not
    regular files (a FIFO, a looping link) and `failed` failed; the rest were written.
    """
    written = total - failed - skipped - existed - unreadable
    files = f"{written} of {total} file{'s' if total != 1 else ''}"
    tail = f", {skipped} skipped (already done)" if skipped else ""
    tail += f", {existed} already existed" if existed else ""
    tail += f", {unreadable} skipped (not a regular file)" if unreadable else ""
    tail += f", {failed} failed" if failed else ""
    speed = f" ({audio_s / wall_s:.1f}x real time)" if audio_s > 0 and wall_s > 0 else ""
    took = f"{audio_s:.1f} s of audio in {wall_s:.1f} s{speed}"
    return f"{PROG}: {who}{verb} {files}{tail} into {output}: {took}"
