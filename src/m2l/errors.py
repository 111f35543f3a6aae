"""Errors that reach the user as one clear line."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class M2LError(ValueError):
    """A problem with what the user handed us (a file, an array, an option).

    The message is one line that says what is wrong and with which input; the CLI prints it
    without a traceback and exits with a non-zero code.
    """


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest of `choices`, or '': the hint a one-line error about
    an unknown name ends with."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
