"""Tests for m2l.evaluate.visqol: the optional-package guard, input checks and (when installed) scores."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
from m2l_testing import assert_one_line_error, sine_tensor

from m2l.errors import M2LError
from m2l.evaluate import visqol as visqol_module
from m2l.evaluate.visqol import visqol

HAVE_VISQOL = importlib.util.find_spec("visqol") is not None


def music(samples: int, rate: int, seed: int) -> torch.Tensor:
    """Two tones and a little noise [samples]."""
    hiss = 0.02 * torch.randn(samples, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    tones = sine_tensor(440, samples=samples, rate=rate, amplitude=0.3)
    return (tones + sine_tensor(1500, samples=samples, rate=rate, amplitude=0.1) + hiss).float()


def test_missing_package_gives_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    visqol_module._api.cache_clear()
    monkeypatch.setitem(sys.modules, "visqol", None)  # make `import visqol` fail
    try:
        with pytest.raises(M2LError, match=r"ViSQOL needs the optional package visqol-python") as err:
            visqol(torch.zeros(48000), torch.zeros(48000), 48000)
        assert_one_line_error(err, "m2l[visqol]")
    finally:
        visqol_module._api.cache_clear()


@pytest.mark.parametrize(
    ("estimate", "reference", "rate", "message"),
    [
        (torch.zeros(2, 2, 10), torch.zeros(10), 48000, "estimate must be a waveform"),
        (torch.zeros(10), torch.zeros(0), 48000, "reference must be a waveform"),
        (torch.zeros(0, 10), torch.zeros(10), 48000, "estimate must be a waveform"),  # no channels
        (torch.zeros(10), torch.full((10,), float("inf")), 48000, "NaN or Inf"),
        (torch.zeros(10), torch.zeros(10), 0, "sample rate"),
    ],
)
def test_bad_input(estimate, reference, rate, message: str) -> None:
    with pytest.raises(M2LError, match=message):
        visqol(estimate, reference, rate)


@pytest.mark.skipif(not HAVE_VISQOL, reason="visqol-python is not installed (optional extra [visqol])")
def test_identical_scores_high_and_noise_lower() -> None:
    rate = 16000  # exercises the resampling to 48 kHz
    ref = music(rate, rate, seed=0)
    same = visqol(ref, ref, rate)
    noisy = visqol(ref + 0.2 * torch.randn(rate, generator=torch.Generator().manual_seed(1)), ref, rate)
    assert 4.5 < same <= 5.0
    assert 1.0 <= noisy < same - 1.0


@pytest.mark.skipif(not HAVE_VISQOL, reason="visqol-python is not installed (optional extra [visqol])")
def test_too_short_is_a_one_line_error() -> None:
    clip = music(4800, 48000, seed=2)  # 0.1 s: fewer spectrum frames than ViSQOL's patch
    with pytest.raises(M2LError, match="ViSQOL failed") as err:
        visqol(clip, clip, 48000)
    assert_one_line_error(err)
