"""Level and stereo-image measures of `m2l.evaluate.fidelity`, on signals with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from m2l.errors import M2LError
from m2l.evaluate.fidelity import fidelity_scores, level_difference_db, lr_correlation, side_to_mid_db


def _noise(channels: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(channels, 44100, generator=torch.Generator().manual_seed(seed))


def test_level_difference_is_the_energy_ratio_in_db():
    ref = _noise(2)
    assert level_difference_db(0.5 * ref, ref) == pytest.approx(20 * math.log10(0.5), abs=1e-9)
    assert level_difference_db(ref, ref) == pytest.approx(0.0, abs=1e-12)
    assert level_difference_db(ref, torch.zeros_like(ref)) is None  # a silent original has no level
    with pytest.raises(M2LError, match="shapes differ"):
        level_difference_db(ref[:1], ref)


def test_correlation_and_side_to_mid_of_known_images():
    a, b = _noise(seed=1)[0], _noise(seed=2)[0]
    dual_mono = torch.stack([a, a])
    assert lr_correlation(dual_mono) == pytest.approx(1.0)
    assert side_to_mid_db(dual_mono) < -100  # no side at all
    assert abs(lr_correlation(torch.stack([a, b]))) < 0.02  # independent channels
    assert side_to_mid_db(torch.stack([a, b])) == pytest.approx(0.0, abs=0.1)  # as wide as deep
    assert lr_correlation(torch.stack([a, -a])) == pytest.approx(-1.0)
    panned = torch.stack([a + 0.5 * b, a - 0.5 * b])  # mid a, side 0.5 b: -6 dB
    assert side_to_mid_db(panned) == pytest.approx(20 * math.log10(0.5), abs=0.1)
    assert lr_correlation(torch.stack([a, torch.zeros_like(a)])) is None  # a silent channel


def test_scores_of_a_decorrelated_reconstruction_and_of_a_mono_item():
    a, b = _noise(seed=3)[0], _noise(seed=4)[0]
    original = torch.stack([a, a])
    erased = torch.stack([a, b])  # what coding channels apart with independent noise can do
    scores = fidelity_scores(erased, original)
    assert scores["lr_correlation_original"] == pytest.approx(1.0)
    assert scores["lr_correlation_error"] == pytest.approx(1.0, abs=0.02)
    assert scores["side_mid_change_db"] > 100
    assert scores["level_db"] == pytest.approx(0.0, abs=0.1)
    mono = fidelity_scores(0.1 * a[None], a[None])
    assert mono["level_db"] == pytest.approx(-20.0)
    assert mono["lr_correlation_error"] is None and mono["side_mid_change_db"] is None
