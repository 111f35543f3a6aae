"""Consistency training objective as a module (so DistributedDataParallel can wrap it).

Works with any model that offers the trainer interface (see `Music2Latent`): `prepare`,
`conditioning`, `add_noise`, `denoise`, `group_view`, `sigma_groups`. A model with several noise
groups per sample (Music2Latent2: one sigma per chunk) gets independent levels per group, all
shifted by the same delta in index space.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from torch import nn

from m2l.consistency.loss import consistency_loss
from m2l.consistency.schedule import sample_index_lognormal, sigma_from_index
from m2l.train.config import TrainConfig


def sample_seeds(seed: int, step: int, first: int, count: int) -> torch.Tensor:
    """Per-sample seeds of global samples [first, first + count) at `step`: [count] int64."""
    return torch.tensor([
        int(np.random.SeedSequence([seed, 1, step, first + i]).generate_state(1, np.uint64)[0] >> 1)
        for i in range(count)
    ], dtype=torch.int64)


class ConsistencyObjective(nn.Module):
    """forward(audio, seeds, delta) -> per-sample consistency-training losses [B]."""

    def __init__(self, model: nn.Module, cfg: TrainConfig, autocast_dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.autocast_dtype = autocast_dtype

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def draw(self, seeds: torch.Tensor, shape: tuple[int, ...], device: torch.device
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise indices [B, groups] and unit noise [B, *shape] from per-sample seeds."""
        cc, groups = self.model.cfg.consistency, self.model.sigma_groups
        index, noise = [], []
        for s in seeds.tolist():
            gen = torch.Generator().manual_seed(int(s))
            index.append(sample_index_lognormal(groups, cc, self.cfg.p_mean, self.cfg.p_std, gen))
            noise.append(torch.randn(shape, generator=gen))
        return torch.stack(index).to(device), torch.stack(noise).to(device)

    def forward(self, audio: torch.Tensor, seeds: torch.Tensor, delta: float) -> torch.Tensor:
        """Losses of one batch.

        Args:
            audio: [B, channels, samples] training crops.
            seeds: [B] int64 per-sample seeds (noise levels and noise).
            delta: teacher offset in noise-index space.

        Returns:
            [B] float32 losses.
        """
        model, cc = self.model, self.model.cfg.consistency
        x0 = model.prepare(audio)
        index, noise = self.draw(seeds, tuple(x0.shape[1:]), x0.device)
        sigma = sigma_from_index(index, cc)  # [B, groups]
        sigma_t = sigma_from_index((index - delta).clamp_min(0.0), cc)
        with self._autocast(x0.device):
            cond = model.conditioning(x0)
            with torch.no_grad():
                teacher = model.denoise(model.add_noise(x0, noise, sigma_t), sigma_t, cond)
            student = model.denoise(model.add_noise(x0, noise, sigma), sigma, cond)
        return consistency_loss(model.group_view(student), model.group_view(teacher.detach()),
                                sigma, sigma_t, self.cfg.huber_c)
