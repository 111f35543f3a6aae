"""Statistics of codec latents: per-dimension spread and tanh saturation.

Both encoders end in tanh, and the codecs hand out tanh(encoder) / latent_scale:

- v1 (`m2l.codec_v1`): latents [channels, 64, frames], latent_scale 0.06, latent axis dim=-2.
- v2 (`m2l.codec_v2`): latents [rows, chunks, K, 64], latent_scale 1.0, latent axis dim=-1.

`latent_stats` measures means and standard deviations on the latents as given, and saturation on
the raw tanh outputs, z * latent_scale: the fraction of values whose magnitude exceeds the
threshold (a pre-tanh magnitude above atanh(threshold); atanh(0.99) ~ 2.65). Standard
deviations are population ones (dividing by the count), so a single value has std 0.
"""

from __future__ import annotations

import math
import numbers

import torch

from m2l.errors import M2LError


def latent_stats(
    z: torch.Tensor, dim: int, latent_scale: float = 1.0, threshold: float = 0.99
) -> dict[str, float | int | list[float]]:
    """Summarise a latent tensor.

    Args:
        z: latents of any shape with at least one dimension, e.g. v1 [channels, 64, frames]
            (dim=-2, latent_scale=0.06) or v2 [rows, chunks, K, 64] (dim=-1, latent_scale=1.0).
        dim: the axis that indexes latent dimensions; every other axis is pooled.
        latent_scale: the codec's latent_scale; z * latent_scale are the raw tanh outputs.
        threshold: |tanh output| above this counts as saturated (0 < threshold < 1).

    Returns:
        A dict with
        "dim" (size of axis `dim`), "count" (values pooled per latent dimension),
        "mean", "std" (over all values, as given),
        "per_dim_mean", "per_dim_std" (lists of floats, one per latent dimension),
        "abs_max" (largest |z|),
        "latent_scale", "threshold" (as passed),
        "saturation" (fraction of all values with |z * latent_scale| > threshold),
        "per_dim_saturation" (the same fraction for each latent dimension, a list).

    Raises:
        M2LError: When z is empty, not a real tensor or holds NaN/Inf, `dim` is out of range,
            or latent_scale / threshold are out of range.
    """
    if not isinstance(z, torch.Tensor) or z.dim() == 0 or z.numel() == 0:
        shape = list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise M2LError(
            f"latent_stats: expected a non-empty latent tensor with at least one axis, got {shape}"
        )
    if z.is_complex() or z.dtype == torch.bool:
        raise M2LError(f"latent_stats: expected real latents, got dtype {z.dtype}")
    if not isinstance(dim, numbers.Integral) or isinstance(dim, bool) or not -z.dim() <= dim < z.dim():
        raise M2LError(f"latent_stats: dim {dim!r} is out of range for latents of shape {list(z.shape)}")
    scale_ok = isinstance(latent_scale, numbers.Real) and not isinstance(latent_scale, bool)
    if not scale_ok or not math.isfinite(latent_scale) or latent_scale <= 0:
        raise M2LError(f"latent_stats: latent_scale must be a positive number, got {latent_scale!r}")
    thr_ok = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool)
    if not thr_ok or not 0 < threshold < 1:
        raise M2LError(f"latent_stats: threshold must lie strictly between 0 and 1, got {threshold!r}")
    x = z.detach().to("cpu", torch.float64)
    if not torch.isfinite(x).all():
        raise M2LError("latent_stats: latents contain NaN or Inf")
    rows = x.movedim(int(dim), 0).reshape(x.shape[int(dim)], -1)  # [latent dims, count]
    saturated = ((rows * float(latent_scale)).abs() > threshold).to(torch.float64)
    return {
        "dim": rows.shape[0],
        "count": rows.shape[1],
        "mean": float(rows.mean()),
        "std": float(rows.std(correction=0)),
        "per_dim_mean": rows.mean(dim=1).tolist(),
        "per_dim_std": rows.std(dim=1, correction=0).tolist(),
        "abs_max": float(rows.abs().max()),
        "latent_scale": float(latent_scale),
        "threshold": float(threshold),
        "saturation": float(saturated.mean()),
        "per_dim_saturation": saturated.mean(dim=1).tolist(),
    }
