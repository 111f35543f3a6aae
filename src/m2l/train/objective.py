"""Consistency training objective as a module (so DistributedDataParallel can wrap it).

Works with any model that offers the trainer interface (see `Music2Latent`): `prepare`,
`conditioning`, `add_noise`, `denoise`, `group_view`, `sigma_groups`. A model with several noise
groups per sample (Music2Latent2: one sigma per chunk) gets independent levels per group, all
shifted by the same delta in index space.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from torch import nn

from m2l.consistency.loss import consistency_loss
from m2l.consistency.sampling import sigma_from_index
from m2l.consistency.schedule import curriculum_gap, sample_index_lognormal, teacher_sigma_relative
from m2l.errors import M2LError
from m2l.train.config import AUX_TERMS, TrainConfig
from m2l.train.losses import (
    band_level_loss,
    multires_coherence_loss,
    multires_complex_loss,
    multires_spectral_loss,
)
from m2l.train.schedule import delta_at

LOSSES = {
    "spectral": multires_spectral_loss,
    "phase": multires_complex_loss,
    "coherence": multires_coherence_loss,
    "level": band_level_loss,
}
"""The auxiliary losses by name (`TrainConfig.<name>_weight`)."""


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
    input and no teacher pass is run). With `cfg.spectral_weight > 0` (or `phase_weight`,
    `level_weight`) each sample is also decoded in one step from sigma_max and scored against its
    clean input with the auxiliary losses of `LOSSES`; with `rollout_weight > 0` that decode is
    re-noised and decoded a second time, as the two-step sampler does, and scored the same way
    (with `rollout_context`, v2: only the left chunk is re-noised, the right starts again from
    sigma_max, as `Codec2` decodes).
    `aux_scale` fades these auxiliary terms out when the config asks.
    The last call's mean loss terms are kept in `last_terms` for logging.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, autocast_dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if cfg.rollout_context and model.sigma_groups != 2:
            raise M2LError("training config: rollout_context is for chunked (v2) models (chunk pairs)")
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
        self,
        seeds: torch.Tensor,
        shape: tuple[int, ...],
        device: torch.device,
        count: int = 1,
        rollout: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Per-sample draws: noise indices [B, groups], `count` unit noises [B, *shape], with
        `spectral_share` > 0 a [B] bool mask of the samples moved to sigma_max, and with
        `rollout` a last [B, groups] of uniform numbers in [0, 1) (the two-step levels)."""
        cc, groups, share = self.model.cfg.consistency, self.model.sigma_groups, self.cfg.spectral_share
        index, noises, top, levels = [], [[] for _ in range(count)], [], []
        for s in seeds.tolist():
            gen = torch.Generator().manual_seed(int(s))
            index.append(sample_index_lognormal(groups, cc, self.cfg.p_mean, self.cfg.p_std, gen))
            for bucket in noises:
                bucket.append(torch.randn(shape, generator=gen))
            if share > 0:
                top.append(bool(torch.rand(1, generator=gen) < share))
            if rollout:
                levels.append(torch.rand(groups, generator=gen))
        out = [torch.stack(index).to(device), *(torch.stack(n).to(device) for n in noises)]
        if share > 0:
            out.append(torch.tensor(top, device=device))
        if rollout:
            out.append(torch.stack(levels).to(device))
        return tuple(out)

    def aux_scale(self, step: int) -> float:
        """The factor of the fading auxiliary terms (`aux_fade_terms`) at `step`: 1, fading
        linearly to 0 over `aux_fade_steps` from `aux_fade_start` (when that is > 0)."""
        start, steps = self.cfg.aux_fade_start, self.cfg.aux_fade_steps
        if start == 0 or step < start:
            return 1.0
        return max(0.0, 1.0 - (step - start) / steps)

    def rollout_sigma(self, uniform: torch.Tensor) -> torch.Tensor:
        """Second-step noise levels, log-uniform in [rollout_sigma_min, rollout_sigma_max]."""
        lo, hi = math.log(self.cfg.rollout_sigma_min), math.log(self.cfg.rollout_sigma_max)
        return (lo + uniform * (hi - lo)).exp()

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
            step: the optimiser step, which sets the teacher offset and the auxiliary fade.

        Returns:
            [B] float32 losses.
        """
        model, cfg, cc = self.model, self.cfg, self.model.cfg.consistency
        x0 = model.prepare(audio)
        scale, fading = self.aux_scale(step), cfg.aux_fade_terms.split(",")
        factor = {name: scale if name in fading else 1.0 for name in AUX_TERMS}
        weights = {
            "spectral": cfg.spectral_weight * factor["spectral"],
            "phase": cfg.phase_weight * factor["phase"],
            "coherence": cfg.coherence_weight * factor["coherence"],
            "level": cfg.level_weight * factor["level"],
        }
        rollout_weight = cfg.rollout_weight * factor["rollout"]
        rollout = rollout_weight > 0 and any(w > 0 for w in weights.values())
        extra_pass = any(w > 0 for w in weights.values()) and cfg.spectral_share == 0
        drawn = self.draw(seeds, tuple(x0.shape[1:]), x0.device, 1 + extra_pass + rollout, rollout)
        index, noise, *extra = drawn
        levels = extra.pop() if rollout else None
        scored = None
        if cfg.spectral_share > 0:  # these samples' student outputs are one-step decodes
            scored = extra.pop()
            index = torch.where(scored[:, None], torch.ones_like(index), index)
        gap = self.gap(step)
        sigma = sigma_from_index(index, cc)  # [B, groups]
        sigma_t = self.teacher_sigma(sigma, index, gap)
        decodes: list[tuple[str, float, torch.Tensor]] = []  # (log suffix, weight factor, decode)
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
                decodes.append(("", 1.0, model.denoise(model.add_noise(x0, extra[0], top), top, cond)))
            elif cfg.spectral_share > 0:
                decodes.append(("", 1.0, student))
            if rollout:  # the sampler's second step: re-noise the first decode, decode again
                second = self.rollout_sigma(levels)
                if cfg.rollout_context:  # left: re-noised first estimate; right: a new chunk
                    second = torch.cat((second[:, :1], torch.full_like(second[:, 1:], cc.sigma_max)), 1)
                spread = (second.square() - cc.sigma_min**2).clamp_min(0).sqrt()
                renoised = model.add_noise(decodes[0][2].detach(), extra[1], spread)
                decodes.append(("_2step", rollout_weight, model.denoise(renoised, second, cond)))
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
        for suffix, factor, decoded in decodes:
            for name, weight in weights.items():
                if weight > 0:
                    term = self.scored_loss(name + suffix, decoded, x0, scored)
                    losses = losses + factor * weight * term
        return losses

    def scored_loss(
        self, name: str, decoded: torch.Tensor, x0: torch.Tensor, scored: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-sample auxiliary losses [B] of decodes against their clean inputs: a name of
        `LOSSES`, with an optional `_2step` suffix for the log; 0 where a `scored` mask is given
        and False."""
        model, batch = self.model, x0.shape[0]
        rows = torch.arange(batch, device=x0.device) if scored is None else scored.nonzero()[:, 0]
        loss_fn = LOSSES[name.removesuffix("_2step")]
        values = x0.new_zeros(batch)
        if len(rows):
            wave = model.to_waveform(decoded[rows].float())
            per = loss_fn(wave, model.to_waveform(x0[rows].float()))
            values = values.index_put((rows,), per.reshape(len(rows), -1).mean(1))
        self.last_terms[name] = float(values.detach().sum() / max(len(rows), 1))
        return values
