"""Tests for m2l.evaluate.images: hand-made PNG encoding and spectrogram pictures."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from m2l_testing import sine_tensor

from m2l.errors import M2LError
from m2l.evaluate.images import PNG_SIGNATURE, apply_colormap, spectrogram_png, write_png

RATE = 8000


def read_png(path: Path) -> tuple[int, int, np.ndarray]:
    """Parse our PNG files independently: check chunk CRCs, return width, height, pixels [H, W, 3]."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(tag + body) & 0xFFFFFFFF
        chunks.append((tag, body))
        pos += 12 + length
    assert [t for t, _ in chunks][0] == b"IHDR" and chunks[-1] == (b"IEND", b"")
    width, height, depth, colour, comp, filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour, comp, filt, interlace) == (8, 2, 0, 0, 0)
    raw = zlib.decompress(b"".join(body for tag, body in chunks if tag == b"IDAT"))
    assert len(raw) == height * (1 + 3 * width)
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + 3 * width)
    assert np.all(rows[:, 0] == 0)  # filter type None on every row
    return width, height, rows[:, 1:].reshape(height, width, 3)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64) @ np.array([0.2126, 0.7152, 0.0722])


def test_write_png_round_trips_pixels(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    out = write_png(tmp_path / "sub" / "x.png", rgb)
    assert out == tmp_path / "sub" / "x.png"
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    width, height, pixels = read_png(out)
    assert (width, height) == (7, 5)
    np.testing.assert_array_equal(pixels, rgb)
    assert [p.name for p in out.parent.iterdir()] == ["x.png"]  # no temp file left behind


def test_write_png_overwrites_and_rejects_bad_arrays(tmp_path: Path) -> None:
    path = tmp_path / "y.png"
    write_png(path, np.zeros((2, 2, 3), dtype=np.uint8))
    write_png(path, np.full((3, 1, 3), 9, dtype=np.uint8))
    assert read_png(path)[:2] == (1, 3)
    for bad in (
        np.zeros((2, 2, 3), dtype=np.float32),
        np.zeros((2, 2), dtype=np.uint8),
        np.zeros((0, 2, 3), dtype=np.uint8),
    ):
        with pytest.raises(M2LError):
            write_png(tmp_path / "bad.png", bad)
    assert not (tmp_path / "bad.png").exists()


def test_colormap_is_monotonic_in_luminance() -> None:
    colours = apply_colormap(np.linspace(0.0, 1.0, 257))
    assert colours.shape == (257, 3) and colours.dtype == np.uint8
    assert np.all(np.diff(luminance(colours)) > 0)
    np.testing.assert_array_equal(apply_colormap(np.array([-1.0, np.nan])), apply_colormap(np.zeros(2)))


def test_pure_tone_is_brightest_at_its_frequency_row(tmp_path: Path) -> None:
    n_fft, hop, bin_index = 256, 128, 32  # 32 * 8000 / 256 = 1000 Hz, exactly on a bin
    path = tmp_path / "tone.png"
    returned = spectrogram_png(
        sine_tensor(1000.0, samples=2000, rate=RATE), path, sample_rate=RATE, n_fft=n_fft, hop=hop
    )
    width, height, pixels = read_png(path)
    assert (height, width) == (n_fft // 2 + 1, 1 + math.ceil((2000 - n_fft) / hop))
    np.testing.assert_array_equal(pixels, returned)
    row_brightness = luminance(pixels).mean(axis=1)
    assert int(np.argmax(row_brightness)) == (n_fft // 2) - bin_index  # low frequencies at the bottom


def test_height_resamples_frequency_axis(tmp_path: Path) -> None:
    path = tmp_path / "tall.png"
    spectrogram_png(
        sine_tensor(1000.0, samples=2000, rate=RATE), path, sample_rate=RATE, n_fft=256, hop=128, height=64
    )
    width, height, pixels = read_png(path)
    assert height == 64
    expected = (1 - 1000.0 / (RATE / 2)) * (height - 1)  # 47.25
    assert abs(int(np.argmax(luminance(pixels).mean(axis=1))) - expected) <= 1


def test_short_silent_and_stereo_inputs(tmp_path: Path) -> None:
    spectrogram_png(torch.zeros(10), tmp_path / "s.png", sample_rate=RATE, n_fft=64, hop=16)
    _, height, pixels = read_png(tmp_path / "s.png")
    assert height == 33 and pixels.shape[1] == 1
    assert np.all(pixels == apply_colormap(np.zeros(1))[0])  # silence is the darkest colour
    stereo = sine_tensor(1000.0, samples=300, rate=RATE, channels=2).float()
    rgb = spectrogram_png(stereo, tmp_path / "st.png", sample_rate=RATE, n_fft=256, hop=64)
    assert rgb.shape == (129, 2, 3)


def test_spectrogram_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(M2LError, match="expected real audio"):
        spectrogram_png(torch.zeros(1, 2, 3), tmp_path / "a.png", sample_rate=RATE)
    with pytest.raises(M2LError, match="NaN"):
        spectrogram_png(torch.tensor([0.0, float("nan")]), tmp_path / "a.png", sample_rate=RATE)
    with pytest.raises(M2LError, match="db_range"):
        spectrogram_png(torch.zeros(4), tmp_path / "a.png", sample_rate=RATE, db_range=0)
    assert not (tmp_path / "a.png").exists()
