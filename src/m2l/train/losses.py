"""Auxiliary training losses on waveforms (the consistency loss lives in `m2l.consistency.loss`)."""

from __future__ import annotations

import math

import torch

from m2l.evaluate.metrics import stft_complex, stft_magnitude

SPECTRAL_RESOLUTIONS: tuple[int, ...] = (256, 512, 1024, 2048)
"""FFT sizes of `multires_spectral_loss` (hop = n_fft / 4)."""


def multires_spectral_loss(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    ffts: tuple[int, ...] = SPECTRAL_RESOLUTIONS,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Phase-invariant multi-resolution STFT loss, differentiable in `estimate`.

    At each FFT size: mean |log(|S_est| + eps) - log(|S_ref| + eps)| plus the spectral
    convergence ||S_ref| - |S_est||_F / ||S_ref||_F; averaged over the resolutions.

    Args:
        estimate: [N, samples] waveforms.
        reference: [N, samples] target waveforms.
        ffts: FFT sizes.
        eps: magnitude floor of the log term.

    Returns:
        [N] losses (float32).
    """
    est, ref = estimate.float(), reference.float().detach()
    total = est.new_zeros(est.shape[0])
    for n_fft in ffts:
        s_est = stft_magnitude(est, n_fft, n_fft // 4)
        s_ref = stft_magnitude(ref, n_fft, n_fft // 4)
        log_term = ((s_est + eps).log() - (s_ref + eps).log()).abs().mean((-2, -1))
        conv = (s_ref - s_est).flatten(1).norm(dim=1) / s_ref.flatten(1).norm(dim=1).clamp_min(eps)
        total = total + log_term + conv
    return total / len(ffts)


def multires_complex_loss(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    ffts: tuple[int, ...] = SPECTRAL_RESOLUTIONS,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Phase-aware loss: complex multi-resolution STFT L1 plus waveform L1, each relative.

    At each FFT size: mean(|Re(S_est - S_ref)| + |Im(S_est - S_ref)|) / mean(|S_ref|), averaged
    over the resolutions; plus mean |est - ref| / mean |ref| on the waveform. Relative terms
    weigh quiet and loud items alike; unlike `multires_spectral_loss` they score the phase.

    Args:
        estimate: [N, samples] waveforms.
        reference: [N, samples] target waveforms.
        ffts: FFT sizes (hop = n_fft / 4).
        eps: floor of the normalisers.

    Returns:
        [N] losses (float32).
    """
    est, ref = estimate.float(), reference.float().detach()
    total = est.new_zeros(est.shape[0])
    for n_fft in ffts:
        diff = stft_complex(est, n_fft, n_fft // 4) - stft_complex(ref, n_fft, n_fft // 4)
        scale = stft_magnitude(ref, n_fft, n_fft // 4).mean((-2, -1)).clamp_min(eps)
        total = total + (diff.real.abs() + diff.imag.abs()).mean((-2, -1)) / scale
    wave = (est - ref).abs().mean(-1) / ref.abs().mean(-1).clamp_min(eps)
    return total / len(ffts) + wave


def multires_coherence_loss(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    ffts: tuple[int, ...] = SPECTRAL_RESOLUTIONS,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Phase loss that cannot be lowered by playing back quieter: 1 - the magnitude-weighted
    phase agreement of the two STFTs, Re(sum S_est conj(S_ref)) / sum |S_est| |S_ref|.

    The ratio does not change when `estimate` is scaled, so unlike the L1 of
    `multires_complex_loss` (whose minimiser under phase uncertainty is a quieter decode) it
    scores only where each bin's phase points: 0 when every phase agrees, 1 for unrelated
    phases on average, 2 for opposite ones; loud bins count most. Averaged over the resolutions.

    Args:
        estimate: [N, samples] waveforms.
        reference: [N, samples] target waveforms.
        ffts: FFT sizes (hop = n_fft / 4).
        eps: floor of the normaliser.

    Returns:
        [N] losses in [0, 2] (float32).
    """
    est, ref = estimate.float(), reference.float().detach()
    total = est.new_zeros(est.shape[0])
    for n_fft in ffts:
        s_est, s_ref = (stft_complex(x, n_fft, n_fft // 4).flatten(1) for x in (est, ref))
        agree = (s_est * s_ref.conj()).real.sum(-1)
        total = total + 1 - agree / (s_est.abs() * s_ref.abs()).sum(-1).clamp_min(eps)
    return total / len(ffts)


LEVEL_BANDS = 8
"""Log-spaced frequency bands of `band_level_loss` (from 40 Hz at 44.1 kHz to Nyquist)."""


def band_level_loss(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    n_fft: int = 2048,
    bands: int = LEVEL_BANDS,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Level loss: mean |log10 E_est - log10 E_ref| over frames and `bands` log-spaced bands,
    E the band's energy (sum of squared STFT magnitudes, hop n_fft / 4).

    Unlike the per-bin log magnitudes of `multires_spectral_loss`, whose minimiser under
    uncertainty is each bin's median, band energies are dominated by the loud bins, so a decode
    that plays back quieter pays for it (10x per decade of energy, i.e. per 10 dB).

    Args:
        estimate: [N, samples] waveforms.
        reference: [N, samples] target waveforms.
        n_fft: FFT size.
        bands: number of bands.
        eps: energy floor.

    Returns:
        [N] losses (float32).
    """
    est, ref = estimate.float(), reference.float().detach()
    bins = n_fft // 2 + 1
    edges = torch.unique(torch.logspace(0, math.log10(bins), bands + 1).round().long().clamp(1, bins))
    edges[0] = 0  # the lowest band starts at DC
    total = est.new_zeros(est.shape[0])
    power = [stft_magnitude(x, n_fft, n_fft // 4).square() for x in (est, ref)]
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        e_est, e_ref = (p[:, lo:hi].sum(1) for p in power)  # [N, frames]
        total = total + ((e_est + eps).log10() - (e_ref + eps).log10()).abs().mean(-1)
    return total / (len(edges) - 1)
