"""Building blocks shared by the models: ResBlocks, frequency attention, resampling convs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with min(channels / 4, 32) groups."""
    return nn.GroupNorm(max(min(channels // 4, 32), 1), channels)


def inference_inplace() -> bool:
    """True when autograd is off, so forward passes may overwrite their own fresh intermediates.

    On CPU, every large new tensor costs page faults and kernel zeroing; reusing buffers in place
    is a large part of m2l's inference speed (see BENCHMARKS.md). Inputs are never overwritten:
    the three helpers below (`add`, `mul`, `silu`) write only into their first argument, which
    must be a fresh intermediate of the forward that calls them, so each forward reads as one
    computation whether it trains or infers.
    """
    return not torch.is_grad_enabled()


def add(fresh: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """fresh + other, written into `fresh` at inference (`inference_inplace`)."""
    return fresh.add_(other) if inference_inplace() else fresh + other


def mul(fresh: torch.Tensor, other: torch.Tensor | float) -> torch.Tensor:
    """fresh * other, written into `fresh` at inference (`inference_inplace`)."""
    return fresh.mul_(other) if inference_inplace() else fresh * other


def silu(fresh: torch.Tensor) -> torch.Tensor:
    """SiLU of `fresh`, written into it at inference (`inference_inplace`)."""
    return F.silu(fresh, inplace=inference_inplace())


def zero_(module: nn.Module) -> nn.Module:
    """Zero-initialise a layer's parameters (used before residual adds)."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


def frame_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """sdpa on 4-D [N, heads, L, d] inputs (5-D inputs take PyTorch's slow math path on CPU).

    On CPU, reduced-precision inputs are attended in float32 with autocast off (autocast would
    cast them back): the fused CPU kernel is 3-6x slower in bfloat16 than in float32 at these head
    sizes (measured with torch 2.13 on AMX hardware).
    """
    if q.device.type == "cpu" and (q.dtype != torch.float32 or torch.is_autocast_enabled("cpu")):
        with torch.autocast("cpu", enabled=False):
            out = F.scaled_dot_product_attention(q.float(), k.float(), v.float())
        return out.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v)


class FreqAttention(nn.Module):
    """Self-attention over the frequency axis, independently per time frame.

    [B, C, F, T] -> [B, C, F, T]; memory per frame is fixed whatever the audio length.
    Written for channels_last inputs (memory [B, F, T, C]): the linear layers then read and write
    the activations without copies.
    """

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        d = c // self.heads
        h = self.norm(x).permute(0, 2, 3, 1)  # [B, F, T, C]
        qkv = self.qkv(h).view(b, f, t, 3, self.heads, d)
        q, k, v = qkv.permute(3, 0, 2, 4, 1, 5).flatten(1, 2).unbind(0)  # each [B*T, heads, F, d]
        h = frame_attention(q, k, v).view(b, t, self.heads, f, d)
        h = self.proj(h.permute(0, 3, 1, 2, 4).reshape(b, f, t, c)).permute(0, 3, 1, 2)
        return add(h, x)  # [B, C, F, T]


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv, (+ noise embedding), GroupNorm-SiLU-conv(zero init), residual.

    2-D ([B, C, F, T]) or 1-D ([B, C, T]); optional frequency attention after the residual.
    """

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        *,
        dims: int = 2,
        emb_ch: int | None = None,
        attention: bool = False,
        heads: int = 4,
    ) -> None:
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        self.norm1 = group_norm(in_ch)
        self.conv1 = conv(in_ch, out_ch, 3, padding=1)
        self.proj_emb = zero_(nn.Linear(emb_ch, out_ch)) if emb_ch else None
        self.norm2 = group_norm(out_ch)
        self.conv2 = zero_(conv(out_ch, out_ch, 3, padding=1))
        self.res_conv = conv(in_ch, out_ch, 1) if in_ch != out_ch else None
        self.att = FreqAttention(out_ch, heads) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(silu(self.norm1(x)))
        if self.proj_emb is not None and emb is not None:
            e = self.proj_emb(emb)
            h = add(h, e.view(*e.shape, *(1,) * (h.dim() - 2)))
        h = self.conv2(silu(self.norm2(h)))
        h = add(h, x if self.res_conv is None else self.res_conv(x))
        return h if self.att is None else self.att(h)


class Downsample(nn.Module):
    """Frequency-only x4 (kernel (5, 1)) or x2 on both axes (3x3), optional GroupNorm first."""

    def __init__(self, in_ch: int, out_ch: int, *, freq_only: bool, norm: bool = False) -> None:
        super().__init__()
        self.norm = group_norm(in_ch) if norm else None
        if freq_only:
            self.conv = nn.Conv2d(in_ch, out_ch, (5, 1), stride=(4, 1), padding=(2, 0))
        else:
            self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x if self.norm is None else self.norm(x))


class Upsample(nn.Module):
    """Nearest x4 on frequency + conv (5, 1), or nearest x2 on both axes + conv 3x3."""

    def __init__(self, in_ch: int, out_ch: int, *, freq_only: bool) -> None:
        super().__init__()
        self.factor = (4, 1) if freq_only else (2, 2)
        kernel, pad = ((5, 1), (2, 0)) if freq_only else (3, 1)
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.factor, mode="nearest"))


def mlp(dims: list[int], *, zero_last: bool = False, final_act: bool = False) -> nn.Sequential:
    """Linear-SiLU stack through `dims`; SiLU after the last layer only if `final_act`."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i + 2 < len(dims) or final_act:
            layers.append(nn.SiLU())
    if zero_last:
        zero_(layers[-1] if not final_act else layers[-2])
    return nn.Sequential(*layers)
