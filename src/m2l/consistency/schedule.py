"""Noise levels: the Karras sigma parametrisation and the consistency-training step schedule."""

from __future__ import annotations

import torch

from m2l.config import ConsistencyConfig


def sigma_from_index(index: torch.Tensor, cfg: ConsistencyConfig) -> torch.Tensor:
    """Continuous noise index in [0, 1] -> sigma in [sigma_min, sigma_max] (rho-warped)."""
    lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
    return (lo + index * (hi - lo)) ** cfg.rho


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


def delta_exponential(step: int, total_steps: int, start: float = 0.1, end: float = 0.001) -> float:
    """Teacher offset in index space, decaying exponentially from `start` to `end` over training."""
    frac = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return start * (end / start) ** frac


def curriculum_gap(step: int, stage_steps: int, gap_min: float) -> float:
    """Relative teacher gap of the denoising-to-consistency curriculum (after Easy Consistency
    Tuning): 1 during the first `stage_steps` steps (the teacher is the clean data: plain
    denoising), then halved every `stage_steps` steps down to `gap_min`."""
    return max(0.5 ** (max(step, 0) // max(stage_steps, 1)), gap_min)


def teacher_sigma_relative(sigma: torch.Tensor, gap: float, cfg: ConsistencyConfig) -> torch.Tensor:
    """Teacher noise level sigma_min + (sigma - sigma_min) * (1 - gap), any shape.

    gap = 1 puts the teacher at sigma_min, where the consistency function is the identity.
    """
    return cfg.sigma_min + (sigma - cfg.sigma_min) * (1.0 - gap)


def sample_index_lognormal(
    batch: int, cfg: ConsistencyConfig, p_mean: float, p_std: float, generator: torch.Generator
) -> torch.Tensor:
    """Noise indices whose sigma is log-normal(p_mean, p_std), clamped to [sigma_min, sigma_max]."""
    log_sigma = p_mean + p_std * torch.randn(batch, generator=generator, dtype=torch.float64)
    sigma = log_sigma.exp().clamp(cfg.sigma_min, cfg.sigma_max)
    return index_from_sigma(sigma, cfg).float()


def noise_embedding(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of log(sigma) / 4: [batch] -> [batch, dim] ([sin | cos] halves)."""
    half = dim // 2
    freqs = (1.0 / 10000.0) ** (torch.arange(half, device=sigma.device) / max(half - 1, 1))
    angle = (sigma.float().log() / 4.0)[:, None] * freqs[None, :].float()
    return torch.cat((angle.sin(), angle.cos()), dim=1)
