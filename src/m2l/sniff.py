"""What is this file: `sniff` tells m2l's formats (latent files, checkpoints, training states),
the authors' torch checkpoint, NumPy arrays and audio apart from a file's first bytes (and its
safetensors header), without loading anything.

The format names live here, the one place that maps them to kinds; their versions and fields are
`m2l.formats`'.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import BinaryIO

from m2l.errors import M2LError
from m2l.files import open_regular

LATENT_FORMAT = "m2l-latents"
"""The format name of a latent file."""
LATENT_SUFFIX = ".m2l"
"""The extension of latent files (what `m2l encode` names its outputs, and the files a folder of
latents is made of)."""
CHECKPOINT_FORMAT = "m2l-checkpoint"
"""The format name of an inference checkpoint."""
STATE_FORMAT = "m2l-train-state"
"""The format name of a training checkpoint."""
GENERATOR_FORMAT = "m2l-generator"
"""The format name of a latent generator (`m2l.generate.checkpoint`: weights, config, statistics,
labels and the codec it learned from)."""
GENERATOR_STATE_FORMAT = "m2l-generator-train-state"
"""The format name of a latent generator's training checkpoint (`m2l.generate.training`)."""
_HEADER_LIMIT = 100 << 20  # the largest safetensors header we parse


class Kind(Enum):
    """What a file is, as far as its first bytes (and its safetensors header) tell."""

    LATENTS = "latents"
    """An m2l latent file (`.m2l`, safetensors format "m2l-latents")."""
    CHECKPOINT = "checkpoint"
    """An m2l inference checkpoint (safetensors format "m2l-checkpoint")."""
    TRAINING_STATE = "training-state"
    """An m2l training checkpoint (safetensors format "m2l-train-state")."""
    GENERATOR = "generator"
    """An m2l latent generator (safetensors format "m2l-generator")."""
    GENERATOR_STATE = "generator-training-state"
    """A latent generator's training checkpoint (safetensors format "m2l-generator-train-state")."""
    AUTHORS_CHECKPOINT = "authors-checkpoint"
    """A torch.save archive such as the authors' `music2latent.pt`: it holds a pickle, so it may
    only be opened with `torch.load(..., weights_only=True)`."""
    SAFETENSORS = "safetensors"
    """Any other safetensors file, or one whose header is damaged (then `metadata` is None)."""
    AUDIO = "audio"
    """An audio file (WAV, FLAC, Ogg, MP3, AIFF, CAF signatures)."""
    NUMPY = "numpy"
    """A NumPy array file (`.npy`), e.g. latents saved from the authors' package."""
    UNKNOWN = "unknown"
    """Anything else."""


_FORMAT_KINDS = {
    LATENT_FORMAT: Kind.LATENTS,
    CHECKPOINT_FORMAT: Kind.CHECKPOINT,
    STATE_FORMAT: Kind.TRAINING_STATE,
    GENERATOR_FORMAT: Kind.GENERATOR,
    GENERATOR_STATE_FORMAT: Kind.GENERATOR_STATE,
}
_DESCRIPTIONS = {
    Kind.LATENTS: "an m2l latent file",
    Kind.CHECKPOINT: "an m2l checkpoint",
    Kind.TRAINING_STATE: "an m2l training checkpoint",
    Kind.GENERATOR: "an m2l latent generator",
    Kind.GENERATOR_STATE: "an m2l latent generator's training checkpoint",
    Kind.AUTHORS_CHECKPOINT: "a torch checkpoint",
    Kind.AUDIO: "an audio file",
    Kind.NUMPY: "a NumPy array (.npy)",
    Kind.UNKNOWN: "a file of unknown type (neither safetensors nor a torch checkpoint)",
}
_TORCH_RECORDS = frozenset({b"data.pkl", b".format_version", b"byteorder", b"version"})
_AUDIO_MAGIC = (b"fLaC", b"OggS", b"ID3", b"caff")
_AUDIO_CONTAINERS = {
    b"RIFF": (b"WAVE",),
    b"RF64": (b"WAVE",),
    b"BW64": (b"WAVE",),
    b"FORM": (b"AIFF", b"AIFC"),
}


