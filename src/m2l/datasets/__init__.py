"""Open evaluation data, built reproducibly from Debian packages: music, speech, labelled notes.

`m2l data fetch DATA_DIR` (`m2l.datasets.fetch`) builds::

    DATA_DIR/music/{train,val,test}/<package>/...    one manifest.jsonl per split
    DATA_DIR/speech/{train,val,test}/<package>/...   one manifest.jsonl per split
    DATA_DIR/notes/{train,val,test}/<instrument>/... one notes/manifest.jsonl (labels + "split")
    DATA_DIR/excerpts/{train,val,test}/<piece>/...   one excerpts/manifest.jsonl (labels + "split")

A manifest has one JSON object per line. Every line has the fields of `COMMON_FIELDS`:
`path` (relative to DATA_DIR, with "/" separators), `duration` (seconds), `sample_rate`, `channels`,
`licence` and `source` (the Debian package). Lines of notes/manifest.jsonl add the labels of
`NOTE_FIELDS`: `program` (General MIDI number, 1-128), `instrument`, `family` (the GM family),
`pitch` (MIDI note), `pitch_class` (pitch % 12), `velocity` (MIDI, 1-127) and `split`.
Lines of excerpts/manifest.jsonl (`m2l.datasets.excerpts`) add `EXCERPT_FIELDS`: `piece`, `key`
(e.g. "A minor"), `key_mode`, `tonic` (pitch class), `tempo_bpm`, `tempo_class`, `meter` ("3/4",
"4/4" or "6/8"), `programs` (GM bass, chords, melody) and `split` (also `section`, `drums`, `seconds`).
`read_manifest` reads and checks one (`manifest_rows` only parses one); `data_root` finds DATA_DIR
from a manifest's path; `manifest_files` lists the files of any JSON-lines file list (only `path`
needed) for the commands that take manifests (`m2l encode`, `m2l reconstruct`, `m2l eval`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from m2l.errors import M2LError

SETS = ("music", "speech", "notes", "excerpts")
RENDERED_SETS = ("notes", "excerpts")
"""The sets with one DATA_DIR/<set>/manifest.jsonl (labels and "split" on every line)."""
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.jsonl"
MANIFEST_SUFFIX = ".jsonl"
"""The extension by which a command input is taken as a manifest (`manifest_files`)."""

COMMON_FIELDS: dict[str, str] = {
    "path": "a relative path",
    "duration": "a number >= 0",
    "sample_rate": "a positive integer",
    "channels": "a positive integer",
    "licence": "a non-empty string",
    "source": "a non-empty string",
}
NOTE_FIELDS: dict[str, str] = {
    "program": "an integer in 1..128",
    "instrument": "a non-empty string",
    "family": "a non-empty string",
    "pitch": "an integer in 0..127",
    "pitch_class": "an integer in 0..11",
    "velocity": "an integer in 1..127",
    "split": "one of train, val, test",
}
EXCERPT_FIELDS: dict[str, str] = {
    "piece": "a non-empty string",
    "key": "a non-empty string",
    "key_mode": "major or minor",
    "tonic": "an integer in 0..11",
    "tempo_bpm": "a positive integer",
    "tempo_class": "an integer >= 0",
    "meter": "a non-empty string",
    "programs": "a list of integers in 1..128",
    "split": "one of train, val, test",
}


def _is_int(value: Any, low: int, high: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _relative(value: Any) -> bool:
    if not _is_text(value) or "\\" in value:
        return False
    parts = PurePosixPath(value).parts
    return not PurePosixPath(value).is_absolute() and ".." not in parts and "." not in value.split("/")


def _duration(value: Any) -> bool:
    return (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    )


_CHECKS = {
    "path": _relative,
    "duration": _duration,
    "sample_rate": lambda v: _is_int(v, 1),
    "channels": lambda v: _is_int(v, 1),
    "licence": _is_text,
    "source": _is_text,
    "program": lambda v: _is_int(v, 1, 128),
    "instrument": _is_text,
    "family": _is_text,
    "pitch": lambda v: _is_int(v, 0, 127),
    "pitch_class": lambda v: _is_int(v, 0, 11),
    "velocity": lambda v: _is_int(v, 1, 127),
    "split": lambda v: v in SPLITS,
    "piece": _is_text,
    "key": _is_text,
    "key_mode": lambda v: v in ("major", "minor"),
    "tonic": lambda v: _is_int(v, 0, 11),
    "tempo_bpm": lambda v: _is_int(v, 1),
    "tempo_class": lambda v: _is_int(v, 0),
    "meter": _is_text,
    "programs": lambda v: isinstance(v, list) and all(_is_int(p, 1, 128) for p in v),
}


def check_entry(entry: Any, where: str) -> dict[str, Any]:
    """Check one manifest entry; returns it, or raises `M2LError` naming `where` and the field.

    The common fields are required. A line with any note label (but "split") must have all of
    them, and `pitch_class` must equal `pitch % 12`; a line with a "key" must have every field of
    `EXCERPT_FIELDS`. Other fields are allowed and kept.
    """
    if not isinstance(entry, dict):
        raise M2LError(f"{where}: expected a JSON object, got {type(entry).__name__}")
    required = dict(COMMON_FIELDS)
    if any(name in entry for name in NOTE_FIELDS if name != "split"):
        required.update(NOTE_FIELDS)
    if "key" in entry:
        required.update(EXCERPT_FIELDS)
    for name, what in required.items():
        if name not in entry:
            raise M2LError(f"{where}: missing field {name!r}")
        if not _CHECKS[name](entry[name]):
            raise M2LError(f"{where}: field {name!r} must be {what}, got {entry[name]!r}")
    if "pitch" in entry and entry["pitch_class"] != entry["pitch"] % 12:
        raise M2LError(f"{where}: pitch_class {entry['pitch_class']} is not pitch {entry['pitch']} % 12")
    return entry


def manifest_bytes(path: str | Path) -> bytes:
    """The bytes of a manifest file (e.g. to hash them before `manifest_rows` parses them).

    Raises:
        M2LError: one line naming the file when it is missing, a directory or unreadable.
    """
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise M2LError(f"{path}: no such manifest") from None
    except IsADirectoryError:
        raise M2LError(f"{path}: is a directory; give the manifest.jsonl file") from None
    except OSError as err:
        raise M2LError(f"{path}: cannot read the manifest ({err.strerror or err})") from None


def manifest_rows(path: str | Path, data: bytes | None = None) -> list[tuple[str, dict[str, Any]]]:
    """The JSON object of every non-blank line of a JSON-lines manifest, fields not checked.

    The shared reader of `read_manifest`, `m2l eval` and `m2l probe`, which check the fields they
    need. Lines end at "\\n" only (JSON strings may hold other line separators).

    Args:
        path: the manifest file, named in errors.
        data: its bytes when the caller has read them (`manifest_bytes`); otherwise it is read.

    Returns:
        ("FILE:LINE", object) pairs in file order; the first names the line in error messages.

    Raises:
        M2LError: one line naming the file (and line) when it cannot be read, is not UTF-8, or a
            line is not valid JSON or not a JSON object.
    """
    path = Path(path)
    try:
        text = (manifest_bytes(path) if data is None else data).decode("utf-8")
    except UnicodeDecodeError:
        raise M2LError(f"{path}: not a UTF-8 text file (expected JSON lines)") from None
    rows = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as err:
            raise M2LError(f"{where}: not valid JSON ({err.msg})") from None
        if not isinstance(entry, dict):
            raise M2LError(f"{where}: expected a JSON object, got {type(entry).__name__}")
        rows.append((where, entry))
    return rows


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    """Read a manifest.jsonl written by `m2l data fetch`, checking every line.

    Args:
        path: the manifest file. Entry paths are relative to DATA_DIR (see `data_root`).

    Returns:
        The entries in file order (blank lines are skipped).

    Raises:
        M2LError: one line naming the file (and line number) when the file is missing or a line
            is not a JSON object with the fields described in the module docstring.
    """
    return [check_entry(entry, where) for where, entry in manifest_rows(path)]


def data_root(manifest: str | Path) -> Path:
    """DATA_DIR for a manifest of the fetched layout (the folder its entry paths are relative to).

    DATA_DIR/{notes,excerpts}/manifest.jsonl -> DATA_DIR; DATA_DIR/<set>/<split>/manifest.jsonl ->
    DATA_DIR.

    Raises:
        M2LError: the path is not laid out like that.
    """
    manifest = Path(manifest)
    if manifest.parent.name in RENDERED_SETS:
        return manifest.parent.parent
    if manifest.parent.name in SPLITS and manifest.parent.parent.name in SETS:
        return manifest.parent.parent.parent
    raise M2LError(
        f"{manifest}: not DATA_DIR/<notes|excerpts>/{MANIFEST} or DATA_DIR/<set>/<split>/{MANIFEST}"
    )


@dataclass(frozen=True)
class ManifestFile:
    """One file a manifest lists."""

    where: str
    """"FILE:LINE" of its row, for messages."""
    written: str
    """Its `path` as the row has it."""
    name: str
    """Its path as a relative POSIX path: as written, or an absolute one without its root (an
    output tree mirrors it)."""
    candidates: tuple[Path, ...]
    """Where it may be read from, in order of preference."""

    @property
    def path(self) -> Path:
        """The first candidate that is a file (else the first: reading it names what is missing)."""
        return next((c for c in self.candidates if c.is_file()), self.candidates[0])


def manifest_files(manifest: str | Path) -> list[ManifestFile]:
    """The files a JSON-lines manifest lists, in file order: one row per file, with a `path`.

    An absolute `path` is read where it is. A relative one is looked for in the manifest's own
    folder, then in DATA_DIR of the fetched layouts (two, then one folder above the manifest's
    folder: DATA/<set>/<split>/manifest.jsonl, DATA/notes/manifest.jsonl); the first that holds
    it is used. Whether the files exist is left to the caller (a missing one fails on its own).

    Raises:
        M2LError: one line naming the file and line when it cannot be read, a row has no text
            `path`, or a path climbs out with "..".
    """
    manifest = Path(manifest)
    own = manifest.absolute().parent
    roots = [own, *list(own.parents)[:2][::-1]]
    files = []
    for where, row in manifest_rows(manifest):
        if "path" not in row:
            raise M2LError(f"{where}: missing field 'path'")
        value = row["path"]
        if not _is_text(value):
            raise M2LError(f"{where}: field 'path' must be a file path, got {value!r}")
        pure = PurePosixPath(value)
        if not pure.name:
            raise M2LError(f"{where}: field 'path' must name a file, got {value!r}")
        if ".." in pure.parts:
            raise M2LError(f"{where}: field 'path' must not contain '..', got {value!r}")
        if Path(value).is_absolute():
            name, candidates = pure.relative_to(pure.anchor).as_posix(), (Path(value),)
        else:
            name, candidates = pure.as_posix(), tuple(root / value for root in roots)
        files.append(ManifestFile(where, value, name, candidates))
    return files
