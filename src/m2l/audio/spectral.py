"""The Music2Latent spectral representation: compressed complex STFT as 2 real channels.

Frame k covers samples [hop * k, hop * k + n_fft) (no centring, no padding). Each complex bin c
becomes beta * |c|^alpha * exp(i angle(c)); the Nyquist bin is dropped. Works batched on any device.
"""

from __future__ import annotations

import torch

from m2l.config import SpectralConfig

_EPS = 1e-12


def num_frames(samples: int, cfg: SpectralConfig) -> int:
    """STFT frames of a waveform of `samples` samples (0 when shorter than one frame)."""
    if samples < cfg.n_fft:
        return 0
    return (samples - cfg.n_fft) // cfg.hop_length + 1


def num_samples(frames: int, cfg: SpectralConfig) -> int:
    """Waveform length produced by the inverse transform of `frames` frames."""
    return (frames - 1) * cfg.hop_length + cfg.n_fft


def _window(cfg: SpectralConfig, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(cfg.n_fft, periodic=True, device=device, dtype=dtype)


def to_spectrogram(wave: torch.Tensor, cfg: SpectralConfig) -> torch.Tensor:
    """Waveform -> compressed spectrogram.

    Args:
        wave: [batch, samples] float waveform, samples >= n_fft.
        cfg: spectral settings.

    Returns:
        [batch, 2, freq_bins, frames] real tensor: real and imaginary parts.
    """
    frames = wave.unfold(-1, cfg.n_fft, cfg.hop_length)  # [B, T, n_fft]
    spec = torch.fft.rfft(frames * _window(cfg, wave.device, wave.dtype), dim=-1)
    spec = spec[..., : cfg.freq_bins].transpose(1, 2)  # [B, F, T]
    mag = spec.abs()
    gain = cfg.beta * mag.clamp_min(_EPS).pow(cfg.alpha - 1.0)  # beta |c|^alpha / |c|
    spec = spec * torch.where(mag > 0, gain, torch.zeros_like(gain))
    return torch.stack((spec.real, spec.imag), dim=1)


def _overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """[B, T, N] frames -> [B, (T - 1) * hop + N] by overlap-add (N a multiple of hop)."""
    batch, count, size = frames.shape
    parts = size // hop
    out = frames.new_zeros(batch, count + parts - 1, hop)
    chunks = frames.reshape(batch, count, parts, hop)
    for j in range(parts):
        out[:, j : j + count] += chunks[:, :, j]
    return out.reshape(batch, -1)


def synthesis_window(cfg: SpectralConfig, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Hann window divided by the steady-state sum of squared windows shifted by hop."""
    win = _window(cfg, device, dtype)
    parts = cfg.n_fft // cfg.hop_length
    norm = win.pow(2).reshape(parts, cfg.hop_length).sum(0).repeat(parts)
    return win / norm


def spectrogram_to_frames(spec: torch.Tensor, cfg: SpectralConfig) -> torch.Tensor:
    """Compressed spectrogram -> windowed time frames ready for overlap-add.

    Args:
        spec: [batch, 2, freq_bins, frames].
        cfg: spectral settings.

    Returns:
        [batch, frames, n_fft]: decompressed, inverse-FFT'd frames times the synthesis window.
    """
    spec = spec.float()
    comp = torch.complex(spec[:, 0], spec[:, 1])  # [B, F, T]
    mag = comp.abs()
    scale = (mag.clamp_min(_EPS) / cfg.beta).pow(1.0 / cfg.alpha) / mag.clamp_min(_EPS)
    comp = comp * torch.where(mag > 0, scale, torch.zeros_like(scale))
    comp = torch.nn.functional.pad(comp, (0, 0, 0, cfg.n_fft // 2 + 1 - cfg.freq_bins))
    frames = torch.fft.irfft(comp.transpose(1, 2), n=cfg.n_fft, dim=-1)  # [B, T, n_fft]
    return frames * synthesis_window(cfg, spec.device, frames.dtype)


def overlap_add_into(out: torch.Tensor, frames: torch.Tensor, start_frame: int, hop: int) -> None:
    """Add [B, T, n_fft] frames into the waveform `out` [B, samples] from frame `start_frame` on."""
    added = _overlap_add(frames, hop)
    begin = start_frame * hop
    out[:, begin : begin + added.shape[-1]] += added


def from_spectrogram(spec: torch.Tensor, cfg: SpectralConfig, clamp: bool = True) -> torch.Tensor:
    """Compressed spectrogram -> waveform (inverse of `to_spectrogram`), clamped to [-1, 1].

    Args:
        spec: [batch, 2, freq_bins, frames].
        cfg: spectral settings.
        clamp: clamp to [-1, 1] (off for training losses, which need gradients everywhere).

    Returns:
        [batch, (frames - 1) * hop + n_fft] waveform. The first and last n_fft - hop samples are
        covered by fewer frames and are attenuated; callers pad to keep them out of the signal.
    """
    wave = _overlap_add(spectrogram_to_frames(spec, cfg), cfg.hop_length)
    return wave.clamp(-1.0, 1.0) if clamp else wave
