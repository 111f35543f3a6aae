"""File formats: `.m2l` latent files and m2l checkpoints, both safetensors with JSON metadata.

Both carry a format name and version in the safetensors header and two SHA-256 digests:
`tensors_sha256` over the tensors and `sha256` over every other metadata field (the first one
included), so truncation or tampering anywhere, header or data, is detected on load. Version 1
files (before metadata was covered) hold only `sha256` over the tensors: they are still read,
with one `LegacyChecksumWarning` per file. Metadata values are parsed strictly (`m2l.metadata`).
Writes go through `m2l.files.atomic_output`: atomic, and exclusive (an existing file is an error)
unless `force`.

This module also owns "what is this file": `sniff` reads a file's first bytes (and a safetensors
header) and tells latents, checkpoints, training states, the authors' torch checkpoint and audio
apart, without loading anything.

Latent file metadata: format="m2l-latents", version, model_id, config_hash, kind, sample_rate,
length (original samples), channels, latent_scale, left_pad (samples of padding before the audio),
extra (JSON), tensors_sha256, sha256. Tensor "latents", already divided by latent_scale:
[channels, latent_dim, frames] for v1 (kind "v1"); [rows, chunks, K, latent_dim] for v2 (kind
"v2"; rows = channels for a mono model, 1 for a stereo model, whose extra["audio_channels"]
records the input's channels). extra["source_sample_rate"] is the rate of the audio the latents
were made from (written since m2l records it; optional when reading).

Checkpoint metadata: format="m2l-checkpoint", version, config (JSON of the model config), extra
(JSON), tensors_sha256, sha256.

Training state (written by `m2l.train.state`): format="m2l-train-state"; tensors `model.*`, `ema.*`,
`optim.*`, `rng.torch`; a run folder keeps them as checkpoints/step-NNNNNNNNN.safetensors.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import warnings
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from m2l.config import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, ModelConfig, config_from_dict, config_to_dict
from m2l.errors import M2LError
from m2l.files import atomic_output, open_regular, regular_file
from m2l.metadata import malformed, meta_float, meta_int, meta_json, meta_text

LATENT_FORMAT, LATENT_VERSION = "m2l-latents", 2
CHECKPOINT_FORMAT, CHECKPOINT_VERSION = "m2l-checkpoint", 2
STATE_FORMAT, STATE_VERSION = "m2l-train-state", 2
TENSORS_ONLY_VERSION = 1
"""The last version of the three formats above whose checksum covers the tensors only."""
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


def metadata_digest(meta: dict[str, str]) -> str:
    """SHA-256 over the names and values of every metadata field except `sha256` itself."""
    fields = {k: v for k, v in meta.items() if k != "sha256"}
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(b"m2l-metadata\n" + blob.encode()).hexdigest()


def seal(tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> dict[str, str]:
    """`meta` with `tensors_sha256` (the digest of `tensors`) and `sha256` (the digest of all the
    other fields, that one included) added: what a file's metadata is written as."""
    sealed = {**meta, "tensors_sha256": tensors_digest(tensors)}
    sealed["sha256"] = metadata_digest(sealed)
    return sealed


class LegacyChecksumWarning(UserWarning):
    """A file was read whose checksum covers its tensors but not its metadata (version 1)."""


_WARNED: set[str] = set()  # the files a LegacyChecksumWarning was given for


def _warn_tensors_only(path: Path, version: int) -> None:
    """Warn once per file that its metadata is not covered by its checksum."""
    key = os.path.realpath(path)
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(
        f"{path}: format version {version} file: its checksum covers the tensors but not the "
        "metadata (written by an older m2l; rewrite it to protect both)",
        LegacyChecksumWarning,
        stacklevel=4,
    )


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
    NUMPY = "numpy"
    """A NumPy array file (`.npy`), e.g. latents saved from the authors' package."""
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


