"""How the `m2l` command line reports problems: one line each on stderr, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from m2l.errors import M2LError

PROG = "m2l"
"""The program name that starts every error and warning line."""

EXPECTED_ERRORS = (M2LError, OSError)
"""Errors that are the input's fault: reported as one line, never as a traceback."""


def one_line(text: str) -> str:
    """`text` with every run of whitespace (newlines included) as one space."""
    return " ".join(str(text).split())


def error(message: str) -> None:
    """Print `m2l: error: message` as one line on stderr (without breaking a progress bar)."""
    tqdm.write(f"{PROG}: error: {one_line(message)}", file=sys.stderr)


def warning(message: str) -> None:
    """Print `m2l: warning: message` as one line on stderr (without breaking a progress bar)."""
    tqdm.write(f"{PROG}: warning: {one_line(message)}", file=sys.stderr)


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
