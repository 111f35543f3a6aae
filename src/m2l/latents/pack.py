"""Pack a folder of `.m2l` files (what `m2l encode` writes) into a sharded latent dataset.

`pack_folder` reads every file's header first and refuses a folder of two models before anything
is written, then loads each file (checksums verified) in sorted path order into a `ShardWriter`.
With a manifest (`m2l data fetch`'s `manifest.jsonl`, or any JSON-lines file whose rows have a
relative `path`), the row of each file's audio is copied into its index entry: a `.m2l` file
matches the row whose `path` without its extension ends with the file's path relative to the
packed folder without `.m2l` (so `music/train/pkg/a.flac` matches `pkg/a.m2l` in a folder
encoded from DATA/music/train, or `music/train/pkg/a.m2l` in one encoded from DATA).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tqdm import tqdm

from m2l.datasets import manifest_rows
from m2l.errors import M2LError
from m2l.files import check_output_folder
from m2l.formats import load_latents
from m2l.latents.index import INDEX_NAME
from m2l.latents.shards import DEFAULT_SHARD_BYTES, ShardWriter
from m2l.latents.store import catalogue

ManifestLookup = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True)
class PackSummary:
    """What `pack_folder` wrote.

    Attributes:
        index: the index file.
        files: source files packed.
        units: latent units packed, all rows together (frames for v1, chunks for v2).
        shards: shard files written.
        bytes: bytes of latents in them.
        unmatched: sources that have no manifest row (empty without a manifest).
    """

    index: Path
    files: int
    units: int
    shards: int
    bytes: int
    unmatched: list[str] = field(default_factory=list)


def _without_suffix(path: str) -> str:
    pure = PurePosixPath(path)
    try:
        return pure.with_suffix("").as_posix()
    except ValueError:  # a name that cannot lose a suffix ("..")
        return pure.as_posix()


def manifest_lookup(manifest: str | os.PathLike) -> ManifestLookup:
    """A function: a `.m2l` path relative to the packed folder -> its manifest row, or None.

    Raises:
        M2LError: the manifest is unreadable or a row has no text `path` (naming the line); the
            function raises when two rows match one file (naming both lines).
    """
    path = Path(manifest)
    rows = manifest_rows(path)
    keys: dict[str, list[int]] = {}
    for number, (where, row) in enumerate(rows):
        value = row.get("path")
        if not isinstance(value, str) or not value.strip():
            raise M2LError(f"{where}: field 'path' must be a relative path, got {value!r}")
        parts = PurePosixPath(_without_suffix(value)).parts
        for k in range(len(parts)):
            keys.setdefault("/".join(parts[k:]), []).append(number)

    def find(source: str) -> dict[str, Any] | None:
        hits = keys.get(_without_suffix(source), [])
        if len(hits) > 1:
            first, second = rows[hits[0]][0], rows[hits[1]][0]
            raise M2LError(
                f"{path}: {len(hits)} rows match {source} ({first}, {second}); paths must be unique"
            )
        return rows[hits[0]][1] if hits else None

    return find


def pack_folder(
    latent_dir: str | os.PathLike,
    dataset_dir: str | os.PathLike,
    *,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    manifest: str | os.PathLike | None = None,
    force: bool = False,
    quiet: bool = True,
) -> PackSummary:
    """Pack the `.m2l` files under `latent_dir` into a sharded dataset in `dataset_dir`.

    Args:
        latent_dir: a folder of `.m2l` files of one model (walked recursively).
        dataset_dir: the dataset folder to write (created if missing; not `latent_dir`).
        shard_bytes: about how many bytes of latents a shard holds (default 256 MB).
        manifest: a manifest whose rows are copied into the index (see the module docstring).
        force: replace a dataset that is there.
        quiet: no progress bar on stderr.

    Returns:
        What was written.

    Raises:
        M2LError: one line naming the file: a missing or empty folder, files of two models, a
            damaged file, a malformed manifest, an existing dataset without `force`.
    """
    src, out = Path(latent_dir), Path(dataset_dir)
    check_output_folder(out)  # before any work: an output path that is a file is refused at once
    if src.exists() and out.exists() and os.path.samefile(src, out):
        raise M2LError(f"{out}: the dataset folder must not be the folder of .m2l files")
    entries = catalogue(src)
    lookup = manifest_lookup(manifest) if manifest is not None else None
    rows = {entry.source: lookup(entry.source) if lookup else None for entry in entries}
    total = 0
    with ShardWriter(out, shard_bytes=shard_bytes, force=force) as writer:
        for entry in tqdm(entries, desc="pack", unit="file", disable=quiet, leave=False):
            lf = load_latents(src / entry.source)
            writer.add(lf, source=entry.source, manifest=rows[entry.source])
            total += lf.latents.numel() * 4
    return PackSummary(
        index=out / INDEX_NAME,
        files=len(writer.entries),
        units=sum(e.frames * e.channels for e in writer.entries),
        shards=len({e.shard for e in writer.entries}),
        bytes=total,
        unmatched=[s for s, row in rows.items() if row is None] if lookup else [],
    )
