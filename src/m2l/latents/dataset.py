"""`LatentCropDataset`: random fixed-length latent crops for training latent generative models.

Over a sharded dataset (`m2l pack`) or a folder of `.m2l` files (`m2l encode`), through
`LatentStore`: each crop reads only its own slice of a memory-mapped file. A *segment* is one row
(an audio channel, or a stereo clip for a stereo v2 model) of one source file; segments shorter
than the crop are skipped (never padded: padding would teach a model silence that the codec
never produced), and `skipped` counts them.

Item `i` is a crop of segment `i % segments`, starting at a unit drawn uniformly from the
positions where the crop fits, by hashing (seed, epoch, i): the same seed, epoch and index give
the same crop in any process and in any order, and `set_epoch` moves every item to a new offset.

`decode_crops` turns crops back into audio; with statistics it undoes the normalisation first.
"""

from __future__ import annotations

import hashlib
import os
import struct
from typing import Any

import torch
from torch.utils.data import Dataset

from m2l.codec import Codec
from m2l.errors import M2LError
from m2l.latents.index import LAYOUTS
from m2l.latents.stats import MODES, LatentStats
from m2l.latents.store import LatentStore


class LatentCropDataset(Dataset):
    """Random crops of `crop_frames` units of a latent corpus, in the codec's layout of one row.

    An item is a float32 tensor, v1 [64, crop_frames] (latent frames), v2 [crop_frames, K, 64]
    (chunks of K latents), or with `with_metadata` a pair (tensor, dict with "source" (the file
    in the index), "entry" (its number), "row" and "start" (the first unit)), which
    `torch.utils.data.default_collate` batches.

    Example::

        data = LatentCropDataset("dataset/", crop_frames=256, stats="dataset/stats.json")
        loader = DataLoader(data, batch_size=32, shuffle=True, num_workers=4)
        for z in loader:          # v1: [32, 64, 256], zero mean / unit std per dimension
            ...
        audio = data.decode(codec, z)   # [32, channels, 256 * codec.samples_per_unit]

    Attributes:
        store: the `LatentStore` read from.
        crop_frames: units per crop.
        segments: (entry, row) of every segment long enough, in index order.
        skipped: segments left out because they are shorter than a crop.
        stats: the statistics crops are normalised with, or None.
    """

    def __init__(
        self,
        latents: str | os.PathLike | LatentStore,
        crop_frames: int,
        *,
        seed: int = 0,
        items: int | None = None,
        stats: LatentStats | str | os.PathLike | None = None,
        normalize: str = "dims",
        verify: bool = True,
        with_metadata: bool = False,
    ):
        """Catalogue the corpus (no latents are read yet).

        Args:
            latents: a sharded dataset or a folder of `.m2l` files (or an open `LatentStore`).
            crop_frames: units per crop (v1 latent frames, v2 chunks), >= 1.
            seed: seeds every crop's offset (an integer in [0, 2**63)).
            items: the length of an epoch (default: one crop per segment).
            stats: statistics (a `LatentStats` or a stats file of `m2l stats`) to normalise crops
                with; None serves the latents as stored.
            normalize: "dims" (per-dimension mean/std) or "global" (the global mean/std).
            verify: check each file's checksum when it is first read (see `LatentStore`): one
                sequential read of every shard a process touches, in each DataLoader worker. For
                a large dataset, check it once (`m2l stats` verifies every shard) and pass False.
            with_metadata: items are (crop, metadata) pairs.

        Raises:
            M2LError: a bad argument, a corpus that cannot be read, no segment as long as a
                crop, or statistics of another model.
        """
        self.store = latents if isinstance(latents, LatentStore) else LatentStore(latents, verify=verify)
        self.crop_frames = _positive(crop_frames, "crop_frames")
        if not isinstance(seed, int) or not 0 <= seed < 2**63:
            raise M2LError(f"seed must be an integer in [0, 2**63), got {seed!r}")
        self.seed, self.epoch, self.with_metadata = seed, 0, bool(with_metadata)
        self.segments = [
            (number, row)
            for number, entry in enumerate(self.store.entries)
            if entry.frames >= self.crop_frames
            for row in range(entry.channels)
        ]
        self.skipped = sum(e.channels for e in self.store.entries) - len(self.segments)
        if not self.segments:
            longest = max(e.frames for e in self.store.entries)
            raise M2LError(
                f"{self.store.root}: no file is {self.crop_frames} units long (the longest has {longest})"
            )
        self.items = len(self.segments) if items is None else _positive(items, "items")
        named = isinstance(stats, str | os.PathLike)
        self.stats = LatentStats.load(stats) if named else stats
        if normalize not in MODES:
            raise M2LError(f"normalize must be one of {', '.join(MODES)}, got {normalize!r}")
        self.normalize = normalize
        if self.stats is not None:
            self.stats.check_model(self.store.model, str(stats) if named else "stats")

    def __len__(self) -> int:
        return self.items

    def set_epoch(self, epoch: int) -> None:
        """Draw new offsets: item i of epoch e is the same crop wherever it is read.

        DataLoader workers copy the dataset when they start: call this before iterating (with
        `persistent_workers`, the workers keep the epoch they started with).
        """
        if not isinstance(epoch, int) or not 0 <= epoch < 2**63:
            raise M2LError(f"epoch must be an integer in [0, 2**63), got {epoch!r}")
        self.epoch = epoch

    def start_of(self, index: int) -> tuple[int, int, int]:
        """(entry, row, first unit) of item `index` (its crop's place, without reading it)."""
        if not -self.items <= index < self.items:
            raise IndexError(f"item {index} of a dataset of {self.items}")
        index %= self.items
        number, row = self.segments[index % len(self.segments)]
        span = self.store.entries[number].frames - self.crop_frames + 1
        return number, row, _draw(span, self.seed, self.epoch, index)

    def crop(self, entry: int, row: int, start: int) -> torch.Tensor:
        """The crop of row `row` of entry `entry` from unit `start`, normalised if stats are set."""
        z = self.store.read(entry, row, start, start + self.crop_frames)
        return z if self.stats is None else self.stats.normalize(z, self.normalize)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, dict[str, Any]]:
        number, row, start = self.start_of(index)
        z = self.crop(number, row, start)
        if not self.with_metadata:
            return z
        return z, {"source": self.store.entries[number].source, "entry": number, "row": row, "start": start}

    def denormalize(self, crops: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation of crops (the identity without stats)."""
        return crops if self.stats is None else self.stats.denormalize(crops, self.normalize)

    def decode(
        self, codec: Codec, crops: torch.Tensor, *, steps: int = 1, seed: int | None = None
    ) -> torch.Tensor:
        """`decode_crops` with this dataset's statistics (see there)."""
        return decode_crops(codec, crops, stats=self.stats, normalize=self.normalize, steps=steps, seed=seed)


def _draw(span: int, *key: int) -> int:
    """An integer in [0, span) that is a pure function of `key` (uniform to within 2**-24 for any
    span up to 2**40: a 64-bit BLAKE2b hash reduced modulo span)."""
    digest = hashlib.blake2b(struct.pack("<3Q", *key), digest_size=8, person=b"m2l-crop").digest()
    return int.from_bytes(digest, "little") % span


def _positive(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise M2LError(f"{name} must be a positive integer, got {value!r}")
    return value


def decode_crops(
    codec: Codec,
    crops: torch.Tensor,
    *,
    stats: LatentStats | None = None,
    normalize: str = "dims",
    steps: int = 1,
    seed: int | None = None,
) -> torch.Tensor:
    """Decode latent crops (or generated latents of that shape) to audio.

    The crops are denormalised with `stats` if given, then each becomes a file of one row and goes
    through `codec.decode(z, steps=steps, seed=seed)` with z [B, 1, *row] and the codec's default
    padding: a crop of n units gives n * codec.samples_per_unit samples.

    Args:
        codec: the codec of the model that made the latents (`m2l.load(entry.model_source)`).
        crops: one crop, v1 [64, n] / v2 [n, K, 64], or a batch [B, ...] of them.
        stats: the statistics they were normalised with (None: raw latents).
        normalize: the mode they were normalised with ("dims" or "global").
        steps: consistency steps of the decoder.
        seed: makes decoding reproducible.

    Returns:
        [channels, n * samples_per_unit] for one crop, [B, channels, n * samples_per_unit] for a
        batch (channels: 1, or 2 for a stereo v2 model).

    Raises:
        M2LError: crops of another layout than the codec's, or stats of another model.
    """
    layout = LAYOUTS[codec.version]
    if stats is not None and (stats.kind, stats.config_hash) != (codec.version, codec.config_hash):
        raise M2LError(f"statistics of {stats.model_id} do not fit the codec of {codec.model_id}")
    z = crops if stats is None else stats.denormalize(crops, normalize)
    single = z.dim() == layout.row_rank
    if not single and z.dim() != layout.row_rank + 1:
        raise M2LError(
            f"crops: expected {layout.row_rank} or {layout.row_rank + 1} axes, got {tuple(z.shape)}"
        )
    batch = z[None] if single else z
    wave = codec.decode(batch[:, None], steps=steps, seed=seed)
    return wave[0] if single else wave
