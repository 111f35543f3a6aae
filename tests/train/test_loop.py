import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_testing import fast_config, make_trainer, train_argv

import m2l
from m2l.cli import main
from m2l.errors import M2LError
from m2l.formats import list_checkpoints
from m2l.train.export import export
from m2l.train.objective import ConsistencyObjective
from m2l.train.state import read_state

pytestmark = pytest.mark.filterwarnings("ignore:.*unreadable")
REPO = Path(__file__).parents[2]


trainer = make_trainer


@pytest.mark.parametrize("model,crop", [("m2l-v1-tiny", 64), ("m2l-v2-tiny", 128)])
def test_n_steps_plus_resume_plus_n_steps_equals_2n_steps(audio_dirs, tmp_path, model, crop):
    cfg = fast_config(steps=6, model=model, crop_frames=crop)
    straight = trainer(audio_dirs, tmp_path / "a", cfg)
    straight.train()
    first = trainer(audio_dirs, tmp_path / "b", cfg)
    assert first.train(until=3) == 3
    resumed = trainer(audio_dirs, tmp_path / "b", cfg)
    assert resumed.step == 3
    resumed.train()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    for key, value in straight.ema.state.items():
        assert torch.equal(value, resumed.ema.state[key]), key
    steps = [t.optimizer.state_dict()["state"][0]["step"] for t in (straight, resumed)]
    assert steps[0] == steps[1] == 6


def test_writes_config_log_validation_and_keeps_last_checkpoints(audio_dirs, tmp_path):
    run = tmp_path / "run"
    t = trainer(audio_dirs, run, fast_config(steps=4, ckpt_every=1, keep_last=2, val_every=2))
    t.train()
    assert [s for s, _ in list_checkpoints(run / "checkpoints")] == [3, 4]
    assert (run / "checkpoints" / "best.safetensors").is_file()
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r for r in records if r.get("split") != "val"]
    val = [r for r in records if r.get("split") == "val"]
    assert [r["step"] for r in train] == [1, 2, 3, 4] and [r["step"] for r in val] == [0, 2, 4]
    assert {"loss", "lr", "steps_per_s", "unreadable"} <= set(train[0])
    assert {"loss", "si_sdr", "mel_distance", "stft_distance"} <= set(val[0])
    assert train[0]["unreadable"] == 1  # broken.wav
    folder = run / "val" / "step-000000004"
    assert {p.name for p in folder.iterdir()} == {
        "item0-original.wav",
        "item0-reconstruction.wav",
        "item0-original.png",
        "item0-reconstruction.png",
    }
    with pytest.raises(M2LError, match="different config"):
        trainer(audio_dirs, run, fast_config(steps=4, lr=0.5))


def test_non_finite_losses_are_skipped_then_stop_the_run(audio_dirs, tmp_path, monkeypatch):
    forward = ConsistencyObjective.forward
    monkeypatch.setattr(ConsistencyObjective, "forward", lambda self, *a: forward(self, *a) * float("nan"))
    t = trainer(audio_dirs, tmp_path / "run", fast_config(steps=10, max_nonfinite=3))
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    with pytest.raises(M2LError, match="not finite for 3 steps"):
        t.train()
    assert t.counters["nonfinite"] == 3
    assert all(torch.equal(v, t.model.state_dict()[k]) for k, v in before.items())


def _cli_train(audio_dirs, run, *overrides, new_group=False):
    """`python -m m2l train` in a subprocess (4 clips a step, 2 validation items, a log line every
    10 steps), killed after the test if still running."""
    argv = train_argv(audio_dirs, run, "batch_size=4", "val_items=2", "log_every=10", *overrides)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "m2l", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=new_group,
    )
    _SPAWNED.append(proc)
    return proc


