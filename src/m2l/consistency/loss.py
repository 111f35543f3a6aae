"""The consistency-training objective: a pseudo-Huber distance per noise group, weighted.

Weightings (`consistency_loss(weighting=...)`):
- "inverse_gap": 1 / (sigma - sigma_teacher), the published recipe. It grows without bound as the
  teacher gap shrinks and is largest at low noise, so gradient norms reach the thousands.
- "edm": 1 / c_out(sigma), which makes the loss a unit-scale distance on the raw network's output
  at every noise level (EDM's weighting, for a norm instead of a squared norm); c_out is floored
  at `C_OUT_FLOOR` so levels next to sigma_min stay bounded. It does not depend on the gap.
"""

from __future__ import annotations

import math

import torch

from m2l.config import ConsistencyConfig
from m2l.consistency.precond import scalings

WEIGHTINGS = ("inverse_gap", "edm")
C_OUT_FLOOR = 0.01


def pseudo_huber(a: torch.Tensor, b: torch.Tensor, c_scale: float) -> torch.Tensor:
    """sqrt(||a - b||^2 + c^2) - c per group, c = c_scale * sqrt(d).

    Args:
        a: [batch, groups, d] student outputs.
        b: [batch, groups, d] teacher outputs (no gradient needed).
        c_scale: 0.00054 in the published recipe.

    Returns:
        [batch, groups] distances (float32).
    """
    c = c_scale * math.sqrt(a.shape[-1])
    sq = (a.float() - b.float()).pow(2).sum(-1)
    return (sq + c * c).sqrt() - c


def loss_weight(
    sigma: torch.Tensor, sigma_teacher: torch.Tensor, weighting: str, cfg: ConsistencyConfig
) -> torch.Tensor:
    """Per-group weights [batch, groups] of a weighting named in `WEIGHTINGS`."""
    if weighting == "inverse_gap":
        return 1.0 / (sigma - sigma_teacher).clamp_min(1e-12)
    if weighting == "edm":
        return 1.0 / scalings(sigma, cfg)[1].clamp_min(C_OUT_FLOOR)
    raise ValueError(f"unknown loss weighting {weighting!r}; expected one of {WEIGHTINGS}")


def consistency_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    sigma: torch.Tensor,
    sigma_teacher: torch.Tensor,
    c_scale: float,
    weighting: str = "inverse_gap",
    cfg: ConsistencyConfig | None = None,
) -> torch.Tensor:
    """Per-sample loss: sum over groups of pseudo-Huber times the weight.

    Args:
        student: [batch, groups, d].
        teacher: [batch, groups, d].
        sigma: [batch, groups] noise level of the student input.
        sigma_teacher: [batch, groups] lower noise level of the teacher input.
        c_scale: pseudo-Huber constant per sqrt(element).
        weighting: one of `WEIGHTINGS`.
        cfg: the noise parametrisation (needed by "edm").

    Returns:
        [batch] losses.
    """
    weight = loss_weight(sigma, sigma_teacher, weighting, cfg or ConsistencyConfig())
    return (pseudo_huber(student, teacher, c_scale) * weight).sum(-1)
