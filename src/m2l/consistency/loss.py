"""The consistency-training objective: pseudo-Huber distance weighted by 1 / delta-sigma."""

from __future__ import annotations

import math

import torch


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


def consistency_loss(student: torch.Tensor, teacher: torch.Tensor, sigma: torch.Tensor,
                     sigma_teacher: torch.Tensor, c_scale: float) -> torch.Tensor:
    """Per-sample loss: sum over groups of pseudo-Huber / (sigma - sigma_teacher).

    Args:
        student: [batch, groups, d].
        teacher: [batch, groups, d].
        sigma: [batch, groups] noise level of the student input.
        sigma_teacher: [batch, groups] lower noise level of the teacher input.
        c_scale: pseudo-Huber constant per sqrt(element).

    Returns:
        [batch] losses.
    """
    weight = 1.0 / (sigma - sigma_teacher).clamp_min(1e-12)
    return (pseudo_huber(student, teacher, c_scale) * weight).sum(-1)