@dataclass(frozen=True)
class FileKind:
    """The result of `sniff`: what the file at `path` is.

    Attributes:
        path: the file.
        kind: what it is.
        metadata: the safetensors `__metadata__` ({} when the header has none); None when the
            file is not safetensors or its header cannot be parsed.
    """

    path: Path
    kind: Kind
    metadata: dict[str, str] | None = None

    @property
    def format(self) -> str | None:
        """The `format` field of the safetensors metadata, if any."""
        return self.metadata.get("format") if self.metadata else None

    @property
    def description(self) -> str:
        """A phrase for messages: "an m2l latent file", "a safetensors file (format 'x')"..."""
        if self.kind is Kind.SAFETENSORS:
            if self.metadata is None:
                return "a damaged safetensors file (unreadable header)"
            return f"a safetensors file of another format (format={self.format!r})"
        return _DESCRIPTIONS[self.kind]


def sniff(path: str | os.PathLike) -> FileKind:
    """Tell what the file at `path` is from its first bytes, without loading it.

    Only a regular file is opened (a FIFO, socket or device is refused at once, never read),
    once, and only its head and safetensors header are read.

    Raises:
        M2LError: `path` is missing, not a regular file, or unreadable.
    """
    path = Path(path)
    fd = open_regular(path)
    try:
        with os.fdopen(fd, "rb") as f:
            head = f.read(64)
            if len(head) >= 9 and head[8:9] == b"{":  # u64 header length, then the JSON header
                meta = _safetensors_header(f, head, os.fstat(f.fileno()).st_size)
                kind = Kind.SAFETENSORS if meta is None else _FORMAT_KINDS.get(meta.get("format"))
                return FileKind(path, kind or Kind.SAFETENSORS, meta)
    except OSError as err:
        raise M2LError(f"{path}: cannot read ({err.strerror or err})") from None
    if _is_torch_archive(head):
        return FileKind(path, Kind.AUTHORS_CHECKPOINT)
    if head.startswith(b"\x93NUMPY"):
        return FileKind(path, Kind.NUMPY)
    return FileKind(path, Kind.AUDIO if _is_audio(head) else Kind.UNKNOWN)


def _safetensors_header(f: BinaryIO, head: bytes, size: int) -> dict[str, str] | None:
    """The `__metadata__` of the safetensors header whose first bytes are `head`, or None."""
    (n,) = struct.unpack("<Q", head[:8])
    if n < 2 or n > min(size - 8, _HEADER_LIMIT):
        return None
    raw = head[8 : 8 + n] + f.read(max(0, n - (len(head) - 8)))
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(header, dict):
        return None
    meta = header.get("__metadata__")
    return {str(k): v for k, v in meta.items() if isinstance(v, str)} if isinstance(meta, dict) else {}


def _is_torch_archive(head: bytes) -> bool:
    """A zip archive whose first member is a torch.save record ("<name>/data.pkl", ...)."""
    if len(head) < 30 or not head.startswith(b"PK\x03\x04"):
        return False
    (name_len,) = struct.unpack("<H", head[26:28])
    name = head[30 : 30 + name_len]
    return b"/" in name and name.rsplit(b"/", 1)[1] in _TORCH_RECORDS


def _is_audio(head: bytes) -> bool:
    if head.startswith(_AUDIO_MAGIC):
        return True
    if head[8:12] in _AUDIO_CONTAINERS.get(head[:4], ()):
        return True
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0  # MPEG audio frame sync


def safetensors_metadata(path: Path) -> dict[str, str] | None:
    """The `__metadata__` of a safetensors file, or None if `path` is not a readable one."""
    try:
        return sniff(path).metadata
    except M2LError:
        return None
