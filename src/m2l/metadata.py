"""Strict readers of the metadata values of m2l's safetensors files.

A file's metadata is untrusted text: every value is checked for its type and range before use,
and anything else is an `M2LError` of one line that names the file and the field. Integers are
plain ASCII digits (no "1e3", "1_000", unicode digits or 300-digit numbers), floats are finite,
strings hold no control characters, and JSON values are size- and depth-bounded objects or lists.
"""

from __future__ import annotations

import json
import math
import os
import re
from typing import Any

from m2l.errors import M2LError

JSON_LIMIT = 1 << 20
"""The largest JSON metadata value (characters) we parse."""
JSON_DEPTH = 16
"""The deepest nesting of lists and objects a JSON metadata value may have."""
TEXT_LIMIT = 4096
"""The longest plain-text metadata value (model ids, paths)."""

_INT = re.compile(r"-?[0-9]+")
_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?")
_MAX_DIGITS = 18  # every m2l integer field fits; longer numbers are refused before int()


def malformed(path: str | os.PathLike, key: str, problem: str) -> M2LError:
    """The one-line error for metadata field `key` of the file at `path`."""
    return M2LError(" ".join(f"{path}: malformed metadata: {key} {problem}".split()))


def _raw(path: str | os.PathLike, meta: dict[str, str], key: str) -> str:
    value = meta.get(key)
    if value is None:
        raise malformed(path, key, "is missing")
    if not isinstance(value, str):
        raise malformed(path, key, f"is a {type(value).__name__}, not text")
    return value


def _shown(text: str) -> str:
    """`text` quoted and cut short for a message."""
    return repr(text if len(text) <= 40 else text[:37] + "...")


def meta_int(path: str | os.PathLike, meta: dict[str, str], key: str, low: int, high: int) -> int:
    """The integer field `key`, which must lie in [low, high].

    Raises:
        M2LError: the field is missing, not a plain decimal integer, or out of range.
    """
    text = _raw(path, meta, key)
    if not _INT.fullmatch(text):
        raise malformed(path, key, f"= {_shown(text)} is not an integer")
    if len(text.lstrip("-")) > _MAX_DIGITS or not low <= int(text) <= high:
        raise malformed(path, key, f"= {_shown(text)} is outside {low}..{high}")
    return int(text)


def meta_float(path: str | os.PathLike, meta: dict[str, str], key: str, low: float, high: float) -> float:
    """The finite float field `key`, which must lie in (low, high].

    Raises:
        M2LError: the field is missing, not a decimal number, not finite, or out of range.
    """
    text = _raw(path, meta, key)
    if len(text) > 64 or not _FLOAT.fullmatch(text):
        raise malformed(path, key, f"= {_shown(text)} is not a number")
    value = float(text)
    if not (math.isfinite(value) and low < value <= high):
        raise malformed(path, key, f"= {_shown(text)} is outside ({low:g}, {high:g}]")
    return value


def meta_text(path: str | os.PathLike, meta: dict[str, str], key: str, default: str | None = None) -> str:
    """The text field `key` (`default` when absent and a default is given): one line, bounded.

    Raises:
        M2LError: the field is missing (without a default), too long, or holds control characters.
    """
    if default is not None and key not in meta:
        return default
    text = _raw(path, meta, key)
    if len(text) > TEXT_LIMIT:
        raise malformed(path, key, f"is {len(text)} characters long (at most {TEXT_LIMIT})")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise malformed(path, key, f"= {_shown(text)} holds control characters")
    return text


def _depth(value: Any) -> int:
    """Nesting depth of lists and objects in a parsed JSON value (iterative: no recursion)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth + 1)
            if deepest > JSON_DEPTH:
                break
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def meta_json(
    path: str | os.PathLike,
    meta: dict[str, str],
    key: str,
    kind: type[dict] | type[list] = dict,
    default: str | None = None,
) -> Any:
    """The JSON field `key`, which must be a `kind` (object or list) within `JSON_LIMIT`
    characters and `JSON_DEPTH` levels of nesting (`default` is parsed when absent, if given).

    Raises:
        M2LError: the field is missing, oversized, too deeply nested, not JSON, or not a `kind`.
    """
    text = default if default is not None and key not in meta else _raw(path, meta, key)
    if len(text) > JSON_LIMIT:
        raise malformed(path, key, f"is {len(text)} characters of JSON (at most {JSON_LIMIT})")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as err:  # RecursionError: nested beyond the parser's stack
        raise malformed(path, key, f"is not valid JSON ({str(err).splitlines()[0][:80]})") from None
    if not isinstance(value, kind):
        raise malformed(path, key, f"is a JSON {type(value).__name__}, expected a {kind.__name__}")
    if _depth(value) > JSON_DEPTH:
        raise malformed(path, key, f"nests deeper than {JSON_DEPTH} levels")
    return value
