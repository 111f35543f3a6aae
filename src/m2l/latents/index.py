"""The index of a sharded latent dataset (`index.jsonl`) and the latent layouts it describes.

One JSON object per line, one line per source file (`Entry`), in packing order. Fields:

- `source`: the `.m2l` file the latents came from, relative to the packed folder ("/" separators);
- `shard`, `offset`, `frames`, `channels`: the shard file (a name in the dataset folder), where
  row 0 starts along its time axis, units per row (latent frames for v1, chunks for v2) and rows
  (`latents.shape[0]` of the `.m2l` file: audio channels, or 1 for a stereo v2 model); row r
  starts at `offset + r * frames`;
- `kind` ("v1": rows of [64, frames]; "v2": rows of [chunks, K, 64]), `model_id`, `model_source`,
  `config_hash`, `latent_scale`: the model (one per dataset);
- `sample_rate`, `length`, `left_pad`, `extra`: what decoding the whole file needs (as in `.m2l`);
- `shard_sha256`: the metadata digest of the shard, checked when the shard is opened;
- `manifest` (optional): the manifest row of the audio file (licence, source, labels...), copied
  as it was when `m2l pack --manifest` matched one.

Rows may be removed (e.g. by licence) to make a subset: readers use only the rows they find.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from m2l.codec_v1 import Codec1
from m2l.codec_v2 import Codec2
from m2l.config import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE
from m2l.datasets import manifest_rows
from m2l.errors import M2LError
from m2l.files import write_text

INDEX_NAME = "index.jsonl"
STATS_NAME = "stats.json"
"""Where `m2l stats` writes by default, inside the dataset (or `.m2l`) folder."""
SHARD_NAME = re.compile(r"^shard-(\d{6,})\.safetensors$")
"""The name of a shard in a dataset folder (an index naming anything else is refused)."""
_MAX_UNITS = 1 << 40
_MAX_ROWS = 1 << 16


@dataclass(frozen=True)
class Layout:
    """Where time and latent channels lie in a codec's latents (and in one row of them).

    Attributes:
        kind: "v1" or "v2".
        time_axis: the axis over units (negative; the codec's `latent_time_axis`).
        channel_axis: the axis of a latent vector's channels (the codec's `latent_channel_axis`).
    """

    kind: str
    time_axis: int
    channel_axis: int

    @property
    def row_rank(self) -> int:
        """Axes of one row: 2 for v1 ([64, frames]), 3 for v2 ([chunks, K, 64])."""
        return max(-self.time_axis, -self.channel_axis)

    def time_index(self, start: int, stop: int, lead: tuple[int, ...] = ()) -> tuple[Any, ...]:
        """An index that takes units [start, stop) of a tensor whose last axes are one row."""
        before = self.row_rank + self.time_axis  # axes of the row before its time axis
        return (*lead, *[slice(None)] * before, slice(start, stop))

    def unit_shape(self, row_shape: Iterable[int]) -> tuple[int, ...]:
        """The shape of one unit: a row's shape without its time axis ((64,) or (K, 64))."""
        shape = list(row_shape)
        del shape[len(shape) + self.time_axis]
        return tuple(shape)

    def time_first(self, row: torch.Tensor) -> torch.Tensor:
        """One row -> [units, *unit shape] (v1 [64, n] -> [n, 64]; v2 unchanged), as shards keep it."""
        return row.movedim(self.time_axis, 0)

    def from_time_first(self, units: torch.Tensor) -> torch.Tensor:
        """The inverse of `time_first`: [units, *unit shape] -> one row in the codec's layout."""
        return units.movedim(0, self.time_axis)

    def vectors(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents of this layout (a row, a file's or a batch) -> their latent vectors [N, 64]."""
        return latents.movedim(self.channel_axis, -1).reshape(-1, latents.shape[self.channel_axis])


LAYOUTS = {
    codec.version: Layout(codec.version, codec.latent_time_axis, codec.latent_channel_axis)
    for codec in (Codec1, Codec2)
}


@dataclass(frozen=True)
class Entry:
    """One source file of a latent dataset: where its rows are and how to decode them (one
    line of `index.jsonl`, see the module docstring)."""

    source: str
    shard: str
    offset: int
    frames: int
    channels: int
    kind: str
    model_id: str
    config_hash: str
    latent_scale: float
    sample_rate: int
    length: int
    left_pad: int
    shard_sha256: str = ""
    model_source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None

    @property
    def layout(self) -> Layout:
        return LAYOUTS[self.kind]

    def row_start(self, row: int) -> int:
        """Where row `row` starts along the shard's time axis."""
        return self.offset + row * self.frames

    def model(self) -> tuple[str, str, str, float, int]:
        """What must be equal across a dataset: (kind, model_id, config_hash, scale, rate)."""
        return (self.kind, self.model_id, self.config_hash, self.latent_scale, self.sample_rate)

    def to_json(self) -> str:
        """The index line of this entry (no newline); `manifest` is left out when None."""
        row = asdict(self)
        if row["manifest"] is None:
            del row["manifest"]
        return json.dumps(row, ensure_ascii=False, separators=(",", ":"))


def check_same_model(first: Entry, entry: Entry, where: str) -> None:
    """Refuse `entry` (described by `where`) when its model differs from `first`'s.

    Raises:
        M2LError: the kind, model id, config hash, latent scale or sample rate differ.
    """
    if entry.model() != first.model():
        raise M2LError(
            f"{where}: latents of model {entry.model_id} ({entry.kind}, config {entry.config_hash}), "
            f"but {first.source} holds latents of {first.model_id} ({first.kind}, config "
            f"{first.config_hash}); a latent dataset holds one model's latents"
        )


def _integer(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value) and "\n" not in value


def _scale(value: Any) -> bool:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return ok and math.isfinite(value) and 0 < value <= 1e6


_FIELDS: dict[str, tuple[Any, str]] = {
    "source": (_text, "a non-empty string"),
    "shard": (lambda v: isinstance(v, str) and bool(SHARD_NAME.match(v)), "a shard file name"),
    "offset": (lambda v: _integer(v, 0, _MAX_UNITS), "an integer >= 0"),
    "frames": (lambda v: _integer(v, 1, _MAX_UNITS), "a positive integer"),
    "channels": (lambda v: _integer(v, 1, _MAX_ROWS), "a positive integer"),
    "kind": (lambda v: v in LAYOUTS, f"one of {', '.join(LAYOUTS)}"),
    "model_id": (_text, "a non-empty string"),
    "config_hash": (_text, "a non-empty string"),
    "latent_scale": (_scale, "a positive number"),
    "sample_rate": (lambda v: _integer(v, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE), "a sample rate"),
    "length": (lambda v: _integer(v, 1, _MAX_UNITS), "a positive integer"),
    "left_pad": (lambda v: _integer(v, 0, 1 << 24), "an integer >= 0"),
    "shard_sha256": (_text, "a non-empty string"),
    "model_source": (lambda v: isinstance(v, str), "a string"),
    "extra": (lambda v: isinstance(v, dict), "a JSON object"),
    "manifest": (lambda v: v is None or isinstance(v, dict), "a JSON object"),
}
_OPTIONAL = {"model_source": "", "extra": {}, "manifest": None}


def entry_from_json(row: dict[str, Any], where: str) -> Entry:
    """Check one parsed index line and make it an `Entry` (unknown fields are ignored).

    Raises:
        M2LError: a field is missing or of the wrong type or range (naming `where` and the field).
    """
    values = {}
    for name, (check, what) in _FIELDS.items():
        if name not in row and name in _OPTIONAL:
            values[name] = _OPTIONAL[name]
            continue
        if name not in row:
            raise M2LError(f"{where}: missing field {name!r}")
        if not check(row[name]):
            raise M2LError(f"{where}: field {name!r} must be {what}, got {_shown(row[name])}")
        values[name] = row[name]
    values["latent_scale"] = float(values["latent_scale"])
    return Entry(**values)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_index(folder: str | Path) -> list[Entry]:
    """The entries of the dataset in `folder`, checked: fields, one model, rows within sizes.

    Raises:
        M2LError: one line naming the index (and line) when it is missing, unreadable or holds
            a malformed row, or rows of two models.
    """
    path = Path(folder) / INDEX_NAME
    if not path.is_file():
        raise M2LError(
            f"{Path(folder)}: no {INDEX_NAME} (not a packed latent dataset, or an interrupted pack)"
        )
    rows = manifest_rows(path)
    entries = [entry_from_json(row, where) for where, row in rows]
    if not entries:
        raise M2LError(f"{path}: the index lists no files")
    for (where, _), entry in zip(rows, entries, strict=True):
        check_same_model(entries[0], entry, where)
    return entries


def write_index(folder: Path, entries: list[Entry], *, force: bool) -> Path:
    """Write `index.jsonl` atomically (exclusive unless `force`); returns its path."""
    text = "".join(entry.to_json() + "\n" for entry in entries)
    return write_text(Path(folder) / INDEX_NAME, text, force=force)
