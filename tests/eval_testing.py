"""Helpers for the `m2l eval` tests: short audio items on disk and small random checkpoints."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf
from m2l_testing import random_model, sine

RATE = 44100


def tone(seconds: float, freq: float, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A tone with harmonics, a slow envelope and a little noise, [samples, channels] float32."""
    rng = np.random.default_rng(seed)
    wave = sum(sine(freq * k, seconds, rate=RATE, amplitude=0.25 / k) for k in (1, 2, 3))
    wave = wave * (0.6 + 0.4 * sine(2.0, seconds, rate=RATE, amplitude=1.0) ** 2)
    cols = [wave + 0.02 * rng.standard_normal(wave.size) for _ in range(channels)]
    return np.stack(cols, axis=1).astype(np.float32)


def write_items(folder: Path, seconds: float = 1.0) -> list[Path]:
    """Two items: b.wav (mono) and sub/a.flac (stereo); sorted order is b.wav, sub/a.flac."""
    (folder / "sub").mkdir(parents=True, exist_ok=True)
    paths = [folder / "b.wav", folder / "sub" / "a.flac"]
    sf.write(paths[0], tone(seconds, 220.0, 1, seed=0), RATE)
    sf.write(paths[1], tone(seconds, 330.0, 2, seed=1), RATE)
    return paths


def save_random_checkpoint(path: Path, name: str, seed: int = 0) -> Path:
    """An m2l checkpoint of preset `name` with seeded random (non-trivial) weights."""
    from m2l.formats import save_checkpoint

    model = random_model(name, seed)
    save_checkpoint(path, model.state_dict(), model.cfg)
    return path


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
