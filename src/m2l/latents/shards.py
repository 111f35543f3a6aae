"""Shards of a latent dataset: `ShardWriter` packs latent files into them, `Shard` reads slices.

A shard is a safetensors file with one float32 tensor, `latents`, holding rows of one codec's
latents concatenated along the time axis, which comes first: v1 [units, 64] (rows of [64, frames]
transposed), v2 [units, K, 64] (rows of [chunks, K, 64] as they are), so that a crop is one
contiguous range of bytes (a crop of a v1 row in its own layout would be 64 reads far apart).
Metadata: format="m2l-latent-shard", version (1), kind, model_id, model_source, config_hash,
latent_scale, sample_rate, files, units, tensors_sha256, sha256 (the digests of
`m2l.checksummed.seal`). `Shard` checks the header (format, version, metadata digest, the index's
record of it) when it opens one, and the tensors' digest only on `verify`, which streams the file
in pieces: a crop never reads more than its own slice.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from m2l.checksummed import atomic_save, meta_int, meta_text, metadata_digest, seal
from m2l.errors import M2LError
from m2l.files import exists_error, regular_file, write_error
from m2l.formats import LatentFile
from m2l.latents.index import (
    INDEX_NAME,
    LAYOUTS,
    SHARD_NAME,
    STATS_NAME,
    Entry,
    Layout,
    check_same_model,
    write_index,
)

SHARD_FORMAT, SHARD_VERSION = "m2l-latent-shard", 1
DEFAULT_SHARD_BYTES = 256 << 20
"""A shard is closed before the next file would take it past this many bytes of latents."""
VERIFY_PIECE_BYTES = 16 << 20
"""How much of a shard `Shard.verify` holds in memory at once."""


def shard_name(number: int) -> str:
    """The file name of shard `number` ("shard-000000.safetensors")."""
    return f"shard-{number:06d}.safetensors"


def _shard_files(folder: Path) -> list[Path]:
    """The shard files in `folder` (by name), sorted."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if SHARD_NAME.match(p.name))


