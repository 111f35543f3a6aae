"""`m2l.train.state`: restoring a training checkpoint refuses weights of another shape in one line."""

from __future__ import annotations

import pytest
import torch
from m2l_testing import random_model

from m2l.errors import M2LError
from m2l.train.state import EMA, restore


@pytest.mark.parametrize("part", ["model", "ema"])
def test_restore_refuses_a_tensor_of_another_shape_before_loading(part):
    model = random_model("m2l-v1-tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: v.clone() for k, v in before.items()}
    key = next(k for k, v in state.items() if v.dim() == 1)
    parts = {
        "path": "run/checkpoints/step-000000002.safetensors",
        "model": dict(state),
        "ema": dict(state),
        "ema_updates": 3,
        "optim": {},
        "param_groups": [],
        "scaler": {},
        "rng": None,
    }
    parts[part] = {**state, key: torch.zeros(state[key].numel() + 1)}
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(M2LError) as exc:
        restore(parts, model=model, ema=EMA(model, 0.99), optimizer=optimizer, scaler=None)
    message = str(exc.value)
    assert message.startswith("run/checkpoints/step-000000002.safetensors: does not match the model")
    assert f"{part} tensor {key} has shape" in message and "\n" not in message
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # nothing loaded
