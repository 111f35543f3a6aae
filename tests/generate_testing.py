"""Helpers for the generator tests: small generators whose zero-initialised layers are filled with
small random weights (so that outputs depend on every input), a synthetic latent corpus (in
memory, or as `.m2l` files of a micro codec saved as a checkpoint) and generator files."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from m2l_testing import MICRO, random_model

from m2l.config import config_hash
from m2l.formats import LatentFile, save_checkpoint
from m2l.generate.checkpoint import save_generator
from m2l.generate.model import Generator, generator_preset
from m2l.latents.stats import LatentStats


def tiny_generator(seed: int = 0, perturbed: bool = True, **changes: int) -> Generator:
    """A `gen-tiny` generator (with fields replaced by `changes`), seeded; `perturbed` replaces
    the zeros of adaLN-Zero and of the output layer with N(0, 0.05) weights."""
    torch.manual_seed(seed)
    model = Generator(generator_preset("gen-tiny", **changes))
    if perturbed:
        with torch.no_grad():
            for p in model.parameters():
                if not p.any():
                    p.normal_(0.0, 0.05)
    return model


def sinusoids(count: int, dims: int, frames: int, generator: torch.Generator) -> torch.Tensor:
    """[count, dims, frames] clips with zero mean and unit variance per dimension: dimension d is
    sqrt(2) sin(2 pi f / P_d + phase), with periods P_d from 6 to 12 frames and a random phase per
    clip and dimension (lag-1 autocorrelation about 0.7, where unit noise has about 0)."""
    period = torch.linspace(6.0, 12.0, dims)[None, :, None]  # [1, D, 1]
    phase = 2 * math.pi * torch.rand(count, dims, 1, generator=generator)  # [N, D, 1]
    return math.sqrt(2) * torch.sin(2 * math.pi * torch.arange(frames) / period + phase)  # [N, D, T]


def lag1_autocorrelation(x: torch.Tensor) -> float:
    """The lag-1 autocorrelation over frames of clips [N, D, T], averaged over clips and dims."""
    x = x - x.mean(-1, keepdim=True)
    covariance = (x[..., 1:] * x[..., :-1]).mean(-1)  # [N, D]
    return float((covariance / x.var(-1, correction=0).clamp_min(1e-8)).mean())


def codec_checkpoint(folder: Path) -> Path:
    """The micro v1 codec of `m2l_testing` (random weights) saved as an m2l checkpoint."""
    model = random_model(MICRO)
    path = folder / "codec.safetensors"
    save_checkpoint(path, model.state_dict(), model.cfg)
    return path


def sinusoid_corpus(folder: Path, codec: Path, files: int = 8, frames: int = 48, seed: int = 0) -> Path:
    """A folder of mono `.m2l` files of `sinusoids` latents (scaled and shifted per dimension, so
    that normalising matters) that record `codec` as their model."""
    from m2l.loading import load

    source = load(codec, device="cpu")
    clips = sinusoids(files, 64, frames, torch.Generator().manual_seed(seed))  # [N, 64, T]
    centre, spread = torch.linspace(-0.5, 0.5, 64)[:, None], torch.linspace(0.5, 1.5, 64)[:, None]
    for i, clip in enumerate(clips):
        LatentFile(
            latents=(centre + spread * clip)[None],  # [1, 64, T]
            sample_rate=source.sample_rate,
            length=frames * source.samples_per_unit,
            model_id=source.model_id,
            config_hash=config_hash(source.model.cfg),
            latent_scale=1.0,
            left_pad=source.default_left_pad,
            kind="v1",
            model_source=source.source,
        ).save(folder / f"clip{i}.m2l")
    return folder


def unit_stats(model_id: str = "m2l-v1-micro@test", config: str = "c0ffee") -> LatentStats:
    """Statistics that leave latents as they are (zero means, unit deviations)."""
    return LatentStats("v1", model_id, config, 100, (0.0,) * 64, (1.0,) * 64, 0.0, 1.0)


def generator_file(path: Path, codec: Path, seed: int = 0, labels: tuple[str, ...] = ()) -> Path:
    """A perturbed `gen-tiny` generator (with `labels` as classes) saved as a generator file that
    decodes with the codec checkpoint `codec`."""
    model = tiny_generator(seed, num_classes=len(labels))
    return save_generator(
        path,
        model,
        model.cfg,
        labels=labels,
        stats=unit_stats(),
        codec_id="m2l-v1-micro@test",
        codec_source=str(codec),
    )
