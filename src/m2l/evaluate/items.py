"""The fixed, deterministic set of audio items that `m2l eval` scores.

A data source is either a folder of audio (walked recursively; hidden files and folders skipped;
the extensions of `m2l.audio.io.AUDIO_EXTENSIONS`) or a `manifest.jsonl` as written by
`m2l data fetch`: one JSON object per line with at least "path", found as
`m2l.datasets.manifest_files` says (the manifest's own folder, then the DATA root of the fetched
layouts); a listed file that is missing is an error.

Selection: files are ordered by their path (relative to the folder, or as written in the manifest)
and the first `limit` are taken. With `seconds`, each item is one crop of that many seconds from
the middle of the file (offset = (length - crop) // 2 samples at the model rate, so silent intros
and fades are avoided); a file shorter than the crop is used whole. The same arguments always give
the same items.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from m2l.audio.io import AUDIO_EXTENSIONS, load_audio
from m2l.datasets import MANIFEST_SUFFIX, ManifestFile, manifest_files
from m2l.errors import M2LError
from m2l.files import walk_files, warn_skipped


@dataclass(frozen=True)
class ItemSource:
    """One file to evaluate: `name` is its stable display name, `path` where it is read from."""

    name: str
    path: Path


@dataclass(frozen=True)
class Item:
    """One loaded item: `wave` [channels, samples] at `sample_rate`, cut at `start` samples."""

    index: int
    name: str
    path: Path
    start: int
    sample_rate: int
    wave: torch.Tensor

    @property
    def slug(self) -> str:
        """File-name stem of everything written for this item."""
        return f"item{self.index:03d}"


def _walk_audio(root: Path) -> list[ItemSource]:
    """Audio files under `root`, named by their POSIX path relative to it (`m2l.files.walk_files`:
    what is not a regular file is left out with a warning)."""
    paths = walk_files(root, frozenset(AUDIO_EXTENSIONS), on_skip=warn_skipped)
    return [ItemSource(path.relative_to(root).as_posix(), path) for path in paths]


def _existing(entry: ManifestFile) -> ItemSource:
    """The file a manifest row names, which must exist."""
    path = entry.path
    if not path.is_file():
        looked = ", ".join(str(c.parent) for c in entry.candidates)
        raise M2LError(f"{entry.where}: {entry.written}: audio file not found (looked in {looked})")
    return ItemSource(entry.written, path)


def read_manifest(manifest: Path) -> list[ItemSource]:
    """The files listed in a `manifest.jsonl` (see the module notes for path resolution).

    Rows are read by `m2l.datasets.manifest_files`; only "path" is required here.

    Raises:
        M2LError: naming the manifest (and line) when it cannot be read, a line is not a JSON
            object with a "path", a listed file is missing, or it lists nothing.
    """
    sources = [_existing(entry) for entry in manifest_files(manifest)]
    if not sources:
        raise M2LError(f"{manifest}: manifest lists no audio files")
    return sources


def find_items(data: Path, limit: int | None = None) -> list[ItemSource]:
    """The first `limit` files (all if None) of a folder or manifest, in sorted order of name.

    Raises:
        M2LError: naming `data` when it is missing, is neither a folder nor a .jsonl manifest,
            holds no audio, or the manifest is malformed.
    """
    if not data.exists():
        raise M2LError(f"{data}: no such folder or manifest")
    if data.is_dir():
        sources = _walk_audio(data)
        if not sources:
            raise M2LError(
                f"{data}: no audio files found in this folder (looked for "
                f"{', '.join(sorted(AUDIO_EXTENSIONS))})"
            )
    elif data.suffix.lower() == MANIFEST_SUFFIX:
        sources = read_manifest(data)
    else:
        raise M2LError(f"{data}: expected a folder of audio or a manifest{MANIFEST_SUFFIX}")
    sources.sort(key=lambda s: s.name)
    return sources if limit is None else sources[:limit]


def crop_start(samples: int, crop: int | None) -> int:
    """Offset of the centred crop of `crop` samples (0 when None or when the audio is shorter)."""
    if crop is None or samples <= crop:
        return 0
    return (samples - crop) // 2


def load_items(sources: list[ItemSource], sample_rate: int, seconds: float | None) -> list[Item]:
    """Read every source at `sample_rate` and cut its centred crop of `seconds` (whole if None).

    Raises:
        M2LError: naming the file when it cannot be read (see `m2l.audio.io.load_audio`).
    """
    crop = None if seconds is None else max(1, round(seconds * sample_rate))
    items = []
    for index, source in enumerate(sources):
        wave, _ = load_audio(source.path, sample_rate)
        start = crop_start(wave.shape[-1], crop)
        end = wave.shape[-1] if crop is None else start + crop
        items.append(
            Item(index, source.name, source.path, start, sample_rate, wave[:, start:end].contiguous())
        )
    return items
