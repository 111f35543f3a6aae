"""Errors that reach the user as one clear line."""

from __future__ import annotations


class M2LError(ValueError):
    """A problem with what the user handed us (a file, an array, an option).

    The message is one line that says what is wrong and with which input; the CLI prints it
    without a traceback and exits with a non-zero code.
    """
