"""Training state: EMA of the weights, and checkpoints that lose nothing.

A training checkpoint is one safetensors file (format "m2l-train-state"): tensors `model.*`,
`ema.*`, `optim.<param>.<key>` and `rng.torch`; metadata holds the step, both configs, the
optimiser hyper-parameters, the grad-scaler state and counters as JSON, plus the SHA-256 of the
tensors. The format name, the folder layout (`step_path`, `list_checkpoints`) and the verified read
live in `m2l.formats`, which loading uses without importing training code. Files are written
atomically (`m2l.files`), so a process killed mid-save or a full disk leaves the previous
checkpoints intact. No pickle anywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from m2l.checksummed import atomic_save, meta_int, meta_json, seal
from m2l.config import config_to_dict
from m2l.errors import M2LError
from m2l.formats import STATE_FORMAT, STATE_VERSION, model_config, read_training_state, strip_prefix
from m2l.train.config import TrainConfig, train_config_from_dict, train_config_to_dict


class EMA:
    """Exponential moving average of a model's floating-point state, decay warm-up
    min(decay, (1 + n) / (10 + n)) over updates n."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.state = {k: v.detach().float().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        current = model.state_dict()
        floats = [k for k, v in self.state.items() if v.is_floating_point()]
        torch._foreach_lerp_(
            [self.state[k] for k in floats], [current[k].detach().float() for k in floats], 1.0 - d
        )
        self.updates += 1


def save_state(
    path: Path,
    *,
    model: nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    step: int,
    train_cfg: TrainConfig,
    counters: dict[str, Any],
) -> None:
    """Write the whole training state to `path` atomically (replacing it if it exists).

    Raises:
        M2LError: the file cannot be written (disk full...); `path` and the other checkpoints
            are left as they were.
    """
    tensors: dict[str, torch.Tensor] = {}
    for k, v in model.state_dict().items():
        tensors[f"model.{k}"] = v.detach().float() if v.is_floating_point() else v.detach()
    for k, v in ema.state.items():
        tensors[f"ema.{k}"] = v
    opt = optimizer.state_dict()
    for idx, st in opt["state"].items():
        for key, value in st.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach()
    tensors["rng.torch"] = torch.get_rng_state()
    tensors = {k: v.cpu().contiguous() for k, v in tensors.items()}
    meta = {
        "format": STATE_FORMAT,
        "version": str(STATE_VERSION),
        "step": str(step),
        "train_config": json.dumps(train_config_to_dict(train_cfg)),
        "model_config": json.dumps(config_to_dict(model.cfg)),
        "param_groups": json.dumps(opt["param_groups"]),
        "scaler": json.dumps(scaler.state_dict() if scaler is not None and scaler.is_enabled() else {}),
        "ema_updates": str(ema.updates),
        "counters": json.dumps(counters),
    }
    atomic_save(tensors, seal(tensors, meta), path, force=True)


def read_state(path: Path) -> dict[str, Any]:
    """Read and verify a training checkpoint -> dict of its parts (tensors on CPU)."""
    tensors, meta = read_training_state(path)
    parts: dict[str, Any] = {
        "path": str(path),
        "step": meta_int(path, meta, "step", 0, 1 << 62),
        "train_config": train_config_from_dict(meta_json(path, meta, "train_config"), str(path)),
        "model_config": model_config(path, meta, "model_config"),
        "param_groups": meta_json(path, meta, "param_groups", list),
        "scaler": meta_json(path, meta, "scaler"),
        "ema_updates": meta_int(path, meta, "ema_updates", 0, 1 << 62),
        "counters": meta_json(path, meta, "counters"),
    }
    parts["model"] = strip_prefix(tensors, "model.")
    parts["ema"] = strip_prefix(tensors, "ema.")
    optim: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in strip_prefix(tensors, "optim.").items():
        idx, _, name = key.partition(".")
        if not (idx.isascii() and idx.isdigit() and len(idx) < 10 and name):
            raise M2LError(f"{path}: malformed optimiser tensor name 'optim.{key[:40]}'")
        optim.setdefault(int(idx), {})[name] = value
    parts["optim"] = optim
    parts["rng"] = tensors.get("rng.torch")
    return parts


def restore(
    parts: dict[str, Any],
    *,
    model: nn.Module,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Load a `read_state` result into live objects (strict: every key must match)."""
    ours, where = model.state_dict(), parts.get("path", "training checkpoint")
    for part in ("model", "ema"):
        differ = set(ours) ^ set(parts[part])
        if differ:
            raise M2LError(f"{where}: does not match the model ({len(differ)} {part} keys differ)")
        for key, value in parts[part].items():
            if value.shape != ours[key].shape:
                raise M2LError(
                    f"{where}: does not match the model ({part} tensor {key} has shape "
                    f"{tuple(value.shape)}, expected {tuple(ours[key].shape)})"
                )
    model.load_state_dict(parts["model"])
    device = next(model.parameters()).device  # the EMA lives beside the weights it averages
    ema.state = {k: (v.float() if v.is_floating_point() else v).to(device) for k, v in parts["ema"].items()}
    ema.updates = parts["ema_updates"]
    state = {
        i: {k: v.to(device) if k != "step" else v for k, v in st.items()} for i, st in parts["optim"].items()
    }
    optimizer.load_state_dict({"state": state, "param_groups": parts["param_groups"]})
    if scaler is not None and parts["scaler"]:
        scaler.load_state_dict(parts["scaler"])
    if parts["rng"] is not None:
        torch.set_rng_state(parts["rng"])
