"""Synthetic labelled sets: tones of known pitch played by three harmonic "instruments", and excerpts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from m2l_testing import sine

# program -> (instrument name, family, harmonic amplitudes 1..n)
INSTRUMENTS: dict[int, tuple[str, str, list[float]]] = {
    73: ("flute", "pipe", [1.0]),  # a pure sine
    40: ("violin", "strings", [1.0 / k for k in range(1, 11)]),  # sawtooth-like
    71: ("clarinet", "reed", [1.0 / k if k % 2 else 0.0 for k in range(1, 11)]),  # odd only
}


def _tone(
    pitch: int, harmonics: list[float], sr: int, seconds: float, rng: np.random.Generator
) -> np.ndarray:
    """One note: random level, detune (+-15 cents), phases, decay and a little noise."""
    t = np.arange(int(seconds * sr)) / sr
    f0 = 440.0 * 2 ** ((pitch - 69 + rng.uniform(-0.15, 0.15)) / 12)
    wave = np.zeros_like(t)
    for k, amp in enumerate(harmonics, start=1):
        if amp and k * f0 < sr / 2:
            wave += sine(k * f0, samples=t.size, rate=sr, amplitude=amp, phase=rng.uniform(0, 2 * math.pi))
    wave *= np.exp(-t * rng.uniform(0.5, 4.0)) * np.minimum(1.0, t / 0.01)
    wave = wave / np.abs(wave).max() * rng.uniform(0.1, 0.7)
    return (wave + rng.normal(0, 1e-3, t.shape)).astype(np.float32)


def make_notes(
    data: Path,
    pitches: list[int],
    *,
    seconds: float = 0.3,
    sr: int = 22050,
    per_split: dict[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """Write notes under DATA/notes/ and DATA/notes/manifest.jsonl (paths relative to DATA).

    Every (instrument, pitch) pair gets `per_split[split]` notes in each split.
    """
    per_split = per_split or {"train": 1, "val": 1, "test": 1}
    rng = np.random.default_rng(seed)
    folder = data / "notes"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for program, (name, family, harmonics) in INSTRUMENTS.items():
        for pitch in pitches:
            for split, count in per_split.items():
                for i in range(count):
                    wave = _tone(pitch, harmonics, sr, seconds, rng)
                    rel = f"notes/{name}/{name}-{pitch}-{split}-{i}.wav"
                    (data / rel).parent.mkdir(parents=True, exist_ok=True)
                    sf.write(data / rel, wave, sr)
                    rows.append(
                        {
                            "path": rel,
                            "duration": seconds,
                            "sample_rate": sr,
                            "channels": 1,
                            "licence": "CC0",
                            "source": "synthetic",
                            "program": program,
                            "instrument": name,
                            "family": family,
                            "pitch": pitch,
                            "pitch_class": pitch % 12,
                            "velocity": int(rng.integers(40, 120)),
                            "split": split,
                        }
                    )
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


@pytest.fixture(scope="session")
def small_notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 short notes (3 instruments x 4 pitches x train/val/test): for runs with models."""
    return make_notes(tmp_path_factory.mktemp("small"), [60, 64, 67, 71], seconds=0.25)


@pytest.fixture(scope="session")
def wide_notes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """216 notes (3 instruments x 24 pitches x train/val/test): for the learning check."""
    return make_notes(tmp_path_factory.mktemp("wide"), list(range(60, 84)), seed=1)


def make_excerpts(data: Path, *, seconds: float = 0.5, sr: int = 22050, seed: int = 0) -> Path:
    """Write labelled "excerpts" under DATA/excerpts/ and DATA/excerpts/manifest.jsonl.

    Two keys (C major: a C triad, A minor: an A triad) x two tempo classes (clicks every 0.25 s
    or 0.125 s) x two meters (every 3rd or 4th click loud) in each split, one piece per clip.
    """
    rng = np.random.default_rng(seed)
    folder = data / "excerpts"
    t = np.arange(int(seconds * sr)) / sr
    rows = []
    keys = {"C major": (0, [60, 64, 67]), "A minor": (9, [57, 60, 64])}
    for split in ("train", "val", "test"):
        for key, (tonic, chord) in keys.items():
            for tempo_class, period in enumerate((0.25, 0.125)):
                for meter, group in (("3/4", 3), ("4/4", 4)):
                    wave = sum(0.1 * np.sin(2 * np.pi * 440 * 2 ** ((p - 69) / 12) * t) for p in chord)
                    for n, at in enumerate(np.arange(0, seconds, period)):
                        i = int(at * sr)
                        wave[i : i + 64] += (0.6 if n % group == 0 else 0.2) * rng.uniform(-1, 1, 64)
                    piece = f"p-{split}-{tonic}-{tempo_class}-{group}"
                    rel = f"excerpts/{split}/{piece}/s0.wav"
                    (data / rel).parent.mkdir(parents=True, exist_ok=True)
                    sf.write(data / rel, np.clip(wave, -1, 1).astype(np.float32), sr)
                    rows.append(
                        {
                            "path": rel,
                            "duration": seconds,
                            "sample_rate": sr,
                            "channels": 1,
                            "licence": "CC0",
                            "source": "synthetic",
                            "piece": piece,
                            "split": split,
                            "key": key,
                            "key_mode": key.split()[1],
                            "tonic": tonic,
                            "tempo_bpm": int(60 / period),
                            "tempo_class": tempo_class,
                            "meter": meter,
                            "programs": [1],
                        }
                    )
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return manifest


@pytest.fixture(scope="session")
def small_excerpts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 half-second labelled excerpts (2 keys x 2 tempi x 2 meters x train/val/test)."""
    return make_excerpts(tmp_path_factory.mktemp("excerpts"))
