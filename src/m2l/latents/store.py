"""`LatentStore`: a sharded latent dataset or a folder of `.m2l` files, read by slices.

Both kinds of input look the same from here: a list of `Entry` (one per source file, one model)
and `read(entry, row, start, stop)`, which reads only the units asked for through a
memory-mapped safetensors slice (`safe_open(...).get_slice`). A folder of `.m2l` files is
catalogued from the files' headers alone; its entries name each file as their `shard`, at offset
0, with the file's own layout ([channels, ...] with a row axis first).

Checks: every header is checked when its file is opened (format, version, metadata digest, the
index's record of a shard). With `verify` (the default), the tensors of each file are checked
against their checksum the first time the file is read, once per process: a shard is streamed in
pieces (`Shard.verify`), a `.m2l` file is loaded whole (`m2l.formats.load_latents`). Without it a
damaged byte inside the latents goes unnoticed; nothing else changes.

Open files are kept in a small per-process cache (`max_open`, least recently used first out), so
the store can be handed to `torch.utils.data.DataLoader` workers (forked or spawned: the open
files are not part of its pickled state).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from m2l.checksummed import malformed, meta_float, meta_int, meta_json, meta_text, metadata_digest
from m2l.config import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, current_model_id, preset_name
from m2l.errors import M2LError
from m2l.files import regular_file, walk_files, warn_skipped
from m2l.formats import LATENT_FORMAT, LATENT_VERSION, TENSORS_ONLY_VERSION, load_latents
from m2l.latents.index import INDEX_NAME, LAYOUTS, Entry, check_same_model, read_index
from m2l.latents.shards import Shard
from m2l.sniff import LATENT_SUFFIX


class LatentFileSlices:
    """A `.m2l` file opened for reading slices of its rows (header checked by `latent_entry`)."""

    def __init__(self, path: Path, entry: Entry):
        self.path, self.entry = path, entry
        self._slice = _open_slice(path)[1]

    def read(self, row: int, start: int, stop: int) -> torch.Tensor:
        """Units [start, stop) of row `row`, float32 (v1 [64, n], v2 [n, K, 64])."""
        index = self.entry.layout.time_index(start, stop, lead=(row,))
        return self._slice[index].to(torch.float32).clone(memory_format=torch.contiguous_format)

    def verify(self) -> None:
        """Load the whole file through `load_latents` (checksums, metadata) and match its shape."""
        lf = load_latents(self.path)
        if lf.latents.shape[0] != self.entry.channels or lf.latents.dim() != self.entry.layout.row_rank + 1:
            raise M2LError(f"{self.path}: changed while it was being read")


def _open_slice(path: Path) -> tuple[dict[str, str], Any]:
    """(metadata, the `latents` slice) of a safetensors file, or a one-line M2LError."""
    regular_file(path)
    try:
        handle = safe_open(str(path), framework="pt")
        return dict(handle.metadata() or {}), handle.get_slice("latents")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise M2LError(f"{path}: not a readable latent file ({reason})") from None


def latent_entry(root: Path, path: Path) -> Entry:
    """The entry of the `.m2l` file at `path` (named relative to `root`), from its header only.

    Raises:
        M2LError: not a latent file, a newer version, a header that fails its checksum, or
            metadata that is malformed or does not match the tensor's shape.
    """
    meta, latents = _open_slice(path)
    if meta.get("format") != LATENT_FORMAT:
        raise M2LError(f"{path}: not an {LATENT_FORMAT} file (format={meta.get('format')!r})")
    version = meta_int(path, meta, "version", 0, 10**9)
    if version > LATENT_VERSION:
        raise M2LError(f"{path}: format version {version} is newer than this m2l supports; upgrade m2l")
    if version > TENSORS_ONLY_VERSION and meta.get("sha256") != metadata_digest(meta):
        raise M2LError(f"{path}: metadata does not match its checksum (corrupt or modified)")
    kind = meta_text(path, meta, "kind", "v1")
    if kind not in LAYOUTS:
        raise malformed(path, "kind", f"= {kind!r} is not one of {', '.join(LAYOUTS)}")
    shape, layout = tuple(latents.get_shape()), LAYOUTS[kind]
    channels = meta_int(path, meta, "channels", 1, 1 << 16)
    if len(shape) != layout.row_rank + 1 or shape[0] != channels or 0 in shape:
        raise M2LError(f"{path}: latents have shape {shape}, inconsistent with its metadata ({kind})")
    name = path.relative_to(root).as_posix()
    return Entry(
        source=name,
        shard=name,
        offset=0,
        frames=shape[layout.time_axis],
        channels=channels,
        kind=kind,
        model_id=current_model_id(meta_text(path, meta, "model_id")),
        config_hash=meta_text(path, meta, "config_hash"),
        latent_scale=meta_float(path, meta, "latent_scale", 0.0, 1e6),
        sample_rate=meta_int(path, meta, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
        length=meta_int(path, meta, "length", 1, 1 << 40),
        left_pad=meta_int(path, meta, "left_pad", 0, 1 << 24),
        shard_sha256=meta.get("sha256", ""),
        model_source=preset_name(meta_text(path, meta, "model_source", "")),
        extra=meta_json(path, meta, "extra", dict, "{}"),
    )


def latent_files(folder: Path) -> list[Path]:
    """The `.m2l` files under `folder`, sorted (FIFOs, broken links... skipped with a warning).

    Raises:
        M2LError: `folder` is missing or not a folder, or holds no `.m2l` file.
    """
    if not folder.exists():
        raise M2LError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise M2LError(f"{folder}: is not a folder (expected a folder of {LATENT_SUFFIX} files)")
    files = walk_files(folder, frozenset({LATENT_SUFFIX}), on_skip=warn_skipped)
    if not files:
        raise M2LError(f"{folder}: no {LATENT_SUFFIX} files (and no {INDEX_NAME})")
    return files


def catalogue(folder: Path) -> list[Entry]:
    """The entries of every `.m2l` file under `folder`, checked to come from one model.

    Raises:
        M2LError: as `latent_files` and `latent_entry`, or files of two models (naming one).
    """
    entries = [latent_entry(folder, path) for path in latent_files(folder)]
    for entry in entries:
        check_same_model(entries[0], entry, str(folder / entry.source))
    return entries


class LatentStore:
    """A sharded latent dataset (a folder with `index.jsonl`) or a folder of `.m2l` files.

    Attributes:
        root: the folder.
        packed: True for a sharded dataset.
        entries: one per source file, in index (or sorted path) order; all of one model.
        layout: the latent layout of the rows (`m2l.latents.index.Layout`).
        verify: whether each file's tensors are checked on first use.
    """

    def __init__(self, path: str | os.PathLike, *, verify: bool = True, max_open: int = 64):
        """Catalogue `path` (its index, or the headers of its `.m2l` files).

        Raises:
            M2LError: missing, empty, malformed, or latents of more than one model.
        """
        self.root = Path(path)
        self.packed = (self.root / INDEX_NAME).exists()
        self.entries = read_index(self.root) if self.packed else catalogue(self.root)
        self.layout = LAYOUTS[self.entries[0].kind]
        self.verify, self.max_open = verify, max(1, int(max_open))
        self._verified: set[str] = set()
        self._handles: OrderedDict[str, Shard | LatentFileSlices] = OrderedDict()
        self._pid = os.getpid()

    @property
    def model(self) -> Entry:
        """The first entry (its model fields are every entry's)."""
        return self.entries[0]

    def read(self, entry: int, row: int, start: int, stop: int) -> torch.Tensor:
        """Units [start, stop) of row `row` of entry `entry`; nothing else is read.

        Returns:
            float32 in the codec's layout of one row: v1 [64, stop - start], v2
            [stop - start, K, 64].

        Raises:
            M2LError: out of range, or the file is damaged (see the module docstring).
        """
        e = self.entries[entry]
        if not (0 <= row < e.channels and 0 <= start < stop <= e.frames):
            raise M2LError(f"{e.source}: row {row} units {start}..{stop} are outside its {e.frames} units")
        handle = self._open(e)
        if isinstance(handle, Shard):
            handle.check_entry(e)
            return handle.read(e.row_start(row) + start, e.row_start(row) + stop)
        return handle.read(row, start, stop)

    def _open(self, entry: Entry) -> Shard | LatentFileSlices:
        if self._pid != os.getpid():  # a forked worker: its own files
            self._handles, self._pid = OrderedDict(), os.getpid()
        handle = self._handles.get(entry.shard)
        if handle is not None:
            self._handles.move_to_end(entry.shard)
            return handle
        path = self.root / entry.shard
        handle = Shard(path, expected=entry) if self.packed else LatentFileSlices(path, entry)
        if self.verify and entry.shard not in self._verified:
            handle.verify()
            self._verified.add(entry.shard)
        self._handles[entry.shard] = handle
        while len(self._handles) > self.max_open:
            self._handles.popitem(last=False)
        return handle

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = OrderedDict()
        return state
