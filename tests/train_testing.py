"""Helpers for the trainer tests: synthetic audio folders and a fast training config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import soundfile as sf

from m2l.train.config import TRAIN_PRESETS, TrainConfig
from m2l.train.data import parse_source
from m2l.train.loop import Trainer


def _tone(seconds: float, rate: int, freq: float, seed: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(seed)
    wave = sum(0.3 / k * np.sin(2 * np.pi * freq * k * t + rng.uniform(0, 6)) for k in (1, 2, 3))
    envelope = 0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t) ** 2
    return (wave * envelope + 0.01 * rng.standard_normal(t.size)).astype(np.float32)


def make_audio_dirs(root: Path) -> dict[str, Path]:
    """train/: four tonal clips (one stereo at 22.05 kHz, one in a sub-folder) and a corrupt
    file; val/: one clip; silent/: digital silence."""
    train, val, silent = root / "train", root / "val", root / "silent"
    (train / "sub").mkdir(parents=True)
    val.mkdir()
    silent.mkdir()
    sf.write(train / "a.wav", _tone(3.0, 44100, 220.0, 0), 44100)
    sf.write(train / "b.flac", _tone(2.5, 44100, 330.0, 1), 44100)
    stereo = np.stack([_tone(3.0, 22050, 440.0, 2), _tone(3.0, 22050, 445.0, 3)], axis=1)
    sf.write(train / "sub" / "c.wav", stereo, 22050)
    sf.write(train / "sub" / "short.wav", _tone(0.3, 44100, 550.0, 4), 44100)
    (train / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    sf.write(val / "v.wav", _tone(3.0, 44100, 262.0, 5), 44100)
    sf.write(silent / "s.wav", np.zeros(44100 * 2, dtype=np.float32), 44100)
    return {"train": train, "val": val, "silent": silent}


def fast_config(**changes: object) -> TrainConfig:
    """The tiny preset shrunk to seconds: batch 4, short validation, no worker processes."""
    base = dataclasses.replace(
        TRAIN_PRESETS["tiny"](),
        batch_size=4,
        steps=6,
        warmup_steps=2,
        val_every=1000,
        ckpt_every=1000,
        val_items=2,
        val_seconds=1.0,
        val_audio=1,
        workers=0,
        log_every=1,
        tensorboard=False,
    )
    return dataclasses.replace(base, **changes)


def make_trainer(audio_dirs: dict[str, Path], run: Path, cfg: TrainConfig, **kwargs: object) -> Trainer:
    """A CPU trainer on the train/ folder with val/ for validation, no progress bar."""
    return Trainer(
        cfg,
        [parse_source(str(audio_dirs["train"]))],
        run,
        val_sources=[parse_source(str(audio_dirs["val"]))],
        device="cpu",
        show_progress=False,
        **kwargs,
    )


def train_argv(audio_dirs: dict[str, Path], run: Path, *sets: str, data: str = "train") -> list[str]:
    """`m2l train tiny` arguments for a seconds-long CPU run into `run`, plus `--set` each of `sets`."""
    argv = ["train", "tiny", "--data", str(audio_dirs[data]), "--val", str(audio_dirs["val"])]
    argv += ["--out", str(run), "--no-progress", "--device", "cpu"]
    fixed = ("batch_size=2", "workers=0", "val_items=1", "val_seconds=1", "tensorboard=false", "log_every=1")
    return argv + [arg for item in (*fixed, *sets) for arg in ("--set", item)]
