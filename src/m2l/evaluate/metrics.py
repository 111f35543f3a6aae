"""Objective distances between a reconstructed waveform and its reference.

Every metric takes `estimate` and `reference` of the same shape [..., samples], works on any
device, computes in float64, and returns one value per leading index, shape [...], in the
floating dtype of `estimate` (float32 when it is an integer tensor). Shapes that differ, or a last
axis with no samples, raise `M2LError`.

STFT framing: frames are not centred (frame k covers samples [hop * k, hop * k + n_fft)), and the
waveform is zero-padded at the end so that the frames cover every sample. A waveform shorter than
n_fft is therefore padded up to one full frame, so short inputs work with any resolution.

The mel scale is Slaney's (linear below 1 kHz at 3 mels per 200 Hz, logarithmic above it, 27 mels
per factor of 6.4), and each triangular filter is scaled to unit area in Hz ("Slaney" norm), so
that a mel band measures spectral density rather than growing with its bandwidth. We prefer it to
the HTK scale (2595 * log10(1 + f / 700)) because its filters are what most published audio-codec
mel distances use.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from m2l.errors import M2LError

STFT_RESOLUTIONS: tuple[tuple[int, int], ...] = ((2048, 512), (1024, 256), (512, 128))
"""Default (n_fft, hop) pairs of `stft_distance`."""

MEL_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((2048, 512, 128), (1024, 256, 64), (512, 128, 32))
"""Default (n_fft, hop, n_mels) triples of `mel_distance`."""

_MEL_HZ_PER_MEL = 200.0 / 3.0  # slope of the linear part of the Slaney scale
_MEL_BREAK_HZ = 1000.0  # where the scale turns logarithmic
_MEL_BREAK = _MEL_BREAK_HZ / _MEL_HZ_PER_MEL  # 15 mels
_MEL_LOG_STEP = math.log(6.4) / 27.0  # natural-log frequency step per mel above the break


def _check_pair(
    estimate: torch.Tensor, reference: torch.Tensor, what: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Size, torch.dtype]:
    """Validate a metric's inputs and flatten them.

    Returns:
        estimate [N, samples] float64, reference [N, samples] float64 (on the estimate's
        device), the leading shape [...] and the dtype of the result.
    """
    est, ref = torch.as_tensor(estimate), torch.as_tensor(reference)
    if est.shape != ref.shape:
        raise M2LError(
            f"{what}: estimate shape {list(est.shape)} differs from reference shape {list(ref.shape)}"
        )
    if est.dim() == 0 or est.shape[-1] == 0:
        raise M2LError(
            f"{what}: expected [..., samples] with at least one sample, got shape {list(est.shape)}"
        )
    if est.is_complex() or ref.is_complex():
        raise M2LError(f"{what}: expected real waveforms, got a complex tensor")
    out_dtype = est.dtype if est.is_floating_point() else torch.float32
    lead, samples = est.shape[:-1], est.shape[-1]
    est = est.detach().reshape(-1, samples).to(torch.float64)
    ref = ref.detach().reshape(-1, samples).to(device=est.device, dtype=torch.float64)
    return est, ref, lead, out_dtype


def _check_resolutions(resolutions: Iterable[Iterable[int]], size: int, what: str) -> list[tuple[int, ...]]:
    """Validate resolution tuples of `size` positive ints with n_fft >= 2 first."""
    checked = []
    for res in resolutions:
        vals = tuple(res)
        ok = len(vals) == size and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in vals
        )
        if not ok or vals[0] < 2:
            raise M2LError(f"{what}: bad resolution {vals!r}; expected {size} positive ints, n_fft >= 2")
        checked.append(tuple(int(v) for v in vals))
    if not checked:
        raise M2LError(f"{what}: no resolutions given")
    return checked


def _check_rate(sample_rate: float, what: str) -> float:
    """Return `sample_rate` as a positive finite float, or raise."""
    ok = isinstance(sample_rate, numbers.Real) and not isinstance(sample_rate, bool)
    if not ok or not math.isfinite(sample_rate) or sample_rate <= 0:
        raise M2LError(f"{what}: sample rate must be a positive number, got {sample_rate!r}")
    return float(sample_rate)


def stft_complex(wave: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Complex STFT with a periodic Hann window, uncentred frames and end zero-padding.

    Args:
        wave: [..., samples] real waveform (any length >= 1; padded up to whole frames).
        n_fft: window and FFT length.
        hop: frame step in samples.

    Returns:
        [..., n_fft // 2 + 1, frames] complex values (complex64 for float32 or ints), with
        frames = 1 + ceil(max(0, samples - n_fft) / hop).
    """
    x = wave if wave.is_floating_point() else wave.to(torch.float32)
    lead, samples = x.shape[:-1], x.shape[-1]
    frames = 1 + max(0, math.ceil((samples - n_fft) / hop))
    padded = F.pad(x.reshape(-1, samples), (0, n_fft + (frames - 1) * hop - samples))
    window = torch.hann_window(n_fft, periodic=True, dtype=x.dtype, device=x.device)
    spec = torch.stft(padded, n_fft, hop_length=hop, window=window, center=False, return_complex=True)
    return spec.reshape(*lead, n_fft // 2 + 1, frames)


def stft_magnitude(wave: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """|`stft_complex`|: [..., n_fft // 2 + 1, frames] magnitudes in the dtype of `wave`
    (float for ints)."""
    return stft_complex(wave, n_fft, hop).abs()


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant signal-to-distortion ratio in dB over the last axis.

    Both signals are made zero-mean; the reference is scaled by the least-squares gain
    a = <est, ref> / (<ref, ref> + eps) (possibly negative, so a sign flip is forgiven too) and
    SI-SDR = 10 log10((|a ref|^2 + eps) / (|est - a ref|^2 + eps)).

    Silence: with a silent (or constant) reference the target is zero, so the value is
    10 log10(eps / (|est|^2 + eps)): 0 dB when the estimate is silent too, and a large negative
    but finite number otherwise. No NaN or inf is ever returned for finite inputs.

    Args:
        estimate: [..., samples] reconstructed waveform.
        reference: [..., samples] original waveform (same shape).
        eps: positive stabiliser added to the energies.

    Returns:
        [...] SI-SDR in dB (higher is better).
    """
    if not (isinstance(eps, numbers.Real) and eps > 0):
        raise M2LError(f"si_sdr: eps must be a positive number, got {eps!r}")
    est, ref, lead, out_dtype = _check_pair(estimate, reference, "si_sdr")
    est = est - est.mean(dim=-1, keepdim=True)
    ref = ref - ref.mean(dim=-1, keepdim=True)
    gain = (est * ref).sum(dim=-1, keepdim=True) / (ref.square().sum(dim=-1, keepdim=True) + eps)
    target = gain * ref
    ratio = (target.square().sum(dim=-1) + eps) / ((est - target).square().sum(dim=-1) + eps)
    return (10.0 * torch.log10(ratio)).reshape(lead).to(out_dtype)


def stft_distance(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    *,
    resolutions: Iterable[tuple[int, int]] = STFT_RESOLUTIONS,
    eps: float = 1e-7,
) -> torch.Tensor:
    """Multi-resolution STFT distance (spectral convergence + mean absolute log-magnitude error).

    For each (n_fft, hop): || |S_ref| - |S_est| ||_F / (|| |S_ref| ||_F + eps) plus
    mean |log(|S_ref| + eps) - log(|S_est| + eps)| over bins and frames; the result is the mean over
    resolutions. Framing follows the module notes (uncentred Hann frames, end zero-padding, so
    inputs shorter than n_fft work). Identical inputs give exactly 0.

    Args:
        estimate: [..., samples] reconstructed waveform.
        reference: [..., samples] original waveform (same shape).
        resolutions: (n_fft, hop) pairs.
        eps: positive magnitude floor.

    Returns:
        [...] distance (lower is better).
    """
    est, ref, lead, out_dtype = _check_pair(estimate, reference, "stft_distance")
    checked = _check_resolutions(resolutions, 2, "stft_distance")
    total = torch.zeros(est.shape[0], dtype=torch.float64, device=est.device)
    for n_fft, hop in checked:
        mag_est = stft_magnitude(est, n_fft, hop).flatten(1)
        mag_ref = stft_magnitude(ref, n_fft, hop).flatten(1)
        convergence = (mag_ref - mag_est).norm(dim=1) / (mag_ref.norm(dim=1) + eps)
        log_error = (torch.log(mag_ref + eps) - torch.log(mag_est + eps)).abs().mean(dim=1)
        total = total + convergence + log_error
    return (total / len(checked)).reshape(lead).to(out_dtype)


def hz_to_mel(freq: torch.Tensor | float) -> torch.Tensor:
    """Frequency in Hz -> Slaney mels (float64, same shape)."""
    f = torch.as_tensor(freq, dtype=torch.float64)
    above = _MEL_BREAK + torch.log(f.clamp(min=_MEL_BREAK_HZ) / _MEL_BREAK_HZ) / _MEL_LOG_STEP
    return torch.where(f < _MEL_BREAK_HZ, f / _MEL_HZ_PER_MEL, above)


def mel_to_hz(mel: torch.Tensor | float) -> torch.Tensor:
    """Slaney mels -> frequency in Hz (float64, same shape); the inverse of `hz_to_mel`."""
    m = torch.as_tensor(mel, dtype=torch.float64)
    above = _MEL_BREAK_HZ * torch.exp(_MEL_LOG_STEP * (m.clamp(min=_MEL_BREAK) - _MEL_BREAK))
    return torch.where(m < _MEL_BREAK, m * _MEL_HZ_PER_MEL, above)


@functools.lru_cache(maxsize=32)
def _mel_bank(sample_rate: float, n_fft: int, n_mels: int, f_min: float, f_max: float) -> torch.Tensor:
    """Cached float64 [n_mels, n_fft // 2 + 1] Slaney filterbank (arguments already validated)."""
    bin_hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (sample_rate / n_fft)
    mel_edges = torch.linspace(
        float(hz_to_mel(f_min)), float(hz_to_mel(f_max)), n_mels + 2, dtype=torch.float64
    )
    edges = mel_to_hz(mel_edges)
    low, centre, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bin_hz - low) / (centre - low)
    falling = (high - bin_hz) / (high - centre)
    triangles = torch.minimum(rising, falling).clamp(min=0.0)
    return triangles * (2.0 / (high - low))


def mel_filterbank(
    sample_rate: float,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Triangular Slaney-scale mel filters with unit area in Hz.

    Filter m rises linearly from edge m to a peak of 2 / (edge[m + 2] - edge[m]) at edge m + 1 and
    falls to zero at edge m + 2, where the n_mels + 2 edges are equally spaced in Slaney mels from
    f_min to f_max. Filters narrower than the FFT bin spacing may be all zero (too many mels for
    n_fft).

    Args:
        sample_rate: sample rate in Hz.
        n_fft: FFT length (bins are k * sample_rate / n_fft, k = 0 .. n_fft // 2).
        n_mels: number of filters.
        f_min: lowest edge in Hz.
        f_max: highest edge in Hz (default sample_rate / 2).
        dtype: dtype of the result.

    Returns:
        [n_mels, n_fft // 2 + 1] non-negative weights; mel = weights @ magnitude.
    """
    rate = _check_rate(sample_rate, "mel_filterbank")
    _check_resolutions([(n_fft, n_mels)], 2, "mel_filterbank")
    top = rate / 2 if f_max is None else f_max
    if not (
        isinstance(f_min, numbers.Real) and isinstance(top, numbers.Real) and 0 <= f_min < top <= rate / 2
    ):
        raise M2LError(
            f"mel_filterbank: need 0 <= f_min < f_max <= sample_rate / 2, got "
            f"f_min={f_min!r}, f_max={top!r}, sample_rate={sample_rate!r}"
        )
    bank = _mel_bank(rate, int(n_fft), int(n_mels), float(f_min), float(top))
    return bank.to(dtype=dtype, copy=True)


def mel_distance(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    sample_rate: float,
    *,
    resolutions: Iterable[tuple[int, int, int]] = MEL_RESOLUTIONS,
    floor: float = 1e-5,
) -> torch.Tensor:
    """Multi-resolution log-mel L1 distance.

    For each (n_fft, hop, n_mels): magnitude (not power) STFT as in `stft_magnitude`, Slaney mel
    filters from `mel_filterbank` over 0 .. sample_rate / 2, then
    mean |log10(mel_ref + floor) - log10(mel_est + floor)| over mels and frames; the result is the
    mean over resolutions. Inputs shorter than n_fft are zero-padded to one frame.

    Args:
        estimate: [..., samples] reconstructed waveform.
        reference: [..., samples] original waveform (same shape).
        sample_rate: sample rate in Hz.
        resolutions: (n_fft, hop, n_mels) triples.
        floor: positive offset inside the logarithm.

    Returns:
        [...] distance (lower is better; 0 for identical inputs).
    """
    rate = _check_rate(sample_rate, "mel_distance")
    est, ref, lead, out_dtype = _check_pair(estimate, reference, "mel_distance")
    checked = _check_resolutions(resolutions, 3, "mel_distance")
    if not (isinstance(floor, numbers.Real) and floor > 0):
        raise M2LError(f"mel_distance: floor must be a positive number, got {floor!r}")
    total = torch.zeros(est.shape[0], dtype=torch.float64, device=est.device)
    for n_fft, hop, n_mels in checked:
        bank = _mel_bank(rate, n_fft, n_mels, 0.0, rate / 2).to(est.device)
        mel_est = bank @ stft_magnitude(est, n_fft, hop)
        mel_ref = bank @ stft_magnitude(ref, n_fft, hop)
        error = torch.log10(mel_ref + floor) - torch.log10(mel_est + floor)
        total = total + error.abs().flatten(1).mean(dim=1)
    return (total / len(checked)).reshape(lead).to(out_dtype)
