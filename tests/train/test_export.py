"""`m2l.train.export`: picking a run's checkpoint and exporting its EMA weights for inference."""

import json

import pytest
import torch
from safetensors import safe_open
from train_testing import fast_config, make_trainer, save_micro_state

import m2l
from m2l.cli import main
from m2l.errors import M2LError
from m2l.formats import list_checkpoints, load_checkpoint, step_path
from m2l.train.export import export, pick_checkpoint
from m2l.train.state import read_state

pytestmark = pytest.mark.filterwarnings("ignore:.*unreadable")


def test_export_gives_a_checkpoint_that_load_and_the_cli_use(audio_dirs, tmp_path, capsys):
    run = tmp_path / "run"
    make_trainer(audio_dirs, run, fast_config(steps=2)).train()
    out = tmp_path / "model.safetensors"
    model_id = export(run, out)
    assert model_id.startswith("m2l-v1-tiny@")
    codec = m2l.load(out, device="cpu")
    z = codec.encode(torch.randn(1, 20000) * 0.1)
    assert codec.decode(z, seed=0, length=20000).shape == (1, 20000)
    parts = read_state(list_checkpoints(run / "checkpoints")[-1][1])
    assert all(torch.equal(codec.model.state_dict()[k].contiguous(), v) for k, v in parts["ema"].items())
    direct = m2l.load(list_checkpoints(run / "checkpoints")[-1][1], device="cpu")  # EMA weights too
    assert direct.model_id == model_id
    assert m2l.load(run, device="cpu").model_id == model_id  # a run folder is a model
    assert main(["export", str(run), str(out)]) == 1  # exists, no --force
    capsys.readouterr()
    assert main(["export", str(run), str(out), "--force"]) == 0
    said = capsys.readouterr()
    assert said.out == f"{model_id}\n"  # the id alone on stdout, for scripts
    size, best = f"{out.stat().st_size / 2**20:.1f} MiB", run / "checkpoints" / "best.safetensors"
    assert said.err == (
        f"m2l: exported {out}: model {model_id}, {size}, float32 weights "
        f"(the EMA weights of {best}, step 2)\n"
    )
    half = tmp_path / "half.safetensors"
    assert main(["export", str(run), str(half), "--fp16"]) == 0
    line = capsys.readouterr().err
    assert line.startswith(f"m2l: exported {half}: model m2l-v1-tiny@") and ", float16 weights (" in line
    assert half.stat().st_size < 0.6 * out.stat().st_size
    x = torch.randn(1, 20000, generator=torch.Generator().manual_seed(0)) * 0.1
    z16, z32 = m2l.load(half, device="cpu").encode(x), codec.encode(x)
    assert 0 < float((z16 - z32).norm() / z32.norm()) < 0.01  # float16 rounding only


def test_a_run_folder_stands_for_its_best_checkpoint_else_its_newest(tmp_path):
    ckpts = tmp_path / "run" / "checkpoints"
    for step in (1, 3, 2):  # written out of order: the newest is the highest step
        save_micro_state(step_path(ckpts, step), step=step)
    (ckpts / "step-000000004.safetensors.tmp-123").write_bytes(b"an unfinished save")
    assert pick_checkpoint(tmp_path / "run") == step_path(ckpts, 3)
    save_micro_state(ckpts / "best.safetensors", step=2)
    assert pick_checkpoint(tmp_path / "run") == ckpts / "best.safetensors"


def test_a_training_checkpoint_file_is_its_own_pick(tmp_path):
    path = tmp_path / "anywhere.safetensors"
    save_micro_state(path)
    assert pick_checkpoint(path) == path


def test_a_folder_without_checkpoints_or_a_missing_path_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "notes.txt").write_text("not a checkpoint")
    for folder in (tmp_path / "empty", tmp_path / "run"):
        with pytest.raises(M2LError, match="no training checkpoint found") as info:
            pick_checkpoint(folder)
        assert str(info.value).startswith(f"{folder}: ")
    with pytest.raises(M2LError, match="missing.safetensors"):
        pick_checkpoint(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("half", [False, True])
def test_export_writes_the_ema_weights_in_the_asked_precision(tmp_path, half):
    ckpts = tmp_path / "run" / "checkpoints"
    save_micro_state(step_path(ckpts, 5), step=5, seed=1)
    live = save_micro_state(step_path(ckpts, 6), step=6, seed=2)
    out = tmp_path / "model.safetensors"
    model_id = export(tmp_path / "run", out, half=half)
    dtype = torch.float16 if half else torch.float32
    with safe_open(str(out), framework="pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    ema = live["ema"].state
    assert stored.keys() == ema.keys()
    for key, value in ema.items():
        assert stored[key].dtype == dtype, key
        assert torch.equal(stored[key], value.to(dtype)), key  # the EMA, not the live weights
    assert any(not torch.equal(ema[k], v.float()) for k, v in live["model"].state_dict().items())
    _, config, meta = load_checkpoint(out)
    assert config == live["model"].cfg and model_id.startswith(f"{config.name}@")
    assert json.loads(meta["extra"]) == {
        "exported_from": str(step_path(ckpts, 6)),
        "step": 6,
        "train_config": live["cfg"].name,
    }
    assert m2l.load(out, device="cpu").model_id == model_id
