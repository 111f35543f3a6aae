"""Checked arguments for the public API: a value of the wrong type or range becomes a one-line
`M2LError` naming the argument, never a traceback deep inside torch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from m2l.errors import M2LError


def checked_latents(z: object, shape_ok: Callable[[torch.Tensor], bool], expected: str) -> torch.Tensor:
    """A float32 CPU tensor from a tensor or array, or a one-line error (shape, dtype, NaN/Inf)."""
    if isinstance(z, np.ndarray):
        z = torch.from_numpy(np.ascontiguousarray(z))
    if not isinstance(z, torch.Tensor):
        raise M2LError(f"latents: expected a tensor or array, got {type(z).__name__}")
    if not shape_ok(z):
        raise M2LError(f"latents: expected shape {expected}, got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise M2LError(f"latents: expected floating point values, got {z.dtype}")
    z = z.detach().float().cpu()
    if not torch.isfinite(z).all():
        raise M2LError("latents: contain NaN or Inf")
    return z


def checked_int(value: object, name: str, low: int | None = None, high: int | None = None) -> int:
    """`value` as an int in [low, high], or a one-line M2LError (bools and floats are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise M2LError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"in [{low}, {high}]"
            if None not in (low, high)
            else f">= {low}"
            if high is None
            else f"<= {high}"
        )
        raise M2LError(f"{name} must be {bounds}, got {value}")
    return value


def checked_flag(value: object, name: str) -> bool:
    """`value` as a bool, or a one-line M2LError (a string such as "no" is not taken as True)."""
    if not isinstance(value, bool | np.bool_):
        raise M2LError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def auto_device() -> str:
    """The best available torch device: cuda, then mps, then cpu."""
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"
