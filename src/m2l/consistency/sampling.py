"""Noise levels and samplers for consistency models: small functions taking explicit noise or
generators.

Levels: a continuous noise index in [0, 1] maps to sigma in [sigma_min, sigma_max] through Karras
et al.'s rho warp (`sigma_from_index`); a sampler of `steps` evaluations visits the Karras spacing
of it (`karras_sigmas`). Training draws its levels over the same warp (`m2l.consistency.schedule`).

Samplers, one signature family: `sampler(denoise, noise, cfg, sigmas=None, steps=1, generator=None,
noise_source=None, ...)`. `noise` is the unit-variance initial noise; the noise levels are
`sigmas` (decreasing, from sigma_max) or the Karras spacing of `steps`; between two levels the
estimate is moved back up with `renoise`, drawing fresh unit noise from `noise_source(i)` (the
noise for the level after level i) or else from `generator`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from m2l.config import ConsistencyConfig


def rho_warp(index: Any, sigma_min: float, sigma_max: float, rho: float) -> Any:
    """Noise index in [0, 1] (a float or a tensor) -> sigma in [sigma_min, sigma_max], evenly
    spaced in sigma^(1 / rho) (Karras et al. 2022): the warp of every noise schedule in m2l."""
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (lo + index * (hi - lo)) ** rho


def sigma_from_index(index: torch.Tensor, cfg: ConsistencyConfig) -> torch.Tensor:
    """Continuous noise index in [0, 1] -> sigma in [sigma_min, sigma_max] (rho-warped)."""
    return rho_warp(index, cfg.sigma_min, cfg.sigma_max, cfg.rho)


def index_from_sigma(sigma: torch.Tensor, cfg: ConsistencyConfig) -> torch.Tensor:
    """Inverse of `sigma_from_index`."""
    lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
    return (sigma ** (1 / cfg.rho) - lo) / (hi - lo)


def karras_sigmas(steps: int, cfg: ConsistencyConfig) -> torch.Tensor:
    """The `steps` noise levels of a multi-step sampler, from sigma_max down.

    Karras (rho) spacing of steps + 1 levels from sigma_max to sigma_min, the last one dropped
    (a step at sigma_min is the identity); [sigma_max] for one step.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return sigma_from_index(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64), cfg)[:-1]


DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""f(x, sigma) -> x0 estimate of the same shape as x."""
NoiseSource = Callable[[int], torch.Tensor]
"""i -> unit noise for the level after level i."""


def renoise_scale(sigma: float, sigma_min: float) -> float:
    """sqrt(sigma^2 - sigma_min^2) (0 at or below sigma_min): the noise that takes a clean
    estimate to level `sigma` under the boundary condition at sigma_min."""
    return math.sqrt(max(sigma**2 - sigma_min**2, 0.0))


def renoise(x0: torch.Tensor, noise: torch.Tensor, sigma: float, sigma_min: float) -> torch.Tensor:
    """x = x0 + sqrt(sigma^2 - sigma_min^2) * noise: an estimate moved back to noise level `sigma`.

    Args:
        x0: [batch, ...] clean estimate.
        noise: [batch, ...] unit-variance noise, same shape, device and dtype.
        sigma: target noise level.
        sigma_min: the consistency boundary level.

    Returns:
        [batch, ...] noisy input for the next network evaluation.
    """
    return x0 + renoise_scale(sigma, sigma_min) * noise


def noise_levels(
    cfg: ConsistencyConfig, sigmas: Sequence[float] | None = None, steps: int = 1
) -> list[float]:
    """The levels a sampler evaluates at: `sigmas`, or the Karras spacing of `steps`."""
    return [float(s) for s in (karras_sigmas(steps, cfg) if sigmas is None else sigmas)]


def fresh_noise(
    i: int, like: torch.Tensor, generator: torch.Generator | None, noise_source: NoiseSource | None
) -> torch.Tensor:
    """Unit noise for the level after level i, shaped, placed and typed like `like`."""
    if noise_source is not None:
        fresh = noise_source(i)
    else:
        gen_device = generator.device if generator is not None else like.device
        fresh = torch.randn(like.shape, generator=generator, device=gen_device)
    return fresh.to(device=like.device, dtype=like.dtype)


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
    noise_source: NoiseSource | None = None,
) -> torch.Tensor:
    """Multi-step consistency sampling.

    Starts from sigma_max * noise, predicts x0, re-noises to the next level (`renoise`) and
    predicts again.

    Args:
        denoise: the consistency function f(x [batch, ...], sigma [batch]).
        noise: [batch, ...] unit-variance initial noise.
        cfg: noise parametrisation.
        sigmas: decreasing noise levels starting at sigma_max; Karras spacing of `steps` if None.
        steps: number of network evaluations when `sigmas` is None.
        generator: source of the re-noising noise (drawn on the generator's device).
        noise_source: alternative source: noise_source(i) is unit noise for the level after i.

    Returns:
        [batch, ...] sample.
    """
    levels = noise_levels(cfg, sigmas, steps)
    x = noise * levels[0]
    out = x
    for i, level in enumerate(levels):
        sigma = torch.full((noise.shape[0],), level, device=noise.device)
        out = denoise(x, sigma)
        if i + 1 < len(levels):
            x = renoise(out, fresh_noise(i, noise, generator, noise_source), levels[i + 1], cfg.sigma_min)
    return out


def sample_with_context(
    denoise: DenoiseFn,
    noise: torch.Tensor,
    cfg: ConsistencyConfig,
    sigmas: Sequence[float] | None = None,
    steps: int = 1,
    generator: torch.Generator | None = None,
    noise_source: NoiseSource | None = None,
    *,
    context: torch.Tensor | None = None,
    context_sigma: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-step sampling of a new chunk next to a fixed, noisy context chunk (Music2Latent2).

    The denoiser sees groups of chunks: x [batch, G, ...] with one level per chunk, sigma
    [batch, G]. Without `context` G = 1; with it G = 2, the context first, at `context_sigma`
    for every evaluation (it is not re-noised), and the new chunk second. The new chunk follows
    `sample_multistep`.

    Args:
        denoise: f(x [batch, G, ...], sigma [batch, G]) -> [batch, G, ...].
        noise: [batch, ...] unit-variance initial noise of the new chunk.
        cfg: noise parametrisation.
        sigmas: decreasing noise levels of the new chunk; Karras spacing of `steps` if None.
        steps: number of network evaluations when `sigmas` is None.
        generator: source of the re-noising noise.
        noise_source: alternative source: noise_source(i) is unit noise for the level after i.
        context: [batch, ...] the noisy context chunk, or None.
        context_sigma: its noise level.

    Returns:
        (new chunk [batch, ...], the context's estimate from the last evaluation, or None).
    """
    refined: torch.Tensor | None = None

    def new_chunk(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        nonlocal refined
        level = sigma[:, None]  # [batch, 1]
        if context is None:
            return denoise(x[:, None], level)[:, 0]
        pair = denoise(
            torch.stack((context, x), dim=1), torch.cat((torch.full_like(level, context_sigma), level), 1)
        )
        refined = pair[:, 0]
        return pair[:, 1]

    return sample_multistep(new_chunk, noise, cfg, sigmas, steps, generator, noise_source), refined


def keyed_randn(shape: tuple[int, ...], *key: int) -> torch.Tensor:
    """Unit Gaussian noise of `shape` that is a pure function of the integer `key`."""
    state = np.random.SeedSequence(list(key)).generate_state(2, dtype=np.uint32)
    gen = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
    return torch.randn(*shape, generator=gen)
