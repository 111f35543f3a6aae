"""File formats: `.m2l` latent files and m2l checkpoints, both safetensors with JSON metadata.

Both carry a format name and version in the safetensors header, and a SHA-256 of their tensors so
truncation or tampering is detected on load. Writes are atomic (temp file + rename) and refuse to
replace an existing file unless `force`.

Latent file metadata: format="m2l-latents", version, model_id, config_hash, kind, sample_rate,
length (original samples), channels, latent_scale, left_pad (samples of padding before the audio),
extra (JSON), sha256. Tensor "latents", already divided by latent_scale: [channels, latent_dim,
frames] for v1 (kind "v1"); [rows, chunks, K, latent_dim] for v2 (kind "v2"; rows = channels for a
mono model, 1 for a stereo model, whose extra["audio_channels"] records the input's channels).

Checkpoint metadata: format="m2l-checkpoint", version, config (JSON of the model config), sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from m2l.config import ModelConfig, config_from_dict, config_to_dict
from m2l.errors import M2LError

LATENT_FORMAT, LATENT_VERSION = "m2l-latents", 1
CHECKPOINT_FORMAT, CHECKPOINT_VERSION = "m2l-checkpoint", 1


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of `tensors` (order independent)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@contextmanager
def _replacing(path: Path, force: bool) -> Iterator[Path]:
    """A temp path in `path`'s folder, renamed onto `path` when the block succeeds, else removed."""
    if path.exists() and not force:
        raise M2LError(f"{path}: already exists (use --force / force=True to overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path, force: bool) -> None:
    """Write a safetensors file via a temp file in the same folder and an atomic rename."""
    with _replacing(Path(path), force) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata)


def atomic_write_text(path: Path, text: str, force: bool) -> None:
    """Write UTF-8 `text` via a synced temp file in the same folder and an atomic rename.

    Raises:
        M2LError: `path` exists and not `force`.
        OSError: the file cannot be written (no temporary file is left behind).
    """
    with _replacing(Path(path), force) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def safetensors_metadata(path: Path) -> dict[str, str] | None:
    """The `__metadata__` of a safetensors file, or None if `path` does not look like one."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return None
            (n,) = struct.unpack("<Q", head)
            if n < 2 or n > min(size - 8, 100 << 20):
                return None
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    meta = header.get("__metadata__") if isinstance(header, dict) else None
    return meta if isinstance(meta, dict) else {}


def read_safetensors(path: Path, expected_format: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Read tensors + metadata, checking the format name and the content digest."""
    path = Path(path)
    if not path.is_file():
        raise M2LError(f"{path}: no such file")
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

    @property
    def channels(self) -> int:
        return int(self.latents.shape[0])


def save_latents(path: str | os.PathLike, lf: LatentFile, *, force: bool = False) -> None:
    """Write a `.m2l` latent file atomically."""
    tensors = {"latents": lf.latents.float()}
    meta = {
        "format": LATENT_FORMAT,
        "version": str(LATENT_VERSION),
        "model_id": lf.model_id,
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
