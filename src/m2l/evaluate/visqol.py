"""ViSQOL (audio mode) through the optional `visqol-python` package.

ViSQOL (Chinen et al., "ViSQOL v3: An Open Source Production Ready Objective Speech and Audio
Metric", 2020) compares a degraded signal with its reference on a gammatone spectrogram and maps
the similarity to a MOS-LQO score between 1 and 5; in audio mode it works at 48 kHz, and its
support-vector mapping tops out near 4.73 for a perfect copy. m2l does not implement ViSQOL: it
calls the `visqol-python` package (pure Python, Apache-2.0; `pip install "m2l[visqol]"`), which
must be installed for `visqol` to work.
"""

from __future__ import annotations

import functools
import numbers

import torch

from m2l.audio.io import resample
from m2l.errors import M2LError
from m2l.evaluate.vggish import check_waveform

VISQOL_RATE = 48000
"""Sample rate of ViSQOL's audio mode; inputs are resampled to it."""


class VisqolSignalError(M2LError):
    """ViSQOL itself failed on a pair of signals (e.g. one too short for its patches): a
    property of that item, unlike a missing package."""


_INSTALL_HINT = 'ViSQOL needs the optional package visqol-python: pip install "m2l[visqol]"'


@functools.lru_cache(maxsize=1)
def _api() -> object:
    """A ViSQOL API object created in audio mode (built once, then reused)."""
    try:
        from visqol import VisqolApi
    except ImportError:
        raise M2LError(_INSTALL_HINT) from None
    api = VisqolApi()
    api.create(mode="audio")
    return api


def _mono(audio: torch.Tensor, what: str) -> torch.Tensor:
    """Validate a waveform [samples] or [channels, samples] and average it to mono float32."""
    wave = check_waveform(audio, f"visqol: {what}", channels=True)
    return (wave.mean(dim=0) if wave.dim() == 2 else wave).to(torch.float32)


def visqol(estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int) -> float:
    """ViSQOL MOS-LQO of `estimate` against `reference` (audio mode).

    Both signals are averaged to mono and resampled to 48 kHz; ViSQOL aligns them itself, so
    their lengths may differ slightly. Scores near 4.7 mean indistinguishable, 1 is worst.
    ViSQOL is slow (seconds per clip of a few seconds on one core).

    Args:
        estimate: [samples] or [channels, samples] decoded audio at `sample_rate`.
        reference: [samples] or [channels, samples] original audio at `sample_rate`.
        sample_rate: sample rate of both signals in Hz.

    Returns:
        The MOS-LQO score as a float (1 .. 5).

    Raises:
        M2LError: When visqol-python is not installed, an input is not a finite real waveform,
            the rate is not a positive integer, or ViSQOL fails on the signals.
    """
    est = _mono(estimate, "estimate")
    ref = _mono(reference, "reference")
    ok = isinstance(sample_rate, numbers.Integral) and not isinstance(sample_rate, bool)
    if not ok or int(sample_rate) <= 0:
        raise M2LError(f"visqol: sample rate must be a positive integer, got {sample_rate!r}")
    api = _api()
    est = resample(est, int(sample_rate), VISQOL_RATE).to(torch.float64).numpy()
    ref = resample(ref, int(sample_rate), VISQOL_RATE).to(torch.float64).numpy()
    try:
        result = api.measure_from_arrays(ref, est, VISQOL_RATE)
    except Exception as err:  # the package's own failure (e.g. signals too short): one line
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise VisqolSignalError(f"visqol: ViSQOL failed on these signals ({reason})") from None
    return float(result.moslqo)
