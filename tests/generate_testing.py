"""Helpers for the generator tests: small generators whose zero-initialised layers are filled with
small random weights (so that outputs depend on every input), and a synthetic latent corpus."""

from __future__ import annotations

import math

import torch

from m2l.generate.model import Generator, generator_preset


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
