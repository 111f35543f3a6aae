"""EDM-style preconditioning for consistency models, boundary condition at sigma_min.

The raw network F never sees c_skip / c_out: `Denoiser` wraps it as
    f(x, sigma) = c_skip(sigma) * x + c_out(sigma) * F(c_in(sigma) * x, sigma, cond)
so that f(x, sigma_min) = x exactly.
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


class Denoiser(nn.Module):
    """Consistency function f(x, sigma) around a raw network `net(x_in, sigma, cond) -> F`."""

    def __init__(self, net: nn.Module, cfg: ConsistencyConfig) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg

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
        return c_skip * x + c_out * self.net(c_in * x, sigma, cond)
