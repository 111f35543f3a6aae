"""The generator's training data: normalised crops of a latent dataset, split by segment.

A segment is one row (an audio channel, or the mid row of a mid/side stereo file: side rows are
left out, and the normalising statistics are those of the rows kept) of one file of a packed
dataset or `.m2l` folder (`LatentCropDataset`). A fixed share of the segments, chosen by a
hash of (source, row), is held out for validation; crops are drawn from a `torch.Generator`, so a
step's batch is a function of its seed. Labels come from a manifest column of the packed dataset
(`m2l pack --manifest`): the class names are the column's distinct values, sorted; a file
without one gets the null class.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from m2l.errors import M2LError
from m2l.generate.normalize import KIND
from m2l.latents.dataset import LatentCropDataset
from m2l.latents.index import Entry
from m2l.latents.stats import LatentStats, compute_stats, stats_path
from m2l.latents.store import LatentStore

Segment = tuple[int, int]
"""(entry, row) of a dataset."""


class LatentSplit:
    """Training and validation segments of a latent dataset, and their crops.

    Attributes:
        crops: the normalising crop dataset (its `stats` are the dataset's `m2l stats` file, or
            computed when it has none).
        stats: those statistics.
        train, val: the segments of each part (val is train when there is one segment or
            `val_share` is 0).
        labels: the class names (empty without a label column).
        codec_id, codec_source: the model id and `m2l.load` source recorded in the latents.
        identity: what names the data (`dataset_identity`), recorded in a training run.
    """

    def __init__(
        self, dataset: str | os.PathLike, frames: int, label_column: str = "", val_share: float = 0.1
    ):
        store = LatentStore(dataset)
        if store.model.kind != KIND:
            raise M2LError(f"{dataset}: {store.model.kind} latents; the generator models {KIND} latents")
        rows = music_rows(store)
        found = stats_path(dataset)
        whole = len(rows) == sum(e.channels for e in store.entries)  # no side row left out
        self.stats = LatentStats.load(found) if whole and found.exists() else compute_stats(store, rows=rows)
        self.crops = LatentCropDataset(store, frames, stats=self.stats)
        kept = set(rows)
        segments = [segment for segment in self.crops.segments if segment in kept]  # long enough
        if not segments:
            raise M2LError(f"{dataset}: no music row is {frames} frames long (side rows are left out)")
        self.codec_id, self.codec_source = (
            store.model.model_id,
            store.model.model_source or store.model.model_id,
        )
        self.train, self.val = split(segments, store.entries, val_share)
        self.labels, self.entry_labels = labels_of(store, label_column)
        self.identity = dataset_identity(store)

    def batch(
        self, segments: list[Segment], size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`size` crops of random segments at random offsets.

        Returns:
            ([B, D, T] normalised crops, [B] long labels or None without labels).
        """
        picks = torch.randint(len(segments), (size,), generator=generator).tolist()
        crops, labels = [], []
        for pick in picks:
            entry, row = segments[pick]
            span = self.crops.store.entries[entry].frames - self.crops.crop_frames + 1
            start = int(torch.randint(span, (1,), generator=generator))
            crops.append(self.crops.crop(entry, row, start))  # [D, T]
            labels.append(self.entry_labels[entry])
        label = torch.tensor(labels, dtype=torch.long) if self.labels else None
        return torch.stack(crops), label


def is_side_row(entry: Entry, row: int) -> bool:
    """Whether row `row` of `entry` is the side row of a stereo file coded as mid/side."""
    return row == 1 and entry.channels == 2 and entry.extra.get("stereo") == "ms"


def music_rows(store: LatentStore) -> list[Segment]:
    """The (entry, row) pairs the generator learns: every row but the side rows of mid/side
    files (a side row is a quiet, decorrelated remainder, not music to be played alone)."""
    return [
        (number, row)
        for number, entry in enumerate(store.entries)
        for row in range(entry.channels)
        if not is_side_row(entry, row)
    ]


def dataset_identity(store: LatentStore) -> dict[str, Any]:
    """What names a latent dataset, cheaply, from its index (or its files' headers) alone.

    Returns:
        {"path": the resolved folder, "files", "frames": entries and frames of all rows, "sha256":
        a digest of each entry's (source, frames, channels, shard checksum), sorted by source}.
        The shard checksum is the sealed metadata digest of the file that holds the entry, which
        covers its tensors: other latents, another selection of files or a repacking all change
        the digest; moving the folder does not.
    """
    rows = sorted((e.source, e.frames, e.channels, e.shard_sha256) for e in store.entries)
    digest = hashlib.sha256(json.dumps(rows, ensure_ascii=True).encode()).hexdigest()
    frames = sum(e.frames * e.channels for e in store.entries)
    return {"path": str(Path(store.root).resolve()), "files": len(rows), "frames": frames, "sha256": digest}


def split(segments: list[Segment], entries: list[Entry], share: float) -> tuple[list[Segment], list[Segment]]:
    """(train, val) segments: the `share` of `segments` with the lowest hash of (source, row)."""

    def key(segment: Segment) -> str:
        return hashlib.sha256(f"{entries[segment[0]].source}|{segment[1]}".encode()).hexdigest()

    ranked = sorted(segments, key=key)
    held = min(len(ranked) - 1, max(1, round(share * len(ranked)))) if share > 0 else 0
    if held == 0:
        return ranked, ranked
    return ranked[held:], ranked[:held]


def labels_of(store: LatentStore, column: str) -> tuple[tuple[str, ...], list[int]]:
    """(class names, the label of each entry) from the manifest column `column` ("" for none).

    Raises:
        M2LError: a column that no entry has.
    """
    if not column:
        return (), [0] * len(store.entries)
    values = [None if e.manifest is None else e.manifest.get(column) for e in store.entries]
    names = tuple(sorted({str(v) for v in values if v not in (None, "")}))
    if not names:
        raise M2LError(f"{Path(store.root)}: no file has a value in the manifest column {column!r}")
    null = len(names)
    return names, [null if v in (None, "") else names.index(str(v)) for v in values]
