"""The consistency-training schedule: teacher offsets and gaps, and the noise indices a training
step draws (over the rho warp of `m2l.consistency.sampling.sigma_from_index`)."""

from __future__ import annotations

import torch

from m2l.config import ConsistencyConfig
from m2l.consistency.sampling import index_from_sigma


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