_SPAWNED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_trainer_outlives_its_test():
    """A failing test must not leave its 100000-step trainer running."""
    yield
    while _SPAWNED:
        proc = _SPAWNED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _wait_for(predicate, timeout=300.0, poll=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(poll)
    return False


@pytest.mark.parametrize("workers,group", [(0, False), (1, True)])
def test_sigterm_saves_and_exits_cleanly(audio_dirs, tmp_path, workers, group):
    """Also when the whole process group is signalled (Ctrl-C, `timeout`, SLURM), loader workers
    included: they must leave the stop to the trainer instead of dying under it."""
    run = tmp_path / "run"
    proc = _cli_train(
        audio_dirs,
        run,
        "steps=100000",
        "val_every=100000",
        "ckpt_every=100000",
        f"workers={workers}",
        new_group=group,
    )
    log = run / "log.jsonl"
    assert _wait_for(lambda: log.is_file() and len(log.read_text().splitlines()) >= 2)
    if group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped by SIGTERM" in out and not (run / ".lock").exists()
    ((step, path),) = list_checkpoints(run / "checkpoints")
    assert step >= 2 and read_state(path)["step"] == step


def test_sigkill_mid_save_leaves_the_previous_checkpoint_loadable(audio_dirs, tmp_path):
    run = tmp_path / "run"
    proc = _cli_train(audio_dirs, run, "steps=100000", "val_every=100000", "ckpt_every=1", "keep_last=2")
    ckpts = run / "checkpoints"

    def saving() -> bool:
        names = os.listdir(ckpts) if ckpts.is_dir() else []
        return any(".tmp-" in n for n in names) and any(n.startswith("step-") for n in names)

    caught = _wait_for(saving)
    proc.kill()
    proc.communicate(timeout=60)
    assert caught, "never saw a checkpoint being written"
    steps = list_checkpoints(ckpts)
    assert steps and read_state(steps[-1][1])["step"] == steps[-1][0]
    proc = _cli_train(audio_dirs, run, "steps=100000", "val_every=100000", "ckpt_every=1", "keep_last=2")
    assert _wait_for(lambda: len(list_checkpoints(ckpts)) and list_checkpoints(ckpts)[-1][0] > steps[-1][0])
    proc.kill()
    proc.communicate(timeout=60)


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_says_so(audio_dirs, tmp_path, monkeypatch):
    import errno

    run = tmp_path / "run"
    t = trainer(audio_dirs, run, fast_config(steps=4, ckpt_every=1, keep_last=5))
    real_replace = os.replace

    def full_at_step_2(src, dst):
        if Path(dst).name == "step-000000002.safetensors":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", full_at_step_2)
    with pytest.raises(M2LError) as info:
        t.train()
    first = run / "checkpoints" / "step-000000001.safetensors"
    assert str(info.value) == (
        f"{run / 'checkpoints' / 'step-000000002.safetensors'}: cannot write: disk full (no space left "
        f"on device); checkpoint of step 2 not saved, the previous checkpoint {first} is kept"
    )
    assert os.listdir(run / "checkpoints") == [first.name]
    assert read_state(first)["step"] == 1


def test_cli_train_records_the_resolved_config_and_rejects_bad_input(audio_dirs, tmp_path, capsys):
    run = tmp_path / "run"
    base = train_argv(audio_dirs, run)
    assert main([*base, "--set", "steps=2"]) == 0
    assert json.loads((run / "config.json").read_text())["steps"] == 2
    assert main([*base, "--set", "steps=2", "--set", "lr=9"]) == 1
    assert main([*base, "--set", "nosuch=1"]) == 1
    assert main(["train", "tiny", "--data", str(tmp_path / "none"), "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert "different config" in err and "nosuch" in err and "not a folder" in err
    lines = err.strip().splitlines()
    assert sum(line.startswith("m2l: trained 2 steps") for line in lines) == 1  # the run's closing line
    assert all(line.startswith(("m2l: error:", "m2l: warning:", "m2l: trained ")) for line in lines), err


def test_bf16_autocast_trains_on_cpu(audio_dirs, tmp_path):
    t = trainer(audio_dirs, tmp_path / "run", fast_config(steps=2, precision="bf16"))
    assert t.autocast == torch.bfloat16 and t.scaler is None
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.train()
    assert t.counters["nonfinite"] == 0
    assert any(not torch.equal(v, t.model.state_dict()[k]) for k, v in before.items())
    assert all(p.dtype == torch.float32 for p in t.model.parameters())  # fp32 master weights
    with pytest.raises(M2LError, match="fp16 needs a CUDA"):
        trainer(audio_dirs, tmp_path / "run16", fast_config(precision="fp16"))
    assert not (tmp_path / "run16").exists()


def test_v2_trains_exports_and_decodes_through_the_same_trainer(audio_dirs, tmp_path, capsys):
    with pytest.raises(M2LError, match="crop_frames=128"):
        trainer(audio_dirs, tmp_path / "bad", fast_config(model="m2l-v2-tiny"))
    run = tmp_path / "run"
    t = trainer(audio_dirs, run, fast_config(steps=2, model="m2l-v2-tiny", crop_frames=128, val_every=2))
    t.train()
    assert t.validator.crops.shape[-1] >= t.crop_samples()  # validation crops hold a training pair
    assert (run / "val" / "step-000000002" / "item0-reconstruction.wav").is_file()
    records = map(json.loads, (run / "log.jsonl").read_text().splitlines())
    val = [r for r in records if r.get("split") == "val"]
    assert val and all(r["select"] == r["mel_distance_cond0"] for r in val)  # best chosen at sigma_cond 0
    ((step, ckpt),) = list_checkpoints(run / "checkpoints")
    assert main(["info", str(ckpt)]) == 0
    out = capsys.readouterr().out
    assert "training checkpoint" in out and f"step:              {step}" in out and "m2l-v2-tiny (v2)" in out
    export(run, tmp_path / "v2.safetensors")
    codec = m2l.load(tmp_path / "v2.safetensors", device="cpu")
    assert type(codec).__name__ == "Codec2"
    z = codec.encode(torch.randn(1, 50000) * 0.1)
    assert z.shape == (1, 2, 8, 64) and codec.decode(z, seed=0, length=50000).shape == (1, 50000)


def test_model_set_trains_a_changed_preset_that_exports_and_loads_as_trained(audio_dirs, tmp_path):
    cfg = fast_config(steps=2, model="m2l-v2-tiny", crop_frames=128, model_set="audio_channels=2,depth=1")
    run = tmp_path / "run"
    t = trainer(audio_dirs, run, cfg)
    t.train()
    assert (t.model.cfg.audio_channels, t.model.cfg.depth) == (2, 1)
    export(run, tmp_path / "stereo.safetensors")
    codec = m2l.load(tmp_path / "stereo.safetensors", device="cpu")
    assert codec.model_id.startswith("m2l-v2-tiny+audio_channels=2,depth=1@")
    z = codec.encode(torch.randn(2, 50000) * 0.1)  # joint stereo: one row for the pair
    assert z.shape == (1, 2, 8, 64) and codec.decode(z, seed=0, length=50000).shape == (2, 50000)


def test_compile_option_traces_the_objective_and_trains_like_eager(audio_dirs, tmp_path, monkeypatch):
    """`compile=true` runs the objective through torch.compile. The inductor backend takes
    minutes to build on CPU, so the test uses dynamo's graph capture with the eager backend: the
    same traced graphs, without code generation."""
    import torch._dynamo

    real_compile, compiled = torch.compile, []

    def eager_compile(module, **kwargs):
        compiled.append(module)
        return real_compile(module, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    runs = {}
    for flag in (False, True):
        t = trainer(audio_dirs, tmp_path / f"run-{flag}", fast_config(steps=2, compile=flag))
        t.train()
        runs[flag] = t.model.state_dict()
    assert len(compiled) == 1 and isinstance(compiled[0], ConsistencyObjective)
    assert sum(torch._dynamo.utils.counters["stats"].values()) > 0  # dynamo really traced frames
    for key, value in runs[False].items():
        torch.testing.assert_close(runs[True][key], value, rtol=1e-4, atol=1e-5)


def test_init_starts_a_new_run_from_a_models_weights_and_refuses_another_preset(
    audio_dirs, tmp_path, tiny_checkpoint
):
    from m2l.loading import load_model

    source, _ = load_model(str(tiny_checkpoint))
    trainer = make_trainer(audio_dirs, tmp_path / "run", fast_config(init=str(tiny_checkpoint)))
    for name, value in source.state_dict().items():
        torch.testing.assert_close(trainer.model.state_dict()[name], value)
        torch.testing.assert_close(trainer.ema.state[name], value.float())
    trainer.train(until=1)  # a resume keeps the trained weights, not the init's
    resumed = make_trainer(audio_dirs, tmp_path / "run", fast_config(init=str(tiny_checkpoint)))
    moved = [n for n, v in source.state_dict().items() if not torch.equal(resumed.model.state_dict()[n], v)]
    assert resumed.step == 1 and moved
    with pytest.raises(M2LError, match=r"init=.*is a m2l-v1-tiny model, the run trains m2l-v2-tiny"):
        make_trainer(
            audio_dirs,
            tmp_path / "v2",
            fast_config(model="m2l-v2-tiny", crop_frames=128, init=str(tiny_checkpoint)),
        )
