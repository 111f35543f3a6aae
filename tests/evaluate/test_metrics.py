"""Tests for m2l.evaluate.metrics: SI-SDR, multi-resolution STFT and mel distances, mel filters."""

from __future__ import annotations

import math

import pytest
import torch
from m2l_testing import sine_tensor

from m2l.errors import M2LError
from m2l.evaluate.metrics import (
    hz_to_mel,
    mel_distance,
    mel_filterbank,
    mel_to_hz,
    si_sdr,
    stft_distance,
    stft_magnitude,
)

RATE = 16000
SMALL_STFT = ((256, 64), (128, 32))
SMALL_MEL = ((256, 64, 32), (128, 32, 16))


def tone(samples: int = 4000) -> torch.Tensor:
    """A float64 440 Hz sine [samples] spanning a whole number of periods, so its mean is ~0."""
    return sine_tensor(440.0, samples=samples, rate=RATE)


def orthogonal_noise(x: torch.Tensor, snr_db: float, seed: int) -> torch.Tensor:
    """Zero-mean noise orthogonal to zero-mean `x` with |x|^2 / |noise|^2 = 10^(snr_db / 10)."""
    gen = torch.Generator().manual_seed(seed)
    x0 = x - x.mean()
    n = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    n = n - n.mean()
    n = n - (n @ x0) / (x0 @ x0) * x0
    return n * torch.sqrt(x0.square().sum() / n.square().sum() / 10 ** (snr_db / 10))


def white(samples: int, seed: int, scale: float = 0.3) -> torch.Tensor:
    return scale * torch.randn(samples, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 12.5, 40.0])
def test_si_sdr_matches_analytic_snr_for_orthogonal_noise(snr_db: float) -> None:
    x = tone()
    got = si_sdr(x + orthogonal_noise(x, snr_db, seed=1), x)
    assert got.shape == ()
    assert float(got) == pytest.approx(snr_db, abs=1e-6)


def test_si_sdr_is_scale_invariant_and_offset_invariant() -> None:
    x = tone()
    est = x + orthogonal_noise(x, 7.0, seed=2)
    base = float(si_sdr(est, x))
    assert float(si_sdr(3.5 * est, x)) == pytest.approx(base, abs=1e-9)
    assert float(si_sdr(est, 0.1 * x)) == pytest.approx(base, abs=1e-5)  # eps shifts it by ~1e-6 dB
    assert float(si_sdr(est + 0.2, x - 0.1)) == pytest.approx(base, abs=1e-9)
    assert float(si_sdr(-est, x)) == pytest.approx(base, abs=1e-9)  # a negative gain is a scale too


def test_si_sdr_batched_over_leading_dims_and_keeps_float32() -> None:
    x = tone(2000)
    snrs = torch.tensor([[0.0, 10.0, 20.0], [30.0, -3.0, 5.0]])
    est = torch.stack([torch.stack([x + orthogonal_noise(x, float(s), seed=3) for s in row]) for row in snrs])
    got = si_sdr(est, x.expand_as(est))
    assert got.shape == (2, 3) and got.dtype == torch.float64
    assert float((got - snrs.double()).abs().max()) < 1e-6
    got32 = si_sdr(est.float(), x.expand_as(est).float())
    assert got32.dtype == torch.float32
    assert float((got32 - snrs).abs().max()) < 1e-3


def test_si_sdr_silent_reference_is_finite() -> None:
    silent = torch.zeros(100, dtype=torch.float64)
    assert float(si_sdr(silent, silent)) == 0.0
    value = float(si_sdr(white(100, seed=4), silent))
    assert math.isfinite(value) and value < -50.0


def test_identical_signals_have_zero_spectral_distances() -> None:
    x = white(3000, seed=5).reshape(3, 1000)
    d_stft = stft_distance(x, x, resolutions=SMALL_STFT)
    d_mel = mel_distance(x, x, RATE, resolutions=SMALL_MEL)
    assert d_stft.shape == (3,) and d_mel.shape == (3,)
    assert torch.all(d_stft == 0) and torch.all(d_mel == 0)


def test_spectral_distances_grow_with_added_noise() -> None:
    x = tone(4000)
    noise = white(4000, seed=6, scale=1.0)
    levels = [1e-3, 1e-2, 1e-1, 1.0]
    d_stft = [float(stft_distance(x + a * noise, x, resolutions=SMALL_STFT)) for a in levels]
    d_mel = [float(mel_distance(x + a * noise, x, RATE, resolutions=SMALL_MEL)) for a in levels]
    assert all(lo < hi for lo, hi in zip(d_stft, d_stft[1:], strict=False))
    assert all(lo < hi for lo, hi in zip(d_mel, d_mel[1:], strict=False))


