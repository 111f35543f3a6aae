"""Helpers for the `m2l` command line tests: tones on disk and running `main`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from m2l_testing import sine

from m2l.cli import main


def write_tone(
    path: Path, seconds: float = 0.5, rate: int = 44100, channels: int = 1, subtype: str = "PCM_16"
) -> Path:
    """A 0.3-amplitude sine (220 Hz, then 110 Hz higher per channel) written to `path`."""
    freqs = [220 + 110 * c for c in range(channels)]
    data = sine(freqs, seconds, rate=rate, channels=channels, amplitude=0.3, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.T, rate, subtype=subtype)
    return path


def run(capsys: pytest.CaptureFixture, *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err
