"""The latent generator's file: one checksummed safetensors file (format "m2l-generator").

Tensors: the generator's weights (float32, or float16 for shipping; loading casts to float32).
Metadata (each field checked on load, the whole sealed by `m2l.checksummed.seal`): format,
version, config (JSON of `GeneratorConfig`; a file without `objective` is a flow generator),
labels (JSON list of the class names, index = label; empty for an unconditional generator),
stats (the `m2l stats` JSON the latents are normalised with), codec_id and codec_source (the
model id and the `m2l.load` source recorded in the latents it learned from, so that its latents
are decoded by the right codec), extra (JSON object).

`generator_path` resolves what `--model` names: a file, a run folder (its `generator.safetensors`)
or `default`, the shipped generator in `m2l/weights/`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from m2l.checksummed import atomic_save, meta_json, meta_text, read_safetensors, seal
from m2l.config import DEFAULT_MODEL, GENERATE_STEPS
from m2l.errors import M2LError
from m2l.generate.model import Generator, GeneratorConfig, generator_config_from_dict
from m2l.generate.normalize import check_stats, from_generator, to_generator
from m2l.generate.sampling import sample_long
from m2l.latents.stats import LatentStats
from m2l.sniff import GENERATOR_FORMAT

GENERATOR_VERSION = 1
RUN_GENERATOR_NAME = "generator.safetensors"
"""The inference file a generator's training run exports at each checkpoint."""
SHIPPED_GENERATOR = Path(__file__).parent.parent / "weights" / "m2l-gen-default.safetensors"
NO_SHIPPED = "no shipped generator yet: train one with m2l gen train and pass --model"


@dataclass(frozen=True)
class GeneratorFile:
    """A loaded generator and what it needs to make audio.

    Attributes:
        model: the network (float32, eval mode, on the CPU unless moved).
        labels: class names; label i is `labels[i]` (empty: unconditional).
        stats: the statistics its latents are normalised with.
        codec_id: the model id of the codec whose latents it learned.
        codec_source: what `m2l.load` takes to get that codec back.
        path: the file it was read from.
        extra: the file's free JSON fields (e.g. the training step).
    """

    model: Generator
    labels: tuple[str, ...]
    stats: LatentStats
    codec_id: str
    codec_source: str
    path: Path
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def cfg(self) -> GeneratorConfig:
        return self.model.cfg

    def sample(
        self,
        frames: int,
        *,
        seed: int = 0,
        steps: int = GENERATE_STEPS,
        batch: int = 1,
        prompt: torch.Tensor | None = None,
        style: str | None = None,
        guidance: float = 1.0,
    ) -> torch.Tensor:
        """Latents in the codec's scale, ready for `codec.decode` (on the generator's device).

        Args:
            frames: the length in latent frames (`codec.num_units(samples)`), prompt included.
            seed: seeds the sampler (the same seed, the same latents).
            steps: sampler steps per window.
            batch: clips to make (without a prompt).
            prompt: [B, D, P] or [D, P] codec latents to continue (kept as the first P frames).
            style: a class name of `labels` (None: unconditional).
            guidance: the classifier-free guidance scale (with a style).

        Returns:
            [B, D, frames] latents.
        """
        given = None if prompt is None else to_generator(prompt.float(), self.stats, self.cfg)
        z = sample_long(
            self.model,
            frames,
            steps,
            seed,
            batch=batch,
            prompt=given,
            label=self.label_of(style),
            guidance=guidance,
        )  # [B, D, frames] normalised
        return from_generator(z, self.stats, self.cfg)

    def label_of(self, name: str | None) -> int | None:
        """The label of the class `name` (None: no class).

        Raises:
            M2LError: an unknown name (naming the known ones).
        """
        if name is None:
            return None
        if name not in self.labels:
            known = ", ".join(self.labels) if self.labels else "none: the generator is unconditional"
            raise M2LError(f"{self.path}: unknown style {name!r} (known: {known})")
        return self.labels.index(name)


