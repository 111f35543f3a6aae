"""Export a training checkpoint's EMA weights as an inference checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from m2l.errors import M2LError
from m2l.formats import save_checkpoint
from m2l.loading import load_model, run_checkpoint
from m2l.models import check_state
from m2l.sniff import Kind, safetensors_metadata, sniff
from m2l.train.state import read_state


def pick_checkpoint(source: Path) -> Path:
    """A training checkpoint file, or a run folder's best checkpoint (else its latest).

    Raises:
        M2LError: `source` is missing, not a regular file, or a file of another kind.
    """
    source = Path(source)
    if source.is_dir():
        return run_checkpoint(source)
    found = sniff(source)
    if found.kind is not Kind.TRAINING_STATE:
        raise M2LError(
            f"{source}: is {found.description}, not an m2l training checkpoint "
            f"(give a training checkpoint or a run folder)"
        )
    return source


def export(source: Path, out: Path, *, force: bool = False, half: bool = False) -> str:
    """Write the EMA weights + model config of `source` to `out` (float16 with `half`); returns
    the new model id."""
    path = pick_checkpoint(source)
    parts = read_state(path)
    check_state(parts["model_config"], parts["ema"], str(path))  # before anything is written
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


def export_line(out: Path, model_id: str, half: bool) -> str:
    """What `export` wrote, as one line: path, model id, size, precision, and the training
    checkpoint and step the weights came from (read back from the written file's header)."""
    meta = safetensors_metadata(Path(out)) or {}
    try:
        extra = json.loads(meta.get("extra", "{}"))
    except ValueError:
        extra = {}
    origin = ""
    if isinstance(extra, dict) and "exported_from" in extra:
        origin = f" (the EMA weights of {extra['exported_from']}, step {extra.get('step')})"
    size = Path(out).stat().st_size / 2**20
    precision = "float16" if half else "float32"
    return f"exported {out}: model {model_id}, {size:.1f} MiB, {precision} weights{origin}"
