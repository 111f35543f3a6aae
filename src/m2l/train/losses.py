"""Auxiliary training losses on waveforms (the consistency loss lives in `m2l.consistency.loss`)."""

from __future__ import annotations

import torch

from m2l.evaluate.metrics import stft_magnitude

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
