"""File formats: `.m2l` latent files and m2l checkpoints, both safetensors with JSON metadata.

Both carry a format name and version in the safetensors header, and a SHA-256 of their tensors so
truncation or tampering is detected on load. Writes go through `m2l.files.atomic_output`: atomic,
and exclusive (an existing file is an error) unless `force`.

This module also owns "what is this file": `sniff` reads a file's first bytes (and a safetensors
header) and tells latents, checkpoints, training states, the authors' torch checkpoint and audio
apart, without loading anything.

Latent file metadata: format="m2l-latents", version, model_id, config_hash, kind, sample_rate,
length (original samples), channels, latent_scale, left_pad (samples of padding before the audio),
extra (JSON), sha256. Tensor "latents", already divided by latent_scale: [channels, latent_dim,
frames] for v1 (kind "v1"); [rows, chunks, K, latent_dim] for v2 (kind "v2"; rows = channels for a
mono model, 1 for a stereo model, whose extra["audio_channels"] records the input's channels).

Checkpoint metadata: format="m2l-checkpoint", version, config (JSON of the model config), sha256.

Training state (written by `m2l.train.state`): format="m2l-train-state"; tensors `model.*`, `ema.*`,
`optim.*`, `rng.torch`; a run folder keeps them as checkpoints/step-NNNNNNNNN.safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from m2l.config import ModelConfig, config_from_dict, config_to_dict
from m2l.errors import M2LError
from m2l.files import atomic_output, open_regular, regular_file

LATENT_FORMAT, LATENT_VERSION = "m2l-latents", 1
CHECKPOINT_FORMAT, CHECKPOINT_VERSION = "m2l-checkpoint", 1
STATE_FORMAT, STATE_VERSION = "m2l-train-state", 1
STEP_FILE = re.compile(r"^step-(\d{9})\.safetensors$")
"""Name of a training run's step checkpoint (hidden temp files never match)."""
_HEADER_LIMIT = 100 << 20  # the largest safetensors header we parse


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of `tensors` (order independent)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path, force: bool) -> None:
    """Write a safetensors file through `m2l.files.atomic_output` (exclusive unless `force`).

    Raises:
        M2LError: `path` exists and not `force`, or it cannot be written (disk full...).
    """
    with atomic_output(path, force=force) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


class Kind(Enum):
    """What a file is, as far as its first bytes (and its safetensors header) tell."""

    LATENTS = "latents"
    """An m2l latent file (`.m2l`, safetensors format "m2l-latents")."""
    CHECKPOINT = "checkpoint"
    """An m2l inference checkpoint (safetensors format "m2l-checkpoint")."""
    TRAINING_STATE = "training-state"
    """An m2l training checkpoint (safetensors format "m2l-train-state")."""
    AUTHORS_CHECKPOINT = "authors-checkpoint"
    """A torch.save archive such as the authors' `music2latent.pt`: it holds a pickle, so it may
    only be opened with `torch.load(..., weights_only=True)`."""
    SAFETENSORS = "safetensors"
    """Any other safetensors file, or one whose header is damaged (then `metadata` is None)."""
    AUDIO = "audio"
    """An audio file (WAV, FLAC, Ogg, MP3, AIFF, CAF signatures)."""
    UNKNOWN = "unknown"
    """Anything else."""


