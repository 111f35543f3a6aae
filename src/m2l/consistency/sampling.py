"""Samplers for consistency models: small functions taking explicit noise or generators."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from m2l.config import ConsistencyConfig
from m2l.consistency.schedule import karras_sigmas

DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def sample_one_step(denoise: DenoiseFn, noise: torch.Tensor, cfg: ConsistencyConfig) -> torch.Tensor:
    """x0 = f(sigma_max * z, sigma_max) for unit-variance noise z of shape [batch, ...]."""
    sigma = torch.full((noise.shape[0],), cfg.sigma_max, device=noise.device)
    return denoise(noise * cfg.sigma_max, sigma)


def sample_multistep(
    denoise: DenoiseFn,
    noise: torch.Tensor,
    cfg: ConsistencyConfig,
    sigmas: Sequence[float] | None = None,
    steps: int = 1,
    generator: torch.Generator | None = None,
    renoise: Callable[[int], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Multi-step consistency sampling.

    Starts from sigma_max * noise, predicts x0, re-noises to the next sigma with fresh noise
    scaled by sqrt(sigma_next^2 - sigma_min^2), and predicts again.

    Args:
        denoise: the consistency function f(x, sigma).
        noise: [batch, ...] unit-variance initial noise.
        cfg: noise parametrisation.
        sigmas: decreasing noise levels starting at sigma_max; Karras spacing of `steps` if None.
        steps: number of network evaluations when `sigmas` is None.
        generator: source of the re-noising noise (drawn on the generator's device).
        renoise: alternative source: renoise(i) returns unit noise for the step after step i.

    Returns:
        [batch, ...] sample.
    """
    levels = [float(s) for s in (karras_sigmas(steps, cfg) if sigmas is None else sigmas)]
    x = noise * levels[0]
    out = x
    for i, level in enumerate(levels):
        sigma = torch.full((noise.shape[0],), level, device=noise.device)
        out = denoise(x, sigma)
        if i + 1 < len(levels):
            if renoise is not None:
                fresh = renoise(i)
            else:
                gen_device = generator.device if generator is not None else noise.device
                fresh = torch.randn(noise.shape, generator=generator, device=gen_device)
            scale = max(levels[i + 1] ** 2 - cfg.sigma_min**2, 0.0) ** 0.5
            x = out + scale * fresh.to(device=noise.device, dtype=noise.dtype)
    return out
