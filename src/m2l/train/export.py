"""Export a training checkpoint's EMA weights as an inference checkpoint."""

from __future__ import annotations

from pathlib import Path

import torch

from m2l.errors import M2LError
from m2l.formats import save_checkpoint
from m2l.train.state import list_checkpoints, read_state


def pick_checkpoint(source: Path) -> Path:
    """A training checkpoint file, or a run folder's best checkpoint (else its latest)."""
    if source.is_file():
        return source
    ckpts = source / "checkpoints"
    if (ckpts / "best.safetensors").is_file():
        return ckpts / "best.safetensors"
    found = list_checkpoints(ckpts)
    if not found:
        raise M2LError(f"{source}: no training checkpoint found (expected {ckpts}/step-*.safetensors)")
    return found[-1][1]


def export(source: Path, out: Path, *, force: bool = False, half: bool = False) -> str:
    """Write the EMA weights + model config of `source` to `out` (float16 with `half`); returns
    the new model id."""
    from m2l.loading import load_model

    path = pick_checkpoint(source)
    parts = read_state(path)
    extra = {"exported_from": str(path), "step": parts["step"], "train_config": parts["train_config"].name}
    save_checkpoint(out, parts["ema"], parts["model_config"], force=force, extra=extra,
                    dtype=torch.float16 if half else torch.float32)
    return load_model(str(out))[1]
