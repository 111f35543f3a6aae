"""Level and stereo-image measures of `m2l.evaluate.fidelity`, on signals with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from m2l.errors import M2LError
from m2l.evaluate.fidelity import (
    balance_error,
    fidelity_scores,
    level_difference_db,
    lr_correlation,
    side_to_mid_db,
)


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
    scores = fidelity_scores(erased, original, 44100)
    assert scores["lr_correlation_original"] == pytest.approx(1.0)
    assert scores["lr_correlation_error"] == pytest.approx(1.0, abs=0.02)
    assert scores["side_mid_change_db"] > 100
    assert scores["level_db"] == pytest.approx(0.0, abs=0.1)
    mono = fidelity_scores(0.1 * a[None], a[None], 44100)
    assert mono["level_db"] == pytest.approx(-20.0)
    assert mono["lr_correlation_error"] is None and mono["side_mid_change_db"] is None


def _tone(hz: float, seconds: float = 1.0, rate: int = 44100) -> torch.Tensor:
    return torch.sin(2 * math.pi * hz * torch.arange(int(seconds * rate)) / rate)


def test_balance_error_sees_a_hard_panned_source_come_back_centred():
    a, b = _noise(seed=5)[0], _noise(seed=6)[0]
    left_only = torch.stack([a, torch.zeros_like(a)])
    assert balance_error(left_only, left_only, 44100) == pytest.approx(0.0, abs=1e-12)
    assert balance_error(0.3 * left_only, left_only, 44100) == pytest.approx(0.0, abs=1e-9)  # level-blind
    # into both channels with unrelated phases: correlation and side/mid stay as they were ...
    centred = torch.stack([a + b, a - b]) / 2
    scores = fidelity_scores(centred, left_only, 44100)
    assert scores["lr_correlation_error"] is None  # a silent channel has no correlation
    assert scores["side_mid_change_db"] == pytest.approx(0.0, abs=0.1)
    # ... the balance does not
    assert scores["balance_error"] == pytest.approx(0.5, abs=0.02)
    assert balance_error(left_only.flip(0), left_only, 44100) == pytest.approx(1.0)  # swapped
    assert balance_error(torch.zeros_like(a).expand(2, -1), torch.zeros(2, a.shape[0]), 44100) is None


def test_balance_error_is_per_band_and_energy_weighted():
    low, high = _tone(200.0), _tone(3000.0)
    split = torch.stack([low, high])  # the low tone left, the high tone right
    both = torch.stack([low + high, low + high]) / math.sqrt(2)  # both tones centred
    assert balance_error(both, split, 44100) == pytest.approx(0.5, abs=0.01)  # broadband equal, bands not
    quiet_high = torch.stack([low, 0.1 * high])
    wrong_high = torch.stack([low + 0.1 * high, torch.zeros_like(low)])  # the quiet high tone moved left
    err = balance_error(wrong_high, quiet_high, 44100)
    assert 0.005 < err < 0.02  # a band with 1 % of the energy moved from right to left


def test_balance_error_of_a_long_signal_is_scored_in_bounded_pieces(monkeypatch):
    import m2l.evaluate.fidelity as fidelity

    a, b = _noise(2, seed=7), _noise(2, seed=8)
    est = torch.cat([a, b], -1)
    ref = torch.cat([a * torch.tensor([[1.0], [0.2]]), b * torch.tensor([[0.1], [1.0]])], -1)
    whole = balance_error(est, ref, 44100)
    assert 0.2 < whole < 0.5
    monkeypatch.setattr(fidelity, "BALANCE_CHUNK", 8192)  # 14 pieces instead of one
    assert balance_error(est, ref, 44100) == pytest.approx(whole, rel=1e-9)
