"""Checksummed safetensors files, the container of every m2l format: the digests (`tensors_digest`
over the tensors, `metadata_digest` over the metadata), `seal` (a file's metadata with both),
`atomic_save` (through `m2l.files.atomic_output`) and `read_safetensors` (format, version and
both digests checked; version 1 files, whose checksum covers the tensors only, are read with one
`LegacyChecksumWarning` per file), and the strict readers of the metadata values (`meta_int`,
`meta_float`, `meta_text`, `meta_json`).

A file's metadata is untrusted text: every value is checked for its type and range before use,
and anything else is an `M2LError` of one line that names the file and the field. Integers are
plain ASCII digits (no "1e3", "1_000", unicode digits or 300-digit numbers), floats are finite,
strings hold no control characters, and JSON values are size- and depth-bounded objects or lists.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from m2l.errors import M2LError
from m2l.files import atomic_output, regular_file
from m2l.sniff import Kind, sniff


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of `tensors` (order independent)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def metadata_digest(meta: dict[str, str]) -> str:
    """SHA-256 over the names and values of every metadata field except `sha256` itself."""
    fields = {k: v for k, v in meta.items() if k != "sha256"}
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(b"m2l-metadata\n" + blob.encode()).hexdigest()


def seal(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, str]:
    """`meta` with `tensors_sha256` (the digest of `tensors`) and `sha256` (the digest of all the
    other fields, that one included) added: what a file's metadata is written as."""
    sealed = {**meta, "tensors_sha256": tensors_digest(tensors)}
    sealed["sha256"] = metadata_digest(sealed)
    return sealed


class LegacyChecksumWarning(UserWarning):
    """A file was read whose checksum covers its tensors but not its metadata (version 1)."""


_WARNED: set[str] = set()  # the files a LegacyChecksumWarning was given for


def _warn_tensors_only(path: Path, version: int) -> None:
    """Warn once per file that its metadata is not covered by its checksum."""
    key = os.path.realpath(path)
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(
        f"{path}: format version {version} file: its checksum covers the tensors but not the "
        "metadata (written by an older m2l; rewrite it to protect both)",
        LegacyChecksumWarning,
        stacklevel=4,
    )


def atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path, force: bool) -> None:
    """Write a safetensors file through `m2l.files.atomic_output` (exclusive unless `force`).

    Raises:
        M2LError: `path` exists and not `force`, or it cannot be written (disk full...).
    """
    with atomic_output(path, force=force) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def read_safetensors(
    path: Path, expected_format: str, version: int, *, tensors_only: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors + metadata, checking the format name, the version and both digests.

    Args:
        path: the file.
        expected_format: its `format` field must be this.
        version: the newest version of the format this m2l reads.
        tensors_only: the last version whose `sha256` covers the tensors only (0: none); such a
            file is read with one `LegacyChecksumWarning` per file.

    Returns:
        (tensors, metadata); the metadata always has `tensors_sha256`, the verified digest of
        the tensors (the weights' identity), whatever the version.

    Raises:
        M2LError: unreadable, another format, a newer or malformed version, or a digest that
            does not match (corrupt or modified).
    """
    path = Path(path)
    regular_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise M2LError(f"{path}: {_not_safetensors(path, reason)}") from None
    if meta.get("format") != expected_format:
        raise M2LError(f"{path}: not an {expected_format} file (format={meta.get('format')!r})")
    found = _check_version(path, meta, version)
    digest = tensors_digest(tensors)
    if found <= tensors_only:
        if meta.get("sha256") != digest:
            raise M2LError(f"{path}: content does not match its checksum (corrupt or modified)")
        _warn_tensors_only(path, found)
    elif meta.get("sha256") != metadata_digest(meta):
        raise M2LError(f"{path}: metadata does not match its checksum (corrupt or modified)")
    elif meta.get("tensors_sha256") != digest:
        raise M2LError(f"{path}: content does not match its checksum (corrupt or modified)")
    meta["tensors_sha256"] = digest
    return tensors, meta


def _not_safetensors(path: Path, reason: str) -> str:
    """Why a file that safetensors cannot read is refused: what it is instead, when its first
    bytes tell (an audio file, a NumPy array, a torch checkpoint), else the reader's `reason`."""
    try:
        found = sniff(path)
    except M2LError:
        found = None
    if found is None or found.kind in (Kind.SAFETENSORS, Kind.UNKNOWN):
        return f"not a readable safetensors file ({reason})"
    if found.kind is Kind.NUMPY:
        api = "m2l.load(MODEL).decode(numpy.load(PATH))"
        return f"is {found.description}, not an m2l file; arrays decode with the API: {api}"
    return f"is {found.description}, not an m2l file"


def _check_version(path: Path, meta: dict, supported: int) -> int:
    version = meta_int(path, meta, "version", 0, 10**9)
    if version > supported:
        raise M2LError(
            f"{path}: format version {version} is newer than this m2l supports ({supported}); upgrade m2l"
        )
    return version


# ----------------------------------------------------------------------------- metadata values
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
