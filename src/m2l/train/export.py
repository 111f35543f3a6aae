"""Export a training checkpoint's EMA weights as an inference checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from m2l.formats import save_checkpoint
from m2l.train.state import read_state


def pick_checkpoint(source: Path) -> Path:
    """A training checkpoint file, or a run folder's best checkpoint (else its latest)."""
    from m2l.loading import run_checkpoint

    return source if source.is_file() else run_checkpoint(source)


def export(source: Path, out: Path, *, force: bool = False, half: bool = False) -> str:
    """Write the EMA weights + model config of `source` to `out` (float16 with `half`); returns
    the new model id."""
    from m2l.loading import load_model

    path = pick_checkpoint(source)
    parts = read_state(path)
    extra = {"exported_from": str(path), "step": parts["step"], "train_config": parts["train_config"].name}
    save_checkpoint(
        out,
        parts["ema"],
        parts["model_config"],
        force=force,
        extra=extra,
        dtype=torch.float16 if half else torch.float32,
    )
    return load_model(str(out))[1]
