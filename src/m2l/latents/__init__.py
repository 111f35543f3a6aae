"""Latents at dataset scale: sharded latent datasets, random crops for training, corpus statistics.

People turn corpora into latents (`m2l encode`, one `.m2l` file per audio file) and train latent
generative models on them. This package packs such a folder into a few large files
(`m2l pack`), serves fixed-length crops of it (or of the folder itself) as a
`torch.utils.data.Dataset`, and measures per-dimension statistics to normalise them (`m2l stats`).

A sharded latent dataset is a folder (format version 1, `m2l.latents.index` and `m2l.latents.shards`)::

    DATASET_DIR/index.jsonl                 one JSON object per source file (`Entry`)
    DATASET_DIR/shard-000000.safetensors    format "m2l-latent-shard": the latents of many files
    DATASET_DIR/shard-000001.safetensors    ...  (about --shard-mb each, 256 MB by default)
    DATASET_DIR/stats.json                  written by `m2l stats` (format "m2l-latent-stats")

A shard holds one float32 tensor, `latents`: rows of latents (a row: one audio channel, or one
stereo clip for a stereo v2 model) concatenated along the time axis, which comes first so that a
crop is one contiguous byte range: v1 [units, 64] (rows of `[channels, 64, frames]`, transposed),
v2 [units, K, 64] (rows of `[rows, chunks, K, 64]`). A file with C rows takes C consecutive runs
of `frames` units, row r starting at `offset + r * frames`; readers hand rows back in the codec's
layout (v1 [64, frames]). Its metadata carries the format name
and version, the model (id, config hash, kind, latent scale, sample rate) and the two digests of
m2l's formats (`m2l.checksummed.seal`). The index is written last, so an interrupted pack leaves no
index and nothing lists a partial shard; a row of the index names its shard's metadata digest.

Modules: `index` (`Entry`, the index and the latent layouts, `read_index`), `shards` (the shard
format, `ShardWriter`, `Shard`), `store` (`LatentStore`: a sharded dataset or a folder of `.m2l`
files, read by slices), `pack` (folder -> dataset), `stats` (`LatentStats`, streamed Chan/Welford
moments), `dataset` (`LatentCropDataset`, `decode_crops`) and `cli` (`m2l pack`, `m2l stats`).

The names below resolve on first access, so that `m2l --help` (which imports `m2l.latents.cli`)
does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from m2l.lazy import lazy_attribute, lazy_names

if TYPE_CHECKING:
    from m2l.latents.dataset import LatentCropDataset, decode_crops
    from m2l.latents.index import Entry, read_index
    from m2l.latents.pack import pack_folder
    from m2l.latents.shards import Shard, ShardWriter
    from m2l.latents.stats import LatentStats, compute_stats
    from m2l.latents.store import LatentStore

_LAZY = {
    "Entry": "m2l.latents.index",
    "LatentCropDataset": "m2l.latents.dataset",
    "LatentStats": "m2l.latents.stats",
    "LatentStore": "m2l.latents.store",
    "Shard": "m2l.latents.shards",
    "ShardWriter": "m2l.latents.shards",
    "compute_stats": "m2l.latents.stats",
    "decode_crops": "m2l.latents.dataset",
    "pack_folder": "m2l.latents.pack",
    "read_index": "m2l.latents.index",
}

__all__ = [
    "Entry",
    "LatentCropDataset",
    "LatentStats",
    "LatentStore",
    "Shard",
    "ShardWriter",
    "compute_stats",
    "decode_crops",
    "pack_folder",
    "read_index",
]


def __getattr__(name: str) -> Any:
    """An exported name, imported from its module on first access."""
    return lazy_attribute(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return lazy_names(_LAZY, globals())
