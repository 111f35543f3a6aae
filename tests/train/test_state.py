"""`m2l.train.state`: the EMA of the weights, and training checkpoints that lose nothing."""

import json

import pytest
import torch
from m2l_testing import MICRO, MICRO2, random_model, rewrite_header
from train_testing import fast_config, save_micro_state

from m2l.errors import M2LError
from m2l.formats import STATE_VERSION, save_checkpoint
from m2l.train.state import EMA, read_state, restore


def _shift(model: torch.nn.Module, amount: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.add_(amount)


def test_ema_update_lerps_towards_the_model_with_the_warmed_up_decay():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    ema = EMA(model, decay=0.5)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    _shift(model, 1.0)
    assert all(torch.equal(ema.state[k], v) for k, v in start.items())  # a copy, not a view
    ema.update(model)
    d = 1 / 10  # warm-up: min(0.5, (1 + 0) / (10 + 0))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ema.state[k], d * start[k] + (1 - d) * v)
    assert ema.updates == 1
    ema.updates = 90  # warm-up over: min(0.5, 91 / 100) = 0.5
    before = {k: v.clone() for k, v in ema.state.items()}
    _shift(model, -3.0)
    ema.update(model)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(ema.state[k], 0.5 * before[k] + 0.5 * v)
    assert ema.updates == 91


def test_ema_keeps_float32_copies_of_a_lower_precision_model():
    model = torch.nn.Linear(3, 2).to(torch.bfloat16)
    ema = EMA(model, decay=0.9)
    assert all(v.dtype == torch.float32 for v in ema.state.values())
    ema.update(model)
    assert all(v.dtype == torch.float32 for v in ema.state.values())


def test_save_then_read_gives_back_every_part(tmp_path):
    path = tmp_path / "state.safetensors"
    live = save_micro_state(path, step=7, steps=50)
    parts = read_state(path)
    assert parts["step"] == 7 and parts["train_config"] == fast_config(steps=50) == live["cfg"]
    assert parts["model_config"] == MICRO and parts["counters"] == live["counters"]
    assert parts["ema_updates"] == 1 and parts["scaler"] == {}
    model, ema, optimizer = live["model"], live["ema"], live["optimizer"]
    assert parts["model"].keys() == model.state_dict().keys()
    assert all(torch.equal(parts["model"][k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(parts["ema"][k], v) for k, v in ema.state.items())
    saved = optimizer.state_dict()
    assert parts["param_groups"] == json.loads(json.dumps(saved["param_groups"]))
    assert parts["optim"].keys() == saved["state"].keys()
    for idx, state in saved["state"].items():
        assert parts["optim"][idx].keys() == state.keys()
        assert all(torch.equal(parts["optim"][idx][k], torch.as_tensor(v)) for k, v in state.items())
    assert torch.equal(parts["rng"], live["rng"])


def test_restore_puts_every_part_back_into_fresh_objects(tmp_path):
    path = tmp_path / "state.safetensors"
    live = save_micro_state(path, seed=0)
    parts = read_state(path)
    model = random_model(MICRO, seed=5)  # other weights
    ema = EMA(model, 0.9)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1.0)
    torch.manual_seed(123)
    restore(parts, model=model, ema=ema, optimizer=optimizer, scaler=None)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in live["model"].state_dict().items())
    assert all(torch.equal(ema.state[k], v) for k, v in live["ema"].state.items())
    assert ema.updates == live["ema"].updates == 1
    got, want = optimizer.state_dict(), live["optimizer"].state_dict()
    assert got["param_groups"][0]["lr"] == want["param_groups"][0]["lr"] != 1.0
    for idx, state in want["state"].items():
        assert all(
            torch.equal(torch.as_tensor(got["state"][idx][k]), torch.as_tensor(v)) for k, v in state.items()
        )
    assert torch.equal(torch.get_rng_state(), live["rng"])  # random draws continue as they would have


def test_restore_refuses_a_checkpoint_of_another_model(tmp_path):
    path = tmp_path / "state.safetensors"
    save_micro_state(path)
    other = random_model(MICRO2)
    with pytest.raises(M2LError, match="does not match the model"):
        restore(
            read_state(path),
            model=other,
            ema=EMA(other, 0.9),
            optimizer=torch.optim.AdamW(other.parameters()),
            scaler=None,
        )


@pytest.mark.parametrize(
    "damage,says",
    [
        ("tensor-byte", "content does not match its checksum"),
        ("truncated", "not a readable safetensors file"),
        ("metadata-byte", "metadata does not match its checksum"),
        ("step", "malformed metadata: step"),
        ("no-counters", "malformed metadata: counters"),
        ("newer-version", "newer than this m2l supports"),
        ("inference-checkpoint", "not an m2l-train-state file"),
    ],
)
def test_a_corrupt_or_modified_state_file_is_refused(tmp_path, damage, says):
    path = tmp_path / "state.safetensors"
    live = save_micro_state(path)
    if damage == "tensor-byte":
        data = bytearray(path.read_bytes())
        data[-100] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif damage == "metadata-byte":
        rewrite_header(path, step="7")  # a changed value without a new seal
    elif damage == "step":
        rewrite_header(path, reseal=True, step="seven")
    elif damage == "no-counters":
        rewrite_header(path, reseal=True, drop=("counters",))
    elif damage == "newer-version":
        rewrite_header(path, reseal=True, version=str(STATE_VERSION + 1))
    else:
        path.unlink()
        save_checkpoint(path, live["model"].state_dict(), live["model"].cfg)
    with pytest.raises(M2LError, match=says) as info:
        read_state(path)
    assert str(info.value).startswith(f"{path}: ")


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


def test_restore_puts_the_ema_on_the_models_device(tmp_path):
    """A run resumed on a GPU averages the GPU weights into the restored EMA: the EMA must live
    on the model's device (here the meta device stands in for CUDA; a CPU EMA failed at the first
    update of a resumed CUDA run)."""
    path = tmp_path / "s.safetensors"
    save_micro_state(path)
    model = random_model(MICRO).to("meta")
    ema = EMA(random_model(MICRO), 0.9)
    with pytest.warns(UserWarning, match="meta"):  # torch: loading into meta weights copies nothing
        optimizer = torch.optim.AdamW(model.parameters())
        restore(read_state(path), model=model, ema=ema, optimizer=optimizer, scaler=None)
    assert {v.device.type for v in ema.state.values()} == {"meta"}
