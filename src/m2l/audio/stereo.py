"""Stereo coding of a channel pair: mid/side and back, and the stereo modes a codec accepts.

A model that codes each channel apart decodes each with its own noise; coding a pair as mid
M = (L + R) / 2 and side S = (L - R) / 2 keeps what the channels share in one row (see
`m2l.codec`).
"""

from __future__ import annotations

import torch

from m2l.config import STEREO_MODES
from m2l.errors import M2LError


def checked_stereo_mode(mode: object, what: str = "stereo") -> str:
    """`mode` if it is one of `STEREO_MODES`, else a one-line M2LError."""
    if mode not in STEREO_MODES:
        raise M2LError(f"{what} must be one of {', '.join(STEREO_MODES)}, got {mode!r}")
    return str(mode)


def to_mid_side(wave: torch.Tensor) -> torch.Tensor:
    """[..., 2, samples] left/right -> [..., 2, samples] mid/side (mid first)."""
    left, right = wave.unbind(-2)
    return torch.stack(((left + right) / 2, (left - right) / 2), dim=-2)


def from_mid_side(wave: torch.Tensor) -> torch.Tensor:
    """[..., 2, samples] mid/side -> [..., 2, samples] left/right (the inverse of `to_mid_side`)."""
    mid, side = wave.unbind(-2)
    return torch.stack((mid + side, mid - side), dim=-2)
