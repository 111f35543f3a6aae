"""Helpers for the `m2l` command line tests: tones on disk, running `main`, damaged latent files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from m2l_testing import flip_bit_in_value, rewrite_header, sine

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


def without_untrained_warning(err: str) -> str:
    """`err` without the warning of a model that gives audio back near silence ("is it
    trained?"), which the tiny random checkpoint draws from `m2l reconstruct`."""
    return "".join(line for line in err.splitlines(keepends=True) if "(is it trained?)" not in line)


def bad_latent_files(capsys: pytest.CaptureFixture, tmp_path: Path, model: list[str]) -> dict[Path, str]:
    """A good latent file of the tiny model, and copies of it: one with a bit flipped in its
    header, others whose (resealed) metadata values are malformed -> {name: expected fragment}."""
    src = write_tone(tmp_path / "audio" / "good.wav", seconds=0.3)
    assert run(capsys, "encode", src, "-o", tmp_path, *model)[0] == 0
    good = tmp_path / "good.m2l"
    cases = {
        "tampered.m2l": ({}, "metadata does not match its checksum"),
        "rate.m2l": ({"sample_rate": "44100.5"}, "sample_rate"),
        "channels.m2l": ({"channels": "one"}, "channels"),
        "length.m2l": ({"length": "-1"}, "length"),
        "nested.m2l": ({"extra": "[" * 100_000 + "]" * 100_000}, "extra"),
        "missing.m2l": ({}, "left_pad is missing"),
    }
    for name, (changes, _) in cases.items():
        shutil.copy(good, tmp_path / name)
        if name == "tampered.m2l":
            flip_bit_in_value(tmp_path / name, "sample_rate")
        else:
            drop = ("left_pad",) if name == "missing.m2l" else ()
            rewrite_header(tmp_path / name, reseal=True, drop=drop, **changes)
    return {tmp_path / name: fragment for name, (_, fragment) in cases.items()}
