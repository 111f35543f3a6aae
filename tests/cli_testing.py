"""Helpers for the `m2l` command line tests: tones on disk, running `main`, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from m2l.cli import main


def write_tone(
    path: Path, seconds: float = 0.5, rate: int = 44100, channels: int = 1, subtype: str = "PCM_16"
) -> Path:
    t = np.arange(int(round(seconds * rate))) / rate
    data = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), rate, subtype=subtype)
    return path


def run(capsys: pytest.CaptureFixture, *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, name: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("m2l: error: "), err
    assert name in lines[0], err
    assert "Traceback" not in err
