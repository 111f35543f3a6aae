"""Argument types and device checks shared by every `m2l` subcommand.

A leaf module (argparse and math only; torch is imported inside the two device functions) so that
the command modules of `m2l.train`, `m2l.evaluate`, `m2l.probe` and `m2l.datasets` can use it
without an import cycle and `m2l --help` stays free of torch.

Every type raises `argparse.ArgumentTypeError`, which argparse reports as one usage line (exit 2).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence

from m2l.errors import M2LError


def int_at_least(minimum: int, what: str) -> Callable[[str], int]:
    """An argparse type for integers >= `minimum`.

    Args:
        minimum: the smallest accepted value.
        what: the expected value in error messages, with its article ("a positive integer").

    Returns:
        A function that parses one argument.
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def finite_float(what: str, accept: Callable[[float], bool]) -> Callable[[str], float]:
    """An argparse type for finite floats that `accept` takes.

    Args:
        what: the expected value in error messages, with its article ("a positive number").
        accept: returns True for the values to accept (only finite values reach it).

    Returns:
        A function that parses one argument.
    """

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


positive_int = int_at_least(1, "a positive integer")
"""Integers >= 1."""
non_negative_int = int_at_least(0, "a non-negative integer")
"""Integers >= 0."""
positive_float = finite_float("a positive number", lambda v: v > 0)
"""Finite floats > 0."""
non_negative_float = finite_float("a number >= 0", lambda v: v >= 0)
"""Finite floats >= 0."""


QUIET_SPELLINGS = ("-q", "--quiet", "--no-progress")
"""The one option that turns progress bars off, in every spelling a command accepts (`m2l train`
had --no-progress, the others -q/--quiet)."""


def add_quiet(p: argparse.ArgumentParser, what: str = "no progress bar") -> None:
    """Declare -q/--quiet (alias --no-progress), stored as `quiet`, on a parser or one of its
    argument groups; `what` is its help."""
    p.add_argument(*QUIET_SPELLINGS, dest="quiet", action="store_true", help=what)


KEEP_RATE = "keep"
"""The `--sample-rate` value that keeps the rate of the input audio."""


def sample_rate_arg(text: str) -> int | str:
    """An argparse type for `--sample-rate`: `KEEP_RATE`, or a rate in Hz within the range m2l
    reads and writes (`m2l.config.MIN_SAMPLE_RATE`..`MAX_SAMPLE_RATE`)."""
    from m2l.config import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    if text.strip().lower() == KEEP_RATE:
        return KEEP_RATE
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise argparse.ArgumentTypeError(
            f"expected a sample rate in Hz ({MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}) or "
            f"{KEEP_RATE!r}, got {text!r}"
        )
    return value


def number_list(
    kind: Callable[[str], float], check: Callable[[float], bool], what: str
) -> Callable[[str], tuple]:
    """An argparse type for comma-separated numbers ("1,2,4"); duplicates dropped, order kept.

    Args:
        kind: converts one item (`int`, `float`); a `ValueError` rejects the list.
        check: returns True for the values to accept.
        what: the expected values in error messages, plural ("positive integers").

    Returns:
        A function that parses one argument into a tuple.
    """

    def parse(text: str) -> tuple:
        values = []
        for part in text.split(","):
            try:
                value = kind(part.strip())
            except ValueError:
                value = None
            if value is None or not check(value):
                raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}")
            values.append(value)
        return tuple(dict.fromkeys(values))

    return parse


def _comma_items(text: str) -> list[str]:
    """The non-empty, stripped items of a comma-separated argument."""
    return [item.strip() for item in text.split(",") if item.strip()]


def comma_choices(known: Sequence[str], what: str) -> Callable[[str], list[str]]:
    """An argparse type for a comma-separated subset of `known`; duplicates dropped, order kept.

    Args:
        known: the accepted names.
        what: the kind of name in error messages ("task"): "unknown task x (choose from ...)".

    Returns:
        A function that parses one argument into a list.
    """

    def parse(text: str) -> list[str]:
        items = list(dict.fromkeys(_comma_items(text)))
        bad = [item for item in items if item not in known]
        if bad or not items:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(bad) or repr(text)} (choose from {', '.join(known)})"
            )
        return items

    return parse


def comma_subset(known: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type for a comma-separated list of names from `known`, in the order given.

    Args:
        known: the accepted names.

    Returns:
        A function that parses one argument into a list; the error names all of `known`.
    """

    def parse(text: str) -> list[str]:
        items = _comma_items(text)
        if not items or any(item not in known for item in items):
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {', '.join(known)}, got {text!r}"
            )
        return items

    return parse


def device_arg(text: str) -> str:
    """An argparse type for a torch device name (cpu, cuda, cuda:1, mps); returns `text`.

    Only the spelling is checked; `check_device` checks that this machine has the device.
    """
    import torch

    try:
        torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {text!r} (e.g. cpu, cuda, cuda:1, mps)") from None
    return text


def check_device(name: str | None) -> None:
    """Refuse a device this machine does not have (one line instead of a torch traceback).

    Args:
        name: a device name (None: the best available one, always accepted).

    Raises:
        M2LError: when CUDA or MPS is asked for but missing, or the CUDA index is out of range.
    """
    if name is None:
        return
    import torch

    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise M2LError(f"device {name!r}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise M2LError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise M2LError(f"device {name!r}: MPS is not available on this machine")
