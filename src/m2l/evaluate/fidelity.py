"""Fidelity a listener notices and ViSQOL does not: playback level and the stereo image.

ViSQOL scores the mono mix after level alignment, so a reconstruction that plays back quieter, or
whose left and right channels no longer agree, can score well. These measures see both:

- level difference: 10 log10(energy of the reconstruction / energy of the original), over every
  channel and sample, in dB (negative: quieter);
- L/R correlation: the Pearson correlation of the (zero-mean) left and right channels, 1 for a
  dual-mono file, about 0 for unrelated channels;
- side/mid energy: 10 log10(E[S^2] / E[M^2]) with M = (L + R) / 2 and S = (L - R) / 2, in dB: how
  wide the image is (very negative for a centred source);
- L/R balance error: where each part of the spectrum sits between the speakers. Per octave band
  and STFT frame, the left share of the energy E_L / (E_L + E_R) (1: hard left, 0.5: centred);
  the error is the mean |share(reconstruction) - share(original)| weighted by the original's
  band energy. 0 keeps every band where it was; 0.5 brings a hard-panned source back centred.
  Correlation and side/mid cannot see that: a hard-left source decoded into both channels with
  unrelated phases keeps both.

All functions compute in float64 and return Python floats (None where a value is undefined: a
silent channel has no correlation, a silent mid no side/mid ratio).
"""

from __future__ import annotations

import math

import torch

from m2l.errors import M2LError

SILENCE = 1e-12
"""Mean square below which a signal counts as silent."""

BALANCE_FFT = 2048  # STFT of the balance error (hop a quarter of it)
BALANCE_BAND_EDGES_HZ = (100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0, 12800.0)
"""Band edges of the balance error: octaves from 100 Hz, everything above 12.8 kHz one band."""
BALANCE_CHUNK = 1 << 20  # samples per STFT piece, so that long files take bounded memory


def _energy_db(numerator: torch.Tensor, denominator: torch.Tensor) -> float | None:
    num, den = float(numerator.double().square().mean()), float(denominator.double().square().mean())
    if den < SILENCE:
        return None
    return 10.0 * math.log10(max(num, SILENCE) / den)


def level_difference_db(estimate: torch.Tensor, reference: torch.Tensor) -> float | None:
    """Energy of `estimate` over that of `reference` in dB, both [channels, samples] (None when
    the reference is silent)."""
    if estimate.shape != reference.shape:
        raise M2LError(
            f"level difference: shapes differ, {tuple(estimate.shape)} vs {tuple(reference.shape)}"
        )
    return _energy_db(estimate, reference)


def lr_correlation(wave: torch.Tensor) -> float | None:
    """Pearson correlation of the two channels of a stereo `wave` [2, samples] (None if either
    channel is silent)."""
    left, right = (c - c.mean() for c in wave.double())
    power = float(left.square().mean()) * float(right.square().mean())
    if power < SILENCE**2:
        return None
    return float((left * right).mean()) / math.sqrt(power)


def side_to_mid_db(wave: torch.Tensor) -> float | None:
    """Side energy over mid energy of a stereo `wave` [2, samples] in dB (None for a silent mid)."""
    mid, side = (wave[0] + wave[1]) / 2, (wave[0] - wave[1]) / 2
    return _energy_db(side, mid)


def _band_energies(wave: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Energy per channel, band and frame of `wave` [2, samples] -> [2, bands, frames] (float64)."""
    hop = BALANCE_FFT // 4
    if wave.shape[-1] < BALANCE_FFT:  # shorter than one frame: one zero-padded frame
        wave = torch.nn.functional.pad(wave, (0, BALANCE_FFT - wave.shape[-1]))
    window = torch.hann_window(BALANCE_FFT, dtype=torch.float64)
    spec = torch.stft(wave.double(), BALANCE_FFT, hop, window=window, center=False, return_complex=True)
    power = spec.real.square() + spec.imag.square()  # [2, bins, frames]
    hz = torch.arange(power.shape[1], dtype=torch.float64) * sample_rate / BALANCE_FFT
    band = torch.bucketize(hz, torch.tensor(BALANCE_BAND_EDGES_HZ, dtype=torch.float64))
    out = torch.zeros(2, len(BALANCE_BAND_EDGES_HZ) + 1, power.shape[-1], dtype=torch.float64)
    return out.index_add_(1, band, power)


def balance_error(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> float | None:
    """L/R balance error of a stereo reconstruction (see the module doc), in [0, 1].

    Args:
        estimate: [2, samples] reconstruction.
        reference: [2, samples] original.
        sample_rate: their rate in Hz (sets the bands).

    Returns:
        The energy-weighted mean change of the left share per band and frame; None when the
        original is silent.
    """
    if estimate.shape != reference.shape or reference.shape[0] != 2:
        raise M2LError(
            f"balance error: needs two stereo signals of one shape, got {tuple(estimate.shape)} "
            f"and {tuple(reference.shape)}"
        )
    weighted = total = 0.0
    tiny = SILENCE * BALANCE_FFT  # a band silent in the estimate counts as centred
    # pieces overlap by a frame less a hop: each frame of the whole signal is scored once
    step = BALANCE_CHUNK - (BALANCE_FFT - BALANCE_FFT // 4)
    for start in range(0, max(reference.shape[-1] - BALANCE_FFT, 0) + 1, step):
        ref = _band_energies(reference[:, start : start + BALANCE_CHUNK], sample_rate)
        est = _band_energies(estimate[:, start : start + BALANCE_CHUNK], sample_rate)
        weight = ref.sum(0)
        share_ref = ref[0] / weight.clamp_min(tiny)
        share_est = (est[0] + tiny) / (est.sum(0) + 2 * tiny)
        weighted += float(((share_est - share_ref).abs() * weight).sum())
        total += float(weight.sum())
    if total < SILENCE * reference.shape[-1]:
        return None
    return weighted / total


def fidelity_scores(
    estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int
) -> dict[str, float | None]:
    """Level and stereo-image scores of one reconstruction.

    Args:
        estimate: [channels, samples] reconstruction.
        reference: [channels, samples] original.
        sample_rate: their rate in Hz.

    Returns:
        "level_db" (see `level_difference_db`); for stereo items also "lr_correlation" and
        "lr_correlation_original", "lr_correlation_error" (their absolute difference),
        "side_mid_change_db" (the reconstruction's side/mid energy minus the original's) and
        "balance_error" (see `balance_error`); these are None for mono items.
    """
    scores: dict[str, float | None] = {
        "level_db": level_difference_db(estimate, reference),
        "lr_correlation": None,
        "lr_correlation_original": None,
        "lr_correlation_error": None,
        "side_mid_change_db": None,
        "balance_error": None,
    }
    if reference.shape[0] != 2:
        return scores
    ours, theirs = lr_correlation(estimate), lr_correlation(reference)
    scores["lr_correlation"], scores["lr_correlation_original"] = ours, theirs
    if ours is not None and theirs is not None:
        scores["lr_correlation_error"] = abs(ours - theirs)
    ours_sm, theirs_sm = side_to_mid_db(estimate), side_to_mid_db(reference)
    if ours_sm is not None and theirs_sm is not None:
        scores["side_mid_change_db"] = ours_sm - theirs_sm
    scores["balance_error"] = balance_error(estimate, reference, sample_rate)
    return scores