def test_halved_signal_gives_known_distances() -> None:
    x = white(4096, seed=7)
    # Spectral convergence 0.5 plus |log 2| per bin; mel log10 error is log10 2 per band.
    assert float(stft_distance(0.5 * x, x, resolutions=SMALL_STFT, eps=1e-12)) == pytest.approx(
        0.5 + math.log(2), abs=1e-6
    )
    assert float(mel_distance(0.5 * x, x, RATE, resolutions=SMALL_MEL)) == pytest.approx(
        math.log10(2), abs=2e-3
    )


def test_inputs_shorter_than_n_fft_work_with_default_resolutions() -> None:
    x, y = white(300, seed=8), white(300, seed=9)
    for value in (si_sdr(y, x), stft_distance(y, x), mel_distance(y, x, 44100)):
        assert value.shape == () and math.isfinite(float(value))
    assert float(stft_distance(x, x)) == 0.0
    assert stft_magnitude(x, 2048, 512).shape == (1025, 1)
    assert stft_magnitude(x, 128, 32).shape == (65, 1 + math.ceil((300 - 128) / 32))


def test_shape_mismatch_and_bad_options_raise_m2l_error() -> None:
    x = torch.zeros(2, 500)
    for metric in (si_sdr, stft_distance, lambda a, b: mel_distance(a, b, RATE)):
        with pytest.raises(M2LError, match="differs from reference shape"):
            metric(x, torch.zeros(2, 499))
        with pytest.raises(M2LError, match="at least one sample"):
            metric(torch.zeros(2, 0), torch.zeros(2, 0))
    with pytest.raises(M2LError, match="bad resolution"):
        stft_distance(x, x, resolutions=((256, 0),))
    with pytest.raises(M2LError, match="sample rate"):
        mel_distance(x, x, 0)
    with pytest.raises(M2LError, match="f_min"):
        mel_filterbank(RATE, 256, 10, f_max=RATE)


def test_slaney_mel_scale_known_points_and_round_trip() -> None:
    assert float(hz_to_mel(1000.0)) == pytest.approx(15.0)
    assert float(hz_to_mel(200.0)) == pytest.approx(3.0)
    assert float(hz_to_mel(6400.0)) == pytest.approx(42.0)  # 27 mels per factor 6.4 above 1 kHz
    freqs = torch.tensor([0.0, 50.0, 999.0, 1000.0, 4321.0, 22050.0], dtype=torch.float64)
    assert float((mel_to_hz(hz_to_mel(freqs)) - freqs).abs().max()) < 1e-9


def test_mel_filterbank_peaks_increase_and_cover_bins() -> None:
    n_fft, n_mels = 1024, 40
    bank = mel_filterbank(RATE, n_fft, n_mels)
    assert bank.shape == (n_mels, n_fft // 2 + 1) and bank.dtype == torch.float32
    assert torch.all(bank >= 0)
    peaks = bank.argmax(dim=1)
    assert torch.all(peaks[1:] > peaks[:-1])
    covered = (bank > 0).any(dim=0)
    assert torch.all(covered[1:-1])  # every bin strictly between 0 Hz and Nyquist
    # Unit area in Hz (Slaney norm): sum of weights times the bin spacing is ~1 for wide filters.
    areas = bank.double().sum(dim=1) * (RATE / n_fft)
    assert float((areas[-10:] - 1.0).abs().max()) < 0.02


def test_mel_filterbank_respects_band_limits() -> None:
    bank = mel_filterbank(RATE, 512, 20, f_min=500.0, f_max=4000.0, dtype=torch.float64)
    bin_hz = torch.arange(257, dtype=torch.float64) * RATE / 512
    outside = (bin_hz <= 500.0) | (bin_hz >= 4000.0)
    assert torch.all(bank[:, outside] == 0) and torch.all(bank[:, ~outside].sum(dim=0) > 0)
    bank[0, 0] = 123.0  # the returned tensor is a copy; the cache must be unaffected
    assert float(mel_filterbank(RATE, 512, 20, f_min=500.0, f_max=4000.0)[0, 0]) == 0.0
