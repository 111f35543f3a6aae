"""File formats: `.m2l` latent files and m2l checkpoints, both safetensors with JSON metadata.

Both carry a format name and version in the safetensors header and two SHA-256 digests:
`tensors_sha256` over the tensors and `sha256` over every other metadata field (the first one
included), so truncation or tampering anywhere, header or data, is detected on load. Version 1
files (before metadata was covered) hold only `sha256` over the tensors: they are still read,
with one `LegacyChecksumWarning` per file. Metadata values are parsed strictly
(`m2l.checksummed.meta_int` and its siblings). Writes go through `m2l.files.atomic_output`:
atomic, and exclusive (an existing file is an error) unless `force`.

The container (digests, sealing, verified reading and atomic writing) is `m2l.checksummed`'s, and
"what is this file" (`sniff`, the format names) is `m2l.sniff`'s; this module re-exports both, so
`from m2l.formats import sniff, seal, ...` keeps working.

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

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from m2l.checksummed import (
    LegacyChecksumWarning,
    atomic_save,
    malformed,
    meta_float,
    meta_int,
    meta_json,
    meta_text,
    metadata_digest,
    read_safetensors,
    seal,
    tensors_digest,
)
from m2l.config import (
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    ModelConfig,
    config_from_dict,
    config_to_dict,
    current_model_id,
    preset_name,
)
from m2l.errors import M2LError
from m2l.sniff import (
    CHECKPOINT_FORMAT,
    LATENT_FORMAT,
    STATE_FORMAT,
    FileKind,
    Kind,
    safetensors_metadata,
    sniff,
)

__all__ = [  # what this module always offered, the names of m2l.sniff and m2l.checksummed included
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "LATENT_FORMAT",
    "LATENT_VERSION",
    "STATE_FORMAT",
    "STATE_VERSION",
    "STEP_FILE",
    "TENSORS_ONLY_VERSION",
    "FileKind",
    "Kind",
    "LatentFile",
    "LegacyChecksumWarning",
    "atomic_save",
    "list_checkpoints",
    "load_checkpoint",
    "load_latents",
    "metadata_digest",
    "model_config",
    "read_safetensors",
    "read_training_state",
    "safetensors_metadata",
    "save_checkpoint",
    "save_latents",
    "seal",
    "sniff",
    "step_path",
    "strip_prefix",
    "tensors_digest",
    "training_state_weights",
]

LATENT_VERSION = 2
CHECKPOINT_VERSION = 2
STATE_VERSION = 2
TENSORS_ONLY_VERSION = 1
"""The last version of the three formats above whose checksum covers the tensors only."""
STEP_FILE = re.compile(r"^step-(\d{9})\.safetensors$")
"""Name of a training run's step checkpoint (hidden temp files never match)."""


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
        model_id=current_model_id(meta_text(path, meta, "model_id")),
        config_hash=meta_text(path, meta, "config_hash"),
        latent_scale=meta_float(path, meta, "latent_scale", 0.0, 1e6),
        left_pad=meta_int(path, meta, "left_pad", 0, _MAX_PAD),
        kind=kind,
        extra=extra,
        model_source=preset_name(meta_text(path, meta, "model_source", "")),
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
