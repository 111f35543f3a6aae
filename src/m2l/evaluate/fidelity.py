"""Fidelity a listener notices and ViSQOL does not: playback level and the stereo image.

ViSQOL scores the mono mix after level alignment, so a reconstruction that plays back quieter, or
whose left and right channels no longer agree, can score well. These measures see both:

- level difference: 10 log10(energy of the reconstruction / energy of the original), over every
  channel and sample, in dB (negative: quieter);
- L/R correlation: the Pearson correlation of the (zero-mean) left and right channels, 1 for a
  dual-mono file, about 0 for unrelated channels;
- side/mid energy: 10 log10(E[S^2] / E[M^2]) with M = (L + R) / 2 and S = (L - R) / 2, in dB: how
  wide the image is (very negative for a centred source).

All functions compute in float64 and return Python floats (None where a value is undefined: a
silent channel has no correlation, a silent mid no side/mid ratio).
"""

from __future__ import annotations

import math

import torch

from m2l.errors import M2LError

SILENCE = 1e-12
"""Mean square below which a signal counts as silent."""


def _energy_db(numerator: torch.Tensor, denominator: torch.Tensor) -> float | None:
    num, den = float(numerator.double().square().mean()), float(denominator.double().square().mean())
    if den < SILENCE:
        return None
    return 10.0 * math.log10(max(num, SILENCE) / den)


def level_difference_db(estimate: torch.Tensor, reference: torch.Tensor) -> float | None:
    """Energy of `estimate` over that of `reference` in dB, both [channels, samples] (None when
    the reference is silent)."""
    if estimate.shape != reference.shape:
        raise M2LError(
            f"level difference: shapes differ, {tuple(estimate.shape)} vs {tuple(reference.shape)}"
        )
    return _energy_db(estimate, reference)


def lr_correlation(wave: torch.Tensor) -> float | None:
    """Pearson correlation of the two channels of a stereo `wave` [2, samples] (None if either
    channel is silent)."""
    left, right = (c - c.mean() for c in wave.double())
    power = float(left.square().mean()) * float(right.square().mean())
    if power < SILENCE**2:
        return None
    return float((left * right).mean()) / math.sqrt(power)


def side_to_mid_db(wave: torch.Tensor) -> float | None:
    """Side energy over mid energy of a stereo `wave` [2, samples] in dB (None for a silent mid)."""
    mid, side = (wave[0] + wave[1]) / 2, (wave[0] - wave[1]) / 2
    return _energy_db(side, mid)


def fidelity_scores(estimate: torch.Tensor, reference: torch.Tensor) -> dict[str, float | None]:
    """Level and stereo-image scores of one reconstruction.

    Args:
        estimate: [channels, samples] reconstruction.
        reference: [channels, samples] original.

    Returns:
        "level_db" (see `level_difference_db`); for stereo items also "lr_correlation" and
        "lr_correlation_original", "lr_correlation_error" (their absolute difference) and
        "side_mid_change_db" (the reconstruction's side/mid energy minus the original's); these
        are None for mono items.
    """
    scores: dict[str, float | None] = {
        "level_db": level_difference_db(estimate, reference),
        "lr_correlation": None,
        "lr_correlation_original": None,
        "lr_correlation_error": None,
        "side_mid_change_db": None,
    }
    if reference.shape[0] != 2:
        return scores
    ours, theirs = lr_correlation(estimate), lr_correlation(reference)
    scores["lr_correlation"], scores["lr_correlation_original"] = ours, theirs
    if ours is not None and theirs is not None:
        scores["lr_correlation_error"] = abs(ours - theirs)
    ours_sm, theirs_sm = side_to_mid_db(estimate), side_to_mid_db(reference)
    if ours_sm is not None and theirs_sm is not None:
        scores["side_mid_change_db"] = ours_sm - theirs_sm
    return scores
