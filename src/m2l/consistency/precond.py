"""EDM-style preconditioning for consistency models, boundary condition at sigma_min.

The raw network F never sees sigma itself: `Denoiser` wraps it as
    f(x, sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, c_noise(sigma), cond)
so that f(x, sigma_min) = x exactly, with c_noise the sinusoidal embedding of log(sigma) / 4
(`noise_conditioning`, a vector per sample that F's layers are conditioned on).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from m2l.config import ConsistencyConfig


def scalings(sigma: torch.Tensor, cfg: ConsistencyConfig) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in) for a tensor of sigmas (any shape)."""
    sd2 = cfg.sigma_data**2
    shifted = sigma - cfg.sigma_min
    c_skip = sd2 / (shifted**2 + sd2)
    c_out = cfg.sigma_data * shifted / (sd2 + sigma**2).sqrt()
    c_in = 1.0 / (sigma**2 + sd2).sqrt()
    return c_skip, c_out, c_in


def noise_conditioning(sigma: torch.Tensor, dim: int) -> torch.Tensor:
    """c_noise: the sinusoidal embedding of log(sigma) / 4, [batch] -> [batch, dim] ([sin | cos]
    halves, float32)."""
    half = dim // 2
    freqs = (1.0 / 10000.0) ** (torch.arange(half, device=sigma.device) / max(half - 1, 1))
    angle = (sigma.float().log() / 4.0)[:, None] * freqs[None, :].float()
    return torch.cat((angle.sin(), angle.cos()), dim=1)


class Denoiser(nn.Module):
    """Consistency function f(x, sigma) around a raw network `net(x_in, c_noise, cond) -> F`.

    Args:
        net: the raw network; takes the scaled input, the noise conditioning [batch, cond_channels]
            in the input's dtype, and `cond`.
        cfg: the noise parametrisation (sigma_min, sigma_data).
        cond_channels: the width of the noise conditioning `net` takes.
    """

    def __init__(self, net: nn.Module, cfg: ConsistencyConfig, cond_channels: int) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.cond_channels = cond_channels

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any = None) -> torch.Tensor:
        """Denoise.

        Args:
            x: [batch, ...] noisy input.
            sigma: [batch] noise levels.
            cond: conditioning passed through to the network (e.g. decoder features).

        Returns:
            [batch, ...] estimate of the clean signal.
        """
        shape = (-1,) + (1,) * (x.dim() - 1)
        c_skip, c_out, c_in = (c.reshape(shape).to(x.dtype) for c in scalings(sigma, self.cfg))
        c_noise = noise_conditioning(sigma, self.cond_channels).to(x.dtype)
        return c_skip * x + c_out * self.net(c_in * x, c_noise, cond)