def read_safetensors(
    path: Path, expected_format: str, version: int, *, tensors_only: int = 0
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read tensors + metadata, checking the format name, the version and both digests.

    Args:
        path: the file.
        expected_format: its `format` field must be this.
        version: the newest version of the format this m2l reads.
        tensors_only: the last version whose `sha256` covers the tensors only (0: none); such a
            file is read with one `LegacyChecksumWarning` per file.

    Returns:
        (tensors, metadata); the metadata always has `tensors_sha256`, the verified digest of
        the tensors (the weights' identity), whatever the version.

    Raises:
        M2LError: unreadable, another format, a newer or malformed version, or a digest that
            does not match (corrupt or modified).
    """
    path = Path(path)
    regular_file(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise M2LError(f"{path}: {_not_safetensors(path, reason)}") from None
    if meta.get("format") != expected_format:
        raise M2LError(f"{path}: not an {expected_format} file (format={meta.get('format')!r})")
    found = _check_version(path, meta, version)
    digest = tensors_digest(tensors)
    if found <= tensors_only:
        if meta.get("sha256") != digest:
            raise M2LError(f"{path}: content does not match its checksum (corrupt or modified)")
        _warn_tensors_only(path, found)
    elif meta.get("sha256") != metadata_digest(meta):
        raise M2LError(f"{path}: metadata does not match its checksum (corrupt or modified)")
    elif meta.get("tensors_sha256") != digest:
        raise M2LError(f"{path}: content does not match its checksum (corrupt or modified)")
    meta["tensors_sha256"] = digest
    return tensors, meta


def _not_safetensors(path: Path, reason: str) -> str:
    """Why a file that safetensors cannot read is refused: what it is instead, when its first
    bytes tell (an audio file, a NumPy array, a torch checkpoint), else the reader's `reason`."""
    try:
        found = sniff(path)
    except M2LError:
        found = None
    if found is None or found.kind in (Kind.SAFETENSORS, Kind.UNKNOWN):
        return f"not a readable safetensors file ({reason})"
    if found.kind is Kind.NUMPY:
        api = "m2l.load(MODEL).decode(numpy.load(PATH))"
        return f"is {found.description}, not an m2l file; arrays decode with the API: {api}"
    return f"is {found.description}, not an m2l file"


def _check_version(path: Path, meta: dict, supported: int) -> int:
    version = meta_int(path, meta, "version", 0, 10**9)
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

    @property
    def source_sample_rate(self) -> int | None:
        """The rate of the audio these latents were made from (`extra["source_sample_rate"]`),
        None for a file made before m2l recorded it."""
        rate = self.extra.get("source_sample_rate")
        return None if rate is None else int(rate)

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
    }
    atomic_save(tensors, seal(tensors, meta), Path(path), force)


_LATENT_DIMS = {"v1": 3, "v2": 4}  # latent tensor rank of each kind
_MAX_LENGTH = 1 << 40  # samples (about 290 days at 44.1 kHz)
_MAX_PAD = 1 << 24  # samples of left padding


def load_latents(path: str | os.PathLike) -> LatentFile:
    """Read and verify a `.m2l` latent file.

    Raises:
        M2LError: unreadable, corrupt, or metadata that is missing, malformed or inconsistent
            with the latents (one line naming the file and the field).
    """
    path = Path(path)
    tensors, meta = read_safetensors(path, LATENT_FORMAT, LATENT_VERSION, tensors_only=TENSORS_ONLY_VERSION)
    latents = _checked_latents(path, tensors, meta)
    kind = meta_text(path, meta, "kind", "v1")
    extra = meta_json(path, meta, "extra", dict, "{}")
    if kind == "v2" and extra.get("audio_channels", 1) not in (1, 2):
        raise malformed(path, "extra", f"audio_channels={extra['audio_channels']!r} is not 1 or 2")
    rate = extra.get("source_sample_rate", MIN_SAMPLE_RATE)  # optional: older files lack it
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        bounds = f"{MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}"
        raise malformed(path, "extra", f"source_sample_rate={rate!r} is not an integer in {bounds}")
    return LatentFile(
        latents=latents,
        sample_rate=meta_int(path, meta, "sample_rate", MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
        length=meta_int(path, meta, "length", 1, _MAX_LENGTH),
        model_id=meta_text(path, meta, "model_id"),
        config_hash=meta_text(path, meta, "config_hash"),
        latent_scale=meta_float(path, meta, "latent_scale", 0.0, 1e6),
        left_pad=meta_int(path, meta, "left_pad", 0, _MAX_PAD),
        kind=kind,
        extra=extra,
        model_source=meta_text(path, meta, "model_source", ""),
    )


def _checked_latents(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, str]) -> torch.Tensor:
    """The `latents` tensor, checked against the file's kind and channel count."""
    latents = tensors.get("latents")
    if latents is None:
        raise M2LError(f"{path}: latent file holds no 'latents' tensor")
    kind = meta_text(path, meta, "kind", "v1")
    if kind not in _LATENT_DIMS:
        raise malformed(path, "kind", f"= {kind!r} is not one of {', '.join(_LATENT_DIMS)}")
    channels = meta_int(path, meta, "channels", 1, 1 << 16)
    if latents.dim() != _LATENT_DIMS[kind] or channels != latents.shape[0] or not latents.numel():
        raise M2LError(
            f"{path}: latents have shape {tuple(latents.shape)}, inconsistent with its metadata "
            f"(kind {kind}, {channels} channels{'' if latents.numel() else ', no frames'})"
        )
    if not latents.is_floating_point():
        raise M2LError(f"{path}: latents are {latents.dtype}, expected floating point")
    if not bool(torch.isfinite(latents).all()):
        raise M2LError(f"{path}: latents contain NaN or Inf")
    return latents


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
    }
    atomic_save(tensors, seal(tensors, meta), Path(path), force)


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelConfig, dict]:
    """Read and verify an m2l checkpoint -> (state dict, config, metadata).

    The metadata's `tensors_sha256` is the verified digest of the weights (see `read_safetensors`).

    Raises:
        M2LError: unreadable, corrupt, or a missing or malformed config or extra field.
    """
    path = Path(path)
    tensors, meta = read_safetensors(
        path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, tensors_only=TENSORS_ONLY_VERSION
    )
    meta_json(path, meta, "extra", dict, "{}")
    return tensors, model_config(path, meta, "config"), meta


def model_config(path: str | os.PathLike, meta: dict[str, str], key: str) -> ModelConfig:
    """The model config in the JSON metadata field `key` of the file at `path`, validated.

    Raises:
        M2LError: the field is missing, not a bounded JSON object, or not a valid model config.
    """
    data = meta_json(path, meta, key, dict)
    try:
        return config_from_dict(data)
    except M2LError as err:
        raise M2LError(f"{path}: malformed model config in {key} ({err})") from None


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
    return read_safetensors(path, STATE_FORMAT, STATE_VERSION, tensors_only=TENSORS_ONLY_VERSION)


def training_state_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], ModelConfig]:
    """The EMA weights and the model config of a training checkpoint (what inference runs)."""
    tensors, meta = read_training_state(path)
    return strip_prefix(tensors, "ema."), model_config(path, meta, "model_config")
