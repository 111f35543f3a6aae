"""What every results.json of m2l starts with, and the JSON-safe numbers in it.

`m2l eval` (`m2l.evaluate.run`) and `m2l gen eval` (`m2l.generate.evaluate`) write results files
of their own formats; both open with the same preamble (format, version, the m2l version, when
and by which command) and store non-finite scores as null.
"""

from __future__ import annotations

import datetime
from typing import Any


def results_preamble(fmt: str, version: int, command: str | None) -> dict[str, Any]:
    """The first keys of a results file: its format and version, the m2l version, the time
    (UTC, ISO 8601, seconds) and the command line that made it."""
    from m2l import __version__  # the package facade imports the evaluation modules

    return {
        "format": fmt,
        "version": version,
        "m2l_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
    }


def finite_or_none(value: float | None) -> float | None:
    """A float for JSON: NaN and infinities become None."""
    if value is None:
        return None
    value = float(value)
    return value if value == value and abs(value) != float("inf") else None


def json_safe(value: Any) -> Any:
    """A copy of nested dicts / lists / tuples with non-finite floats replaced by None."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float):
        return finite_or_none(value)
    return value