class ShardWriter:
    """Write latent files, in order, into shards of about `shard_bytes` and an index.

    Use it as a context manager; the index is written when the block ends without an error::

        with ShardWriter("dataset/", shard_bytes=256 << 20) as writer:
            for path in files:
                writer.add(load_latents(path), source=path.name)

    A file's rows always go to one shard (a file larger than `shard_bytes` gets a shard of its
    own). Each shard is written atomically when it is full; the index goes last, so a dataset
    interrupted while packing has no index and its shards are never read. A shard is built in
    memory: about twice `shard_bytes` are needed while it is written.
    """

    def __init__(
        self, folder: str | os.PathLike, *, shard_bytes: int = DEFAULT_SHARD_BYTES, force: bool = False
    ):
        """Check the output folder.

        Args:
            folder: the dataset folder (created if missing).
            shard_bytes: the size a shard may reach (bytes of latents, > 0).
            force: replace an existing dataset there (its index and `stats.json` are removed at
                once, shards that the new index does not list after it is written).

        Raises:
            M2LError: the folder holds a dataset (an index or shards) and not `force`.
        """
        self.folder, self.force = Path(folder), force
        if not isinstance(shard_bytes, int) or shard_bytes < 1:
            raise M2LError(f"shard_bytes must be a positive integer, got {shard_bytes!r}")
        self.shard_bytes = shard_bytes
        index = self.folder / INDEX_NAME
        if not force:
            existing = index if os.path.lexists(index) else next(iter(_shard_files(self.folder)), None)
            if existing is not None:
                raise exists_error(existing)
        else:  # what describes the old dataset goes first: its index, its statistics
            for stale in (index, self.folder / STATS_NAME):
                try:
                    stale.unlink(missing_ok=True)
                except OSError as err:
                    raise write_error(stale, err) from None
        self.entries: list[Entry] = []
        self._rows: list[torch.Tensor] = []
        self._pending: list[Entry] = []
        self._units = self._bytes = self._shards = 0
        self._unit_shape: tuple[int, ...] | None = None

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        if kind is None:
            self.close()

    def add(self, lf: LatentFile, source: str, manifest: dict[str, Any] | None = None) -> Entry:
        """Add the latents of one file (v1 [channels, 64, frames], v2 [rows, chunks, K, 64]).

        Args:
            lf: the latents and what decoding them needs (as `m2l.formats.load_latents` reads).
            source: what the index calls the file (its path relative to the packed folder).
            manifest: the manifest row of its audio, copied to the index.

        Returns:
            The entry (its `shard_sha256` is filled in when the shard is written).

        Raises:
            M2LError: latents of another model than the first file's, or of a bad shape or type.
        """
        layout = LAYOUTS.get(lf.kind)
        z = lf.latents
        if layout is None or z.dim() != layout.row_rank + 1 or not z.is_floating_point() or not z.numel():
            raise M2LError(f"{source}: latents {tuple(z.shape)} {z.dtype} are not of a {lf.kind} codec")
        if not bool(torch.isfinite(z).all()):
            raise M2LError(f"{source}: latents contain NaN or Inf")
        nbytes = z.numel() * 4
        if self._rows and self._bytes + nbytes > self.shard_bytes:
            self._flush()
        entry = _entry(lf, layout, source, shard_name(self._shards), self._units, manifest)
        self._check(entry, layout.unit_shape(z.shape[1:]))
        self._rows.extend(layout.time_first(z[r].float()) for r in range(entry.channels))
        self._pending.append(entry)
        self._units += entry.channels * entry.frames
        self._bytes += nbytes
        return entry

    def _check(self, entry: Entry, unit_shape: tuple[int, ...]) -> None:
        first = self.entries[0] if self.entries else self._pending[0] if self._pending else None
        if first is None:
            self._unit_shape = unit_shape
            return
        check_same_model(first, entry, entry.source)
        if unit_shape != self._unit_shape:
            raise M2LError(f"{entry.source}: latent units of shape {unit_shape}, not {self._unit_shape}")

    def _flush(self) -> None:
        """Write the buffered rows as the next shard."""
        first = self._pending[0]
        tensors = {"latents": torch.cat(self._rows).contiguous()}
        meta = {
            "format": SHARD_FORMAT,
            "version": str(SHARD_VERSION),
            "kind": first.kind,
            "model_id": first.model_id,
            "model_source": first.model_source,
            "config_hash": first.config_hash,
            "latent_scale": repr(first.latent_scale),
            "sample_rate": str(first.sample_rate),
            "files": str(len(self._pending)),
            "units": str(self._units),
        }
        sealed = seal(tensors, meta)
        atomic_save(tensors, sealed, self.folder / first.shard, self.force)
        self.entries += [replace(e, shard_sha256=sealed["sha256"]) for e in self._pending]
        self._rows, self._pending = [], []
        self._units = self._bytes = 0
        self._shards += 1

    def close(self) -> Path:
        """Write the last shard and the index; with `force`, delete shards it does not list.

        Returns:
            The index path.

        Raises:
            M2LError: nothing was added, or a write failed.
        """
        if self._pending:
            self._flush()
        if not self.entries:
            raise M2LError(f"{self.folder}: no latents were added; nothing to write")
        index = write_index(self.folder, self.entries, force=self.force)
        listed = {e.shard for e in self.entries}
        for stale in _shard_files(self.folder) if self.force else []:
            if stale.name not in listed:
                stale.unlink(missing_ok=True)
        return index


def _entry(
    lf: LatentFile, layout: Layout, source: str, shard: str, offset: int, manifest: dict[str, Any] | None
) -> Entry:
    """The index entry of `lf` (without the shard's digest)."""
    return Entry(
        source=source,
        shard=shard,
        offset=offset,
        frames=int(lf.latents.shape[layout.time_axis]),
        channels=int(lf.latents.shape[0]),
        kind=lf.kind,
        model_id=lf.model_id,
        config_hash=lf.config_hash,
        latent_scale=float(lf.latent_scale),
        sample_rate=int(lf.sample_rate),
        length=int(lf.length),
        left_pad=int(lf.left_pad),
        model_source=lf.model_source,
        extra=dict(lf.extra),
        manifest=manifest,
    )