_FORMAT_KINDS = {
    LATENT_FORMAT: Kind.LATENTS,
    CHECKPOINT_FORMAT: Kind.CHECKPOINT,
    STATE_FORMAT: Kind.TRAINING_STATE,
}
_DESCRIPTIONS = {
    Kind.LATENTS: "an m2l latent file",
    Kind.CHECKPOINT: "an m2l checkpoint",
    Kind.TRAINING_STATE: "an m2l training checkpoint",
    Kind.AUTHORS_CHECKPOINT: "a torch checkpoint",
    Kind.AUDIO: "an audio file",
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


def read_safetensors(path: Path, expected_format: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read tensors + metadata, checking the format name and the content digest."""
    path = Path(path)
    regular_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise M2LError(f"{path}: not a readable safetensors file ({reason})") from None
    if meta.get("format") != expected_format:
        raise M2LError(f"{path}: not an {expected_format} file (format={meta.get('format')!r})")
    if meta.get("sha256") != tensors_digest(tensors):
        raise M2LError(f"{path}: content does not match its checksum (corrupt or modified)")
    return tensors, meta


def _check_version(path: Path, meta: dict, supported: int) -> int:
    try:
        version = int(meta.get("version", ""))
    except ValueError:
        raise M2LError(f"{path}: missing or malformed format version") from None
    if version > supported:
        raise M2LError(
            f"{path}: format version {version} is newer than this m2l supports ({supported}); upgrade m2l"
        )
    return version


@dataclass(frozen=True)
class LatentFile:
    """Latents of one audio file plus what is needed to decode them faithfully."""

    latents: torch.Tensor  # v1: [channels, latent_dim, frames]; v2: [rows, chunks, K, latent_dim]
    sample_rate: int
    length: int
    model_id: str
    config_hash: str
    latent_scale: float
    left_pad: int
    kind: str = "v1"
    extra: dict[str, Any] = field(default_factory=dict)
    model_source: str = ""  # what `m2l.load` takes to get the model back ("" in older files)

    @property
    def channels(self) -> int:
        return int(self.latents.shape[0])

    def save(self, path: str | os.PathLike, *, force: bool = False) -> None:
        """Write this as a `.m2l` file (atomically; an existing file needs `force`)."""
        save_latents(path, self, force=force)


def save_latents(path: str | os.PathLike, lf: LatentFile, *, force: bool = False) -> None:
    """Write a `.m2l` latent file atomically."""
    tensors = {"latents": lf.latents.float()}
    meta = {
        "format": LATENT_FORMAT,
        "version": str(LATENT_VERSION),
        "model_id": lf.model_id,
        "model_source": lf.model_source,
        "config_hash": lf.config_hash,
        "kind": lf.kind,
        "sample_rate": str(lf.sample_rate),
        "length": str(lf.length),
        "channels": str(lf.channels),
        "latent_scale": repr(lf.latent_scale),
        "left_pad": str(lf.left_pad),
        "extra": json.dumps(lf.extra),
        "sha256": tensors_digest(tensors),
    }
    atomic_save(tensors, meta, Path(path), force)


def load_latents(path: str | os.PathLike) -> LatentFile:
    """Read and verify a `.m2l` latent file."""
    path = Path(path)
    tensors, meta = read_safetensors(path, LATENT_FORMAT)
    _check_version(path, meta, LATENT_VERSION)
    try:
        latents = tensors["latents"]
        lf = LatentFile(
            latents=latents,
            sample_rate=int(meta["sample_rate"]),
            length=int(meta["length"]),
            model_id=meta["model_id"],
            config_hash=meta["config_hash"],
            latent_scale=float(meta["latent_scale"]),
            left_pad=int(meta["left_pad"]),
            kind=meta.get("kind", "v1"),
            extra=json.loads(meta.get("extra", "{}")),
            model_source=meta.get("model_source", ""),
        )
    except (KeyError, ValueError) as err:
        raise M2LError(f"{path}: malformed latent file metadata ({err})") from None
    dims = {"v1": 3, "v2": 4}.get(lf.kind)
    if latents.dim() != dims or int(meta.get("channels", -1)) != latents.shape[0]:
        raise M2LError(f"{path}: latents have shape {tuple(latents.shape)}, inconsistent with its metadata")
    if lf.length < 1 or lf.sample_rate < 1 or lf.left_pad < 0:
        raise M2LError(f"{path}: malformed latent file metadata (length/sample_rate/left_pad)")
    return lf


def save_checkpoint(
    path: str | os.PathLike,
    state: dict[str, torch.Tensor],
    config: ModelConfig,
    *,
    force: bool = False,
    extra: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
) -> None:
    """Write model weights + config as an m2l checkpoint (safetensors), atomically; floating
    tensors are stored as `dtype` (float16 halves the file; loading casts back to float32)."""
    tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    meta = {
        "format": CHECKPOINT_FORMAT,
        "version": str(CHECKPOINT_VERSION),
        "config": json.dumps(config_to_dict(config)),
        "extra": json.dumps(extra or {}),
        "sha256": tensors_digest(tensors),
    }
    atomic_save(tensors, meta, Path(path), force)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelConfig, dict]:
    """Read and verify an m2l checkpoint -> (state dict, config, metadata)."""
    path = Path(path)
    tensors, meta = read_safetensors(path, CHECKPOINT_FORMAT)
    _check_version(path, meta, CHECKPOINT_VERSION)
    try:
        config = config_from_dict(json.loads(meta["config"]))
    except (KeyError, json.JSONDecodeError, M2LError) as err:
        raise M2LError(f"{path}: malformed model config in checkpoint ({err})") from None
    return tensors, config, meta


def step_path(ckpt_dir: Path, step: int) -> Path:
    """Where a training run keeps its checkpoint of `step`."""
    return Path(ckpt_dir) / f"step-{step:09d}.safetensors"


def list_checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    """(step, path) of the step checkpoints in a folder, oldest first (temp files ignored)."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in ckpt_dir.iterdir() if (m := STEP_FILE.match(p.name))]
    return sorted(found)


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose name starts with `prefix`, under their name without it."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def read_training_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read and verify a training checkpoint (format, checksum, version) -> (tensors, metadata).

    `m2l.train.state.read_state` parses the rest; inference needs only `training_state_weights`.
    """
    path = Path(path)
    tensors, meta = read_safetensors(path, STATE_FORMAT)
    _check_version(path, meta, STATE_VERSION)
    return tensors, meta


def training_state_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """The EMA weights and the model config of a training checkpoint (what inference runs)."""
    tensors, meta = read_training_state(path)
    try:
        config = config_from_dict(json.loads(meta["model_config"]))
    except (KeyError, ValueError, TypeError) as err:
        raise M2LError(f"{path}: malformed training checkpoint metadata ({err})") from None
    return strip_prefix(tensors, "ema."), config
