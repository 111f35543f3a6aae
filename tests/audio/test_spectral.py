import pytest
import torch
from m2l_testing import sine_tensor

from m2l.audio.spectral import from_spectrogram, num_frames, num_samples, to_spectrogram
from m2l.config import SpectralConfig

CFG = SpectralConfig()


def _bandlimited(n: int, batch: int = 2) -> torch.Tensor:
    freqs = [110.0, 1234.5, 5000.0, 15000.0]
    x = sine_tensor(freqs, samples=n, rate=CFG.sample_rate, channels=len(freqs), amplitude=0.1).sum(0)
    return torch.stack([x * (i + 1) * 0.5 for i in range(batch)]).float()


def test_round_trip_reconstructs_interior():
    x = _bandlimited(512 * 40 + 1536)
    spec = to_spectrogram(x, CFG)
    assert spec.shape == (2, 2, CFG.freq_bins, 40)
    y = from_spectrogram(spec, CFG)
    assert y.shape == x.shape
    edge = CFG.n_fft - CFG.hop_length
    assert (y - x)[:, edge:-edge].abs().max() < 1e-4


def test_compression_matches_definition():
    x = _bandlimited(4096, batch=1)
    spec = to_spectrogram(x, CFG)
    ref = torch.stft(
        x, CFG.n_fft, CFG.hop_length, window=torch.hann_window(CFG.n_fft), center=False, return_complex=True
    )[:, : CFG.freq_bins]
    mag = torch.complex(spec[:, 0], spec[:, 1]).abs()
    assert torch.allclose(mag, CFG.beta * ref.abs() ** CFG.alpha, atol=1e-4)
    phase_ok = torch.angle(torch.complex(spec[:, 0], spec[:, 1])) - torch.angle(ref)
    big = ref.abs() > 1e-3
    assert torch.allclose(torch.cos(phase_ok[big]), torch.ones(()), atol=1e-3)


def test_silence_is_finite_and_silent():
    spec = to_spectrogram(torch.zeros(1, 4096), CFG)
    assert torch.isfinite(spec).all() and not spec.any()
    assert not from_spectrogram(spec, CFG).any()


def test_frame_arithmetic():
    assert num_frames(2047, CFG) == 0
    assert num_frames(2048, CFG) == 1
    for frames in (1, 8, 64):
        assert num_frames(num_samples(frames, CFG), CFG) == frames


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_equals_single(dtype):
    x = _bandlimited(8192, batch=3).to(dtype)
    batched = to_spectrogram(x, CFG)
    single = torch.cat([to_spectrogram(x[i : i + 1], CFG) for i in range(3)])
    assert torch.allclose(batched, single)
