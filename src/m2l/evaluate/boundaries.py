"""Chunk-boundary analysis: is the reconstruction worse where the codec stitches pieces together?

Where the seams are, in samples of the original clip, is the codec's to say
(`Codec.seam_positions`; the codec pads `default_left_pad` samples before the clip, see
`m2l.codec`):

- v2 (`Codec2`): chunks are encoded independently and decoded one after the other, so there is a
  seam at every chunk start t * samples_per_unit - left_pad, t = 1 .. chunks - 1.
- v1 (`Codec1`): long audio is processed in windows of `codec.window` latents that are cross-faded
  around their boundaries; the seams are the window starts (`m2l.codec_v1.plan_windows`) times
  samples_per_unit, minus left_pad. Clips shorter than one window have none.

Error per frame: log-mel L1 error, |log10(mel_ref + 1e-5) - log10(mel_est + 1e-5)| averaged over
mel bands and channels, with the framing of `m2l.evaluate.metrics.stft_magnitude` (uncentred
frames of n_fft = 2048 with hop 512, 64 Slaney mel bands). A frame is a boundary frame when its
centre (k * hop + n_fft / 2) lies within `radius` samples (`RADIUS` unless given; 2048 samples
are 46 ms at 44.1 kHz) of a seam, an interior frame otherwise. The ratio is mean boundary error /
mean interior error: about 1 when seams are inaudible, above 1 when they add error. It is None
when the clip has no seam, or no interior frame.
"""

from __future__ import annotations

from typing import Any

import torch

from m2l.codec import Codec
from m2l.evaluate.metrics import mel_filterbank, stft_magnitude

N_FFT, HOP, N_MELS = 2048, 512, 64
RADIUS = 2048
LOG_FLOOR = 1e-5


def boundary_spacing(codec: Codec) -> int:
    """Samples between two seams of `codec` (a chunk for v2, a window of latents for v1)."""
    return codec.seam_spacing


def boundary_positions(codec: Codec, samples: int) -> list[int]:
    """Seams inside a clip of `samples` samples, as sample offsets in (0, samples)."""
    return codec.seam_positions(samples)


def frame_errors(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Log-mel L1 error per STFT frame, averaged over bands and channels.

    Args:
        estimate: [channels, samples] reconstruction.
        reference: [channels, samples] original.
        sample_rate: rate of both in Hz.

    Returns:
        [frames] float64 errors; frame k is centred on sample k * HOP + N_FFT / 2.
    """
    bank = mel_filterbank(sample_rate, N_FFT, N_MELS, dtype=torch.float64)
    mel_est = bank @ stft_magnitude(estimate.to(torch.float64), N_FFT, HOP)
    mel_ref = bank @ stft_magnitude(reference.to(torch.float64), N_FFT, HOP)
    error = (torch.log10(mel_ref + LOG_FLOOR) - torch.log10(mel_est + LOG_FLOOR)).abs()
    return error.mean(dim=(0, 1))


def boundary_mask(frames: int, boundaries: list[int], radius: int = RADIUS) -> torch.Tensor:
    """[frames] bool: True for frames whose centre is within `radius` samples of a boundary."""
    centres = torch.arange(frames, dtype=torch.float64) * HOP + N_FFT / 2
    mask = torch.zeros(frames, dtype=torch.bool)
    for b in boundaries:
        mask |= (centres - b).abs() <= radius
    return mask


def boundary_analysis(
    estimate: torch.Tensor,
    reference: torch.Tensor,
    sample_rate: int,
    boundaries: list[int],
    radius: int = RADIUS,
) -> dict[str, Any]:
    """Per-item error near seams vs elsewhere.

    Args:
        estimate: [channels, samples] reconstruction.
        reference: [channels, samples] original.
        sample_rate: rate of both in Hz.
        boundaries: seam positions in samples (`boundary_positions`).
        radius: frames whose centre is this close to a seam (in samples) are boundary frames.

    Returns:
        {"boundaries": seam count, "boundary_frames", "interior_frames", "boundary_error",
        "interior_error" (mean frame errors, None without such frames), "ratio"
        (boundary_error / interior_error, None when either is missing or the interior is exact)}.
    """
    errors = frame_errors(estimate, reference, sample_rate)
    mask = boundary_mask(errors.shape[0], boundaries, radius)
    near, far = errors[mask], errors[~mask]
    b_err = float(near.mean()) if near.numel() else None
    i_err = float(far.mean()) if far.numel() else None
    ratio = b_err / i_err if b_err is not None and i_err else None
    return {
        "boundaries": len(boundaries),
        "boundary_frames": int(near.numel()),
        "interior_frames": int(far.numel()),
        "boundary_error": b_err,
        "interior_error": i_err,
        "ratio": ratio,
    }


def pooled_ratio(analyses: list[dict[str, Any]]) -> float | None:
    """Boundary/interior ratio over all frames of several items (frame-weighted means)."""
    b_sum = sum(a["boundary_error"] * a["boundary_frames"] for a in analyses if a["boundary_frames"])
    i_sum = sum(a["interior_error"] * a["interior_frames"] for a in analyses if a["interior_frames"])
    b_n = sum(a["boundary_frames"] for a in analyses)
    i_n = sum(a["interior_frames"] for a in analyses)
    if not b_n or not i_n or i_sum == 0:
        return None
    return (b_sum / b_n) / (i_sum / i_n)
