"""How a per-channel codec carries a stereo pair: as left/right, or as mid/side.

A model that codes each channel apart (v1, mono v2) decodes each with its own noise, so two
channels that were alike come back unlike: coded as L/R, a centred voice returns wide and phasey
and a dual-mono file returns decorrelated. Coded as mid M = (L + R) / 2 and side S = (L - R) / 2,
what the channels share is decoded once (in M) and only their difference (S, quiet for most
music, silent for dual mono) carries its own noise; L = M + S and R = M - S afterwards.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from m2l.errors import M2LError

if TYPE_CHECKING:  # the command line reads STEREO_MODES without importing torch
    import torch

STEREO_MODES = ("ms", "lr")
"""`ms`: mid/side (the default of per-channel codecs); `lr`: left/right, as the authors code it."""


def checked_stereo_mode(mode: object, what: str = "stereo") -> str:
    """`mode` if it is one of `STEREO_MODES`, else a one-line M2LError."""
    if mode not in STEREO_MODES:
        raise M2LError(f"{what} must be one of {', '.join(STEREO_MODES)}, got {mode!r}")
    return str(mode)


def to_mid_side(wave: torch.Tensor) -> torch.Tensor:
    """[..., 2, samples] left/right -> [..., 2, samples] mid/side (mid first)."""
    import torch

    left, right = wave.unbind(-2)
    return torch.stack(((left + right) / 2, (left - right) / 2), dim=-2)


def from_mid_side(wave: torch.Tensor) -> torch.Tensor:
    """[..., 2, samples] mid/side -> [..., 2, samples] left/right (the inverse of `to_mid_side`)."""
    import torch

    mid, side = wave.unbind(-2)
    return torch.stack((mid + side, mid - side), dim=-2)
