"""Helpers for the trainer tests: synthetic audio folders, a fast training config, trainers, the
`m2l train` command line, and training checkpoints saved without training."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from m2l_testing import MICRO, random_model, sine

from m2l.train.config import TRAIN_PRESETS, TrainConfig
from m2l.train.data import parse_source
from m2l.train.loop import Trainer
from m2l.train.state import EMA, save_state


def _tone(seconds: float, rate: int, freq: float, seed: int) -> np.ndarray:
    """Three harmonics at random phases under a 1.5 Hz swell, plus a little noise (float32)."""
    rng = np.random.default_rng(seed)
    wave = sum(
        sine(freq * k, seconds, rate=rate, amplitude=0.3 / k, phase=rng.uniform(0, 6)) for k in (1, 2, 3)
    )
    envelope = 0.6 + 0.4 * sine(1.5, seconds, rate=rate, amplitude=1.0) ** 2
    return (wave * envelope + 0.01 * rng.standard_normal(wave.size)).astype(np.float32)


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


LEARNING_STEPS = 100


def learning_config(**changes: object) -> TrainConfig:
    """`fast_config` for the learning tests: LEARNING_STEPS steps at a high rate, a short EMA."""
    base = {"steps": LEARNING_STEPS, "lr": 2e-3, "warmup_steps": 10, "ema_decay": 0.95}
    return fast_config(**base, val_items=4, val_seconds=1.0, log_every=50, **changes)


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
    """`m2l train tiny` arguments for a seconds-long CPU run into `run`, plus `--set` each of `sets`
    (a later `--set` of a field wins, so `sets` may change the fixed ones, e.g. batch_size=4)."""
    argv = ["train", "tiny", "--data", str(audio_dirs[data]), "--val", str(audio_dirs["val"])]
    argv += ["--out", str(run), "--no-progress", "--device", "cpu"]
    fixed = ("batch_size=2", "workers=0", "val_items=1", "val_seconds=1", "tensorboard=false", "log_every=1")
    return argv + [arg for item in (*fixed, *sets) for arg in ("--set", item)]


def save_micro_state(path: Path, *, step: int = 1, seed: int = 0, **changes: object) -> dict[str, Any]:
    """A training checkpoint of the micro model (`m2l_testing.MICRO`) written by `save_state`:
    seeded random weights after one AdamW step, an EMA updated once, a few counters.

    Returns the live objects it was saved from (model, ema, optimizer, cfg, counters) and the
    torch RNG state at the time of the save (rng)."""
    model = random_model(MICRO, seed)
    cfg = fast_config(**changes)
    ema = EMA(model, cfg.ema_decay)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    sum(p.square().sum() for p in model.parameters()).backward()
    optimizer.step()
    ema.update(model)
    counters = {"nonfinite": 0, "best_mel": 0.25 + seed}
    rng = torch.get_rng_state()
    save_state(
        path,
        model=model,
        ema=ema,
        optimizer=optimizer,
        scaler=None,
        step=step,
        train_cfg=cfg,
        counters=counters,
    )
    return {"model": model, "ema": ema, "optimizer": optimizer, "cfg": cfg, "counters": counters, "rng": rng}
