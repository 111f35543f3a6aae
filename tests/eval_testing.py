"""Helpers for the `m2l eval` tests: short audio items on disk and small random checkpoints."""

from __future__ import annotations

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