def save_generator(
    path: str | os.PathLike,
    model: Generator | dict[str, torch.Tensor],
    cfg: GeneratorConfig,
    *,
    labels: tuple[str, ...],
    stats: LatentStats,
    codec_id: str,
    codec_source: str,
    half: bool = False,
    force: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a generator file atomically (exclusive unless `force`); returns its path.

    Args:
        path: where.
        model: the generator, or its state dict (e.g. EMA weights).
        cfg: its config.
        labels: class names, `cfg.num_classes` of them (or none when it is 0).
        stats: the normalisation statistics (checked against `cfg`).
        codec_id, codec_source: the codec of the latents (see `GeneratorFile`).
        half: store floating tensors as float16 (half the size; for shipping).
        force: replace an existing file.
        extra: more JSON fields (e.g. the training step).
    """
    state = model.state_dict() if isinstance(model, Generator) else model
    _check_fields(Path(path), cfg, labels, stats)
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to(dtype) if v.is_floating_point() else v.detach() for k, v in state.items()}
    meta = {
        "format": GENERATOR_FORMAT,
        "version": str(GENERATOR_VERSION),
        "config": json.dumps(dataclasses.asdict(cfg)),
        "labels": json.dumps(list(labels)),
        "stats": json.dumps(json.loads(stats.to_json())),
        "codec_id": codec_id,
        "codec_source": codec_source,
        "extra": json.dumps(extra or {}),
    }
    atomic_save(tensors, seal(tensors, meta), Path(path), force)
    return Path(path)


def load_generator(source: str | os.PathLike = DEFAULT_MODEL, device: str | None = None) -> GeneratorFile:
    """Read and check a generator file (or a run folder's, or the shipped one: `generator_path`).

    Raises:
        M2LError: one line naming the file: missing, another format, a failed checksum, a
            malformed field, weights that do not fit the config.
    """
    path = generator_path(source)
    tensors, meta = read_safetensors(path, GENERATOR_FORMAT, GENERATOR_VERSION)
    cfg = generator_config_from_dict(meta_json(path, meta, "config", dict), str(path))
    labels = tuple(meta_json(path, meta, "labels", list))
    stats = LatentStats.from_dict(meta_json(path, meta, "stats", dict), f"{path} (stats)")
    _check_fields(path, cfg, labels, stats)
    extra = meta_json(path, meta, "extra", dict, "{}")
    model = Generator(cfg)
    _check_state(path, tensors, model.state_dict())
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    codec_id, codec_source = meta_text(path, meta, "codec_id"), meta_text(path, meta, "codec_source")
    return GeneratorFile(model, labels, stats, codec_id, codec_source, path, extra)


def export_generator(
    source: str | os.PathLike, out: str | os.PathLike, *, half: bool = False, force: bool = False
) -> GeneratorFile:
    """Copy the generator of `source` (a run folder, a generator file) to `out`, as float16 with
    `half` (how the shipped generator is made); returns what `out` holds, read back.

    Raises:
        M2LError: as `load_generator` for `source`; `out` exists and `force` is not set.
    """
    gen = load_generator(source)
    save_generator(
        out,
        gen.model,
        gen.cfg,
        labels=gen.labels,
        stats=gen.stats,
        codec_id=gen.codec_id,
        codec_source=gen.codec_source,
        half=half,
        force=force,
        extra={**gen.extra, "exported_from": str(gen.path)},
    )
    return load_generator(out)


def generator_path(source: str | os.PathLike) -> Path:
    """The file `source` names: `default` (the shipped generator), a run folder (its
    `generator.safetensors`) or a file.

    Raises:
        M2LError: no shipped generator, or a run folder without an exported generator.
    """
    if str(source) == DEFAULT_MODEL:
        if not SHIPPED_GENERATOR.exists():
            raise M2LError(NO_SHIPPED)
        return SHIPPED_GENERATOR
    path = Path(source)
    if path.is_dir():
        if not (path / RUN_GENERATOR_NAME).exists():
            raise M2LError(
                f"{path}: no {RUN_GENERATOR_NAME} in this folder (it is written at each checkpoint)"
            )
        return path / RUN_GENERATOR_NAME
    return path


def _check_fields(path: Path, cfg: GeneratorConfig, labels: tuple[str, ...], stats: LatentStats) -> None:
    if not all(isinstance(x, str) and x and len(x) <= 200 and x.isprintable() for x in labels):
        raise M2LError(f"{path}: malformed field 'labels' (class names must be printable text)")
    if len(labels) != cfg.num_classes or len(set(labels)) != len(labels):
        raise M2LError(f"{path}: {len(labels)} distinct labels for a generator of {cfg.num_classes} classes")
    try:
        check_stats(stats, cfg)
    except M2LError as err:
        raise M2LError(f"{path}: {err}") from None


def _check_state(path: Path, tensors: dict[str, torch.Tensor], ours: dict[str, torch.Tensor]) -> None:
    differ = set(tensors) ^ set(ours)
    if differ:
        raise M2LError(
            f"{path}: weights do not fit the config ({len(differ)} names differ, e.g. {min(differ)})"
        )
    for name, value in tensors.items():
        if value.shape != ours[name].shape or not value.is_floating_point():
            raise M2LError(
                f"{path}: weight {name} is {value.dtype} {tuple(value.shape)}, "
                f"expected {tuple(ours[name].shape)}"
            )
