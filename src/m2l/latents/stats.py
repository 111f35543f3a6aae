"""Latent statistics of a corpus: per-dimension mean and std, and a global mean and std.

`compute_stats` streams a sharded dataset or a folder of `.m2l` files piece by piece (never all
latents in memory) into `Moments`: running count, mean and sum of squared deviations per latent
dimension in float64, each piece merged with the parallel formula of Chan, Golub and LeVeque
(Welford's update for a batch), so any split of the data gives the same result up to rounding.
The global mean and std pool every value of every dimension (merged from the per-dimension
moments the same way). Standard deviations are population ones (dividing by the count), as in
`m2l.evaluate.latents`.

`m2l stats` writes them as JSON (format "m2l-latent-stats", version 1): kind, model_id,
config_hash, latent_dim, vectors (latent vectors counted), mean and std (one number per
dimension), global_mean, global_std, source, sha256 (over the other fields, so an edited file is
refused). `LatentStats.normalize` maps latents to zero mean and unit variance (per dimension, or
with the global numbers) and `denormalize` undoes it before decoding.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from m2l.errors import M2LError
from m2l.files import regular_file, write_text
from m2l.latents.index import LAYOUTS, STATS_NAME, Entry
from m2l.latents.store import LatentStore

STATS_FORMAT, STATS_VERSION = "m2l-latent-stats", 1
MODES = ("dims", "global")
PIECE_UNITS = 4096
"""Units (frames or chunks) of one row read at once by `compute_stats`."""


class Moments:
    """Running per-dimension count, mean and sum of squared deviations (M2), in float64.

    Attributes:
        count: vectors seen.
        mean: [dim] float64.
        m2: [dim] float64, the sum of squared deviations from `mean`.
    """

    def __init__(self, dim: int):
        self.count = 0
        self.mean = torch.zeros(dim, dtype=torch.float64)
        self.m2 = torch.zeros(dim, dtype=torch.float64)

    def add(self, vectors: torch.Tensor) -> Moments:
        """Merge a batch of latent vectors [N, dim] (any float dtype); returns self."""
        if vectors.shape[0]:
            v = vectors.detach().to(torch.float64)
            mean = v.mean(0)
            self._merge(v.shape[0], mean, ((v - mean) ** 2).sum(0))
        return self

    def merge(self, other: Moments) -> Moments:
        """Merge the moments of another part of the data (Chan et al.); returns self."""
        if other.count:
            self._merge(other.count, other.mean, other.m2)
        return self

    def _merge(self, count: int, mean: torch.Tensor, m2: torch.Tensor) -> None:
        total = self.count + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.count * count / total)
        self.count = total

    def std(self) -> torch.Tensor:
        """[dim] population standard deviations."""
        return (self.m2 / max(self.count, 1)).clamp_min(0).sqrt()

    def pooled(self) -> tuple[float, float]:
        """(mean, std) of every value of every dimension together."""
        mean = self.mean.mean()
        m2 = self.m2.sum() + self.count * ((self.mean - mean) ** 2).sum()
        return float(mean), math.sqrt(max(float(m2) / max(self.count * self.mean.numel(), 1), 0.0))


@dataclass(frozen=True)
class LatentStats:
    """Statistics of a latent corpus (see the module docstring for the file)."""

    kind: str
    model_id: str
    config_hash: str
    vectors: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    global_mean: float
    global_std: float
    source: str = ""

    @property
    def latent_dim(self) -> int:
        return len(self.mean)

    @classmethod
    def from_moments(cls, moments: Moments, model: Entry, source: str = "") -> LatentStats:
        """The statistics of `moments`, for latents of `model`'s model."""
        global_mean, global_std = moments.pooled()
        return cls(
            kind=model.kind,
            model_id=model.model_id,
            config_hash=model.config_hash,
            vectors=moments.count,
            mean=tuple(moments.mean.tolist()),
            std=tuple(moments.std().tolist()),
            global_mean=global_mean,
            global_std=global_std,
            source=source,
        )

    def _affine(self, like: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(shift, scale) broadcastable to `like` along its latent channel axis."""
        if mode not in MODES:
            raise M2LError(f"normalize must be one of {', '.join(MODES)}, got {mode!r}")
        axis = LAYOUTS[self.kind].channel_axis
        if like.dim() < -axis or like.shape[axis] != self.latent_dim:
            raise M2LError(
                f"latents of shape {tuple(like.shape)} do not have {self.latent_dim} channels on "
                f"axis {axis} ({self.kind} layout)"
            )
        if mode == "global":
            mean, std = torch.tensor([self.global_mean]), torch.tensor([self.global_std])
        else:
            mean, std = torch.tensor(self.mean), torch.tensor(self.std)
        std = torch.where(std > 0, std, torch.ones_like(std))  # a constant dimension is only centred
        shape = (-1, *[1] * (-axis - 1))
        return (
            mean.reshape(shape).to(like.device, like.dtype),
            std.reshape(shape).to(like.device, like.dtype),
        )

    def normalize(self, latents: torch.Tensor, mode: str = "dims") -> torch.Tensor:
        """(latents - mean) / std, per latent dimension ("dims") or with the global numbers.

        Args:
            latents: any tensor in the codec's layout (a row, a file, a batch of crops): v1
                [..., 64, frames], v2 [..., K, 64].
            mode: "dims" or "global".
        """
        shift, scale = self._affine(latents, mode)
        return (latents - shift) / scale

    def denormalize(self, latents: torch.Tensor, mode: str = "dims") -> torch.Tensor:
        """The inverse of `normalize`: latents * std + mean (before decoding)."""
        shift, scale = self._affine(latents, mode)
        return latents * scale + shift

    def check_model(self, model: Entry, where: str) -> None:
        """Refuse statistics of another model's latents than `model`'s."""
        if (self.kind, self.config_hash) != (model.kind, model.config_hash):
            raise M2LError(
                f"{where}: statistics of {self.model_id} ({self.kind}, config {self.config_hash}) do not "
                f"fit latents of {model.model_id} ({model.kind}, config {model.config_hash})"
            )

    def to_json(self) -> str:
        """The JSON text of the stats file (sealed with `sha256`)."""
        fields = {"format": STATS_FORMAT, "version": STATS_VERSION, **asdict(self)}
        fields["latent_dim"] = self.latent_dim
        fields["mean"], fields["std"] = list(self.mean), list(self.std)
        fields["sha256"] = _digest(fields)
        return json.dumps(fields, indent=1) + "\n"

    def save(self, path: str | os.PathLike, *, force: bool = False) -> Path:
        """Write the stats file atomically (exclusive unless `force`); returns its path."""
        return write_text(path, self.to_json(), force=force)

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatentStats:
        """Read and check a stats file.

        Raises:
            M2LError: one line naming the file: unreadable, not JSON, another format, a newer
                version, a failed checksum or malformed values.
        """
        return _parse(Path(path), _read_json(Path(path)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], origin: str) -> LatentStats:
        """Check the fields of a stats file (the JSON object of `to_json`) kept elsewhere, e.g.
        in a file's metadata; `origin` names where it came from in messages.

        Raises:
            M2LError: as `load`.
        """
        if data.get("format") != STATS_FORMAT:
            raise M2LError(f"{origin}: not {STATS_FORMAT} statistics")
        return _parse(Path(origin), data)


def _digest(fields: dict[str, Any]) -> str:
    body = {k: v for k, v in fields.items() if k != "sha256"}
    blob = json.dumps(body, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(b"m2l-latent-stats\n" + blob.encode()).hexdigest()


def _read_json(path: Path) -> dict[str, Any]:
    regular_file(path)
    try:
        if path.stat().st_size > 1 << 20:
            raise M2LError(f"{path}: too large for a latent stats file")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise M2LError(f"{path}: not a readable JSON file ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict) or data.get("format") != STATS_FORMAT:
        raise M2LError(f"{path}: not an {STATS_FORMAT} file")
    return data


def _numbers(value: Any, count: int | None = None) -> bool:
    values = value if isinstance(value, list) else [value]
    ok = all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    return ok and (count is None or (isinstance(value, list) and len(value) == count))


def _parse(path: Path, data: dict[str, Any]) -> LatentStats:
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > STATS_VERSION:
        raise M2LError(f"{path}: format version {version!r} is not one this m2l reads ({STATS_VERSION})")
    if data.get("sha256") != _digest(data):
        raise M2LError(f"{path}: content does not match its checksum (corrupt or modified)")
    dim = data.get("latent_dim")
    checks = {
        "kind": data.get("kind") in LAYOUTS,
        "model_id": isinstance(data.get("model_id"), str),
        "config_hash": isinstance(data.get("config_hash"), str),
        "latent_dim": isinstance(dim, int) and not isinstance(dim, bool) and 0 < dim <= 4096,
        "vectors": isinstance(data.get("vectors"), int) and data["vectors"] > 0,
        "mean": isinstance(dim, int) and _numbers(data.get("mean"), dim),
        "std": isinstance(dim, int) and _numbers(data.get("std"), dim) and min(data["std"]) >= 0,
        "global_mean": _numbers(data.get("global_mean")),
        "global_std": _numbers(data.get("global_std")) and data["global_std"] >= 0,
    }
    for name, ok in checks.items():
        if not ok:
            raise M2LError(f"{path}: malformed field {name!r} ({_shown(data.get(name))})")
    return LatentStats(
        kind=data["kind"],
        model_id=data["model_id"],
        config_hash=data["config_hash"],
        vectors=data["vectors"],
        mean=tuple(float(v) for v in data["mean"]),
        std=tuple(float(v) for v in data["std"]),
        global_mean=float(data["global_mean"]),
        global_std=float(data["global_std"]),
        source=str(data.get("source", "")),
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def stats_path(latents: str | os.PathLike) -> Path:
    """The default stats file of a dataset or `.m2l` folder: `stats.json` inside it."""
    return Path(latents) / STATS_NAME


def compute_stats(
    latents: str | os.PathLike | LatentStore,
    *,
    piece_units: int = PIECE_UNITS,
    verify: bool = True,
    rows: Iterable[tuple[int, int]] | None = None,
) -> LatentStats:
    """Per-dimension and global statistics of every latent of a corpus, streamed.

    Args:
        latents: a sharded dataset or a folder of `.m2l` files (or an open `LatentStore`).
        piece_units: units of one row read at a time (memory: piece_units x 64 x K floats).
        verify: check every file's checksum as it is read (see `LatentStore`).
        rows: only these (entry, row) pairs (None: every row of every entry).

    Returns:
        The statistics (`source` is the path given).

    Raises:
        M2LError: as `LatentStore` (missing, empty, two models, a damaged file).
    """
    store = latents if isinstance(latents, LatentStore) else LatentStore(latents, verify=verify)
    if piece_units < 1:
        raise M2LError(f"piece_units must be >= 1, got {piece_units}")
    layout, moments = store.layout, None
    if rows is None:
        rows = [(number, row) for number, entry in enumerate(store.entries) for row in range(entry.channels)]
    for number, row in rows:
        frames = store.entries[number].frames
        for start in range(0, frames, piece_units):
            piece = store.read(number, row, start, min(start + piece_units, frames))
            vectors = layout.vectors(piece)
            moments = (moments or Moments(vectors.shape[1])).add(vectors)
    if moments is None:  # a store holds at least one unit: only an empty `rows` gets here
        raise M2LError(f"{store.root}: no latents")
    return LatentStats.from_moments(moments, store.model, source=str(store.root))