class Shard:
    """A shard opened for reading: header checked, its tensor memory-mapped.

    Attributes:
        path: the shard file.
        layout: the latent layout of its rows.
        shape: the shape of its `latents` tensor (v1 [units, 64], v2 [units, K, 64]).
        units: its length along the time axis.
        metadata: its safetensors metadata.
    """

    def __init__(self, path: str | os.PathLike, expected: Entry | None = None):
        """Open `path` and check its header (no tensor data is read).

        Args:
            path: the shard file.
            expected: an index entry in it: its model and `shard_sha256` must match the shard.

        Raises:
            M2LError: unreadable, not a shard, a newer version, a damaged header, another model
                than `expected`, or not the shard the index was written with.
        """
        self.path = Path(path)
        regular_file(self.path)
        try:
            self._file = safe_open(str(self.path), framework="pt")
            self.metadata: dict[str, str] = dict(self._file.metadata() or {})
            self._slice = self._file.get_slice("latents")
            self.shape = tuple(self._slice.get_shape())
            dtype = self._slice.get_dtype()
        except (SafetensorError, OSError, ValueError, RuntimeError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise M2LError(f"{self.path}: not a readable latent shard ({reason})") from None
        self.layout = self._check_header(dtype)
        self.units = self.shape[0]
        if expected is not None:
            self.check_entry(expected)

    def _check_header(self, dtype: str) -> Layout:
        meta, path = self.metadata, self.path
        if meta.get("format") != SHARD_FORMAT:
            raise M2LError(f"{path}: not an {SHARD_FORMAT} file (format={meta.get('format')!r})")
        version = meta_int(path, meta, "version", 1, 10**9)
        if version > SHARD_VERSION:
            raise M2LError(f"{path}: format version {version} is newer than this m2l supports; upgrade m2l")
        if meta.get("sha256") != metadata_digest(meta):
            raise M2LError(f"{path}: metadata does not match its checksum (corrupt or modified)")
        layout = LAYOUTS.get(meta_text(path, meta, "kind"))
        if layout is None or len(self.shape) != layout.row_rank or dtype != "F32":
            raise M2LError(f"{path}: latents {self.shape} {dtype} do not match kind {meta.get('kind')!r}")
        return layout

    def check_entry(self, entry: Entry) -> None:
        """Refuse an index entry that was not written with this shard (or is of another model)."""
        if self.metadata["sha256"] != entry.shard_sha256:
            raise M2LError(
                f"{self.path}: is not the shard the index was written with (its checksum differs); "
                "pack the dataset again"
            )
        meta = self.metadata
        if (meta.get("kind"), meta.get("model_id"), meta.get("config_hash")) != entry.model()[:3]:
            raise M2LError(f"{self.path}: holds latents of another model than the index says")

    def read(self, start: int, stop: int) -> torch.Tensor:
        """Units [start, stop) along the time axis (only those bytes are read).

        Returns:
            float32 in the codec's layout of one row: v1 [64, stop - start], v2
            [stop - start, K, 64].

        Raises:
            M2LError: the range is outside the shard.
        """
        if not 0 <= start < stop <= self.units:
            raise M2LError(f"{self.path}: units {start}..{stop} are outside its {self.units} units")
        view = self.layout.from_time_first(self._slice[start:stop])  # of the mapped file
        return view.clone(memory_format=torch.contiguous_format)

    def verify(self, piece_bytes: int = VERIFY_PIECE_BYTES) -> None:
        """Check the tensor's digest, reading the shard once in pieces of about `piece_bytes`.

        The digest is `m2l.checksummed.tensors_digest` of the whole tensor, computed piece by piece.

        Raises:
            M2LError: the content does not match its checksum (a damaged or modified shard).
        """
        h = hashlib.sha256(f"latents|{torch.float32}|{self.shape}|".encode())
        step = max(1, piece_bytes // max(1, 4 * _product(self.shape[1:])))
        for start in range(0, self.shape[0], step):
            piece = self._slice[start : start + step].contiguous()
            h.update(memoryview(piece.numpy()).cast("B"))
        if h.hexdigest() != self.metadata.get("tensors_sha256"):
            raise M2LError(f"{self.path}: content does not match its checksum (corrupt or modified)")


def _product(shape: tuple[int, ...]) -> int:
    out = 1
    for n in shape:
        out *= n
    return out
