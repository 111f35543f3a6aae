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
from m2l.consistency.schedule import (
    curriculum_gap,
    sample_index_lognormal,
    sigma_from_index,
    teacher_sigma_relative,
)
from m2l.train.config import TrainConfig
from m2l.train.losses import multires_spectral_loss
from m2l.train.schedule import delta_at


def sample_seeds(seed: int, step: int, first: int, count: int) -> torch.Tensor:
    """Per-sample seeds of global samples [first, first + count) at `step`: [count] int64."""
    return torch.tensor(
        [
            int(np.random.SeedSequence([seed, 1, step, first + i]).generate_state(1, np.uint64)[0] >> 1)
            for i in range(count)
        ],
        dtype=torch.int64,
    )


class ConsistencyObjective(nn.Module):
    """forward(audio, seeds, step) -> per-sample training losses [B].

    The teacher's noise level follows `cfg.teacher`: "index_delta" (the published schedule, an
    offset in noise-index space decaying from delta_start to delta_end) or "curriculum" (a
    relative gap, see `m2l.consistency.schedule.curriculum_gap`; at gap 1 the teacher is the clean
    input and no teacher pass is run). With `cfg.spectral_weight > 0` each sample is also decoded
    in one step from sigma_max and scored with `multires_spectral_loss` against its clean input.
    The last call's mean loss terms are kept in `last_terms` for logging.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.model = model
        self.cfg = cfg
        self.autocast_dtype = autocast_dtype
        self.last_terms: dict[str, float] = {}

    def _autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=self.autocast_dtype)

    def gap(self, step: int) -> float:
        """The teacher offset at `step`: index delta or relative gap, as `cfg.teacher` says."""
        cfg = self.cfg
        if cfg.teacher == "curriculum":
            return curriculum_gap(step, cfg.gap_stage_steps, cfg.gap_min)
        return delta_at(step, cfg)  # delta_exponential over the run, continued over extensions

    def draw(
        self, seeds: torch.Tensor, shape: tuple[int, ...], device: torch.device, count: int = 1
    ) -> tuple[torch.Tensor, ...]:
        """Per-sample draws: noise indices [B, groups], `count` unit noises [B, *shape], and with
        `spectral_share` > 0 a last [B] bool mask of the samples moved to sigma_max."""
        cc, groups, share = self.model.cfg.consistency, self.model.sigma_groups, self.cfg.spectral_share
        index, noises, top = [], [[] for _ in range(count)], []
        for s in seeds.tolist():
            gen = torch.Generator().manual_seed(int(s))
            index.append(sample_index_lognormal(groups, cc, self.cfg.p_mean, self.cfg.p_std, gen))
            for bucket in noises:
                bucket.append(torch.randn(shape, generator=gen))
            if share > 0:
                top.append(bool(torch.rand(1, generator=gen) < share))
        out = [torch.stack(index).to(device), *(torch.stack(n).to(device) for n in noises)]
        if share > 0:
            out.append(torch.tensor(top, device=device))
        return tuple(out)

    def teacher_sigma(self, sigma: torch.Tensor, index: torch.Tensor, gap: float) -> torch.Tensor:
        cc = self.model.cfg.consistency
        if self.cfg.teacher == "curriculum":
            return teacher_sigma_relative(sigma, gap, cc)
        return sigma_from_index((index - gap).clamp_min(0.0), cc)

    def forward(self, audio: torch.Tensor, seeds: torch.Tensor, step: int) -> torch.Tensor:
        """Losses of one batch.

        Args:
            audio: [B, channels, samples] training crops.
            seeds: [B] int64 per-sample seeds (noise levels and noise).
            step: the optimiser step, which sets the teacher offset.

        Returns:
            [B] float32 losses.
        """
        model, cfg, cc = self.model, self.cfg, self.model.cfg.consistency
        x0 = model.prepare(audio)
        extra_pass = cfg.spectral_weight > 0 and cfg.spectral_share == 0
        index, noise, *extra = self.draw(seeds, tuple(x0.shape[1:]), x0.device, 1 + extra_pass)
        if cfg.spectral_share > 0:  # these samples' student outputs are one-step decodes
            scored = extra.pop()
            index = torch.where(scored[:, None], torch.ones_like(index), index)
        gap = self.gap(step)
        sigma = sigma_from_index(index, cc)  # [B, groups]
        sigma_t = self.teacher_sigma(sigma, index, gap)
        with self._autocast(x0.device):
            cond = model.conditioning(x0)
            if cfg.teacher == "curriculum" and gap >= 1.0:  # f(x, sigma_min) = x: no pass needed
                teacher = model.add_noise(x0, noise, sigma_t)
            else:
                with torch.no_grad():
                    teacher = model.denoise(model.add_noise(x0, noise, sigma_t), sigma_t, cond)
            student = model.denoise(model.add_noise(x0, noise, sigma), sigma, cond)
            if extra_pass:
                top = torch.full_like(sigma, cc.sigma_max)
                one_step, scored = model.denoise(model.add_noise(x0, extra[0], top), top, cond), None
        losses = consistency_loss(
            model.group_view(student),
            model.group_view(teacher.detach()),
            sigma,
            sigma_t,
            cfg.huber_c,
            cfg.weighting,
            cc,
        )
        self.last_terms = {"consistency": float(losses.detach().mean()), "gap": gap}
        if cfg.spectral_weight > 0:
            spec = self.spectral(one_step if extra_pass else student, x0, scored)
            losses = losses + cfg.spectral_weight * spec
        return losses

    def spectral(self, decoded: torch.Tensor, x0: torch.Tensor, scored: torch.Tensor | None) -> torch.Tensor:
        """Per-sample multi-resolution spectral losses [B] of one-step decodes (0 where a
        `scored` mask is given and False)."""
        model, batch = self.model, x0.shape[0]
        rows = torch.arange(batch, device=x0.device) if scored is None else scored.nonzero()[:, 0]
        spec = x0.new_zeros(batch)
        if len(rows):
            wave = model.to_waveform(decoded[rows].float())
            per = multires_spectral_loss(wave, model.to_waveform(x0[rows].float()))
            spec = spec.index_put((rows,), per.reshape(len(rows), -1).mean(1))
        self.last_terms["spectral"] = float(spec.detach().sum() / max(len(rows), 1))
        return spec
