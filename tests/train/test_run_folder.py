import json
import os
import re
import socket
import subprocess

import pytest
from cli_testing import run
from m2l_testing import assert_one_line_error
from train_testing import fast_config, make_trainer, train_argv

from m2l.errors import M2LError
from m2l.formats import list_checkpoints
from m2l.train.config import load_train_config, train_config_to_dict
from m2l.train.loop import Trainer
from m2l.train.run_folder import RunLock, check_run, read_run_config
from m2l.train.schedule import lr_at
from m2l.train.state import read_state
from m2l.train.validate import Validator

pytestmark = pytest.mark.filterwarnings("ignore:.*unreadable")


@pytest.fixture
def scores(monkeypatch):
    """Validation replaced by fixed scores by step (default 9.0): fast, and the best is known."""
    by_step: dict[int, float] = {}
    monkeypatch.setattr(Validator, "run", lambda self, step: {"loss": 0.0, "select": by_step.get(step, 9.0)})
    return by_step


def _record(run_dir, cfg):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(train_config_to_dict(cfg)))


def _train_lrs(run_dir):
    records = map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())
    return {r["step"]: r["lr"] for r in records if r.get("split") != "val"}


def test_a_changed_config_is_refused_and_steps_change_only_with_extend(tmp_path):
    run_dir, cfg = tmp_path / "run", fast_config(steps=6)
    assert not check_run(run_dir, cfg).existing and not run_dir.exists()
    with pytest.raises(M2LError, match="no run to extend"):
        check_run(run_dir, cfg, extend=True)
    _record(run_dir, cfg)
    same = r"holds a run with a different config \(lr\); use another --out or the run's own config.json$"
    with pytest.raises(M2LError, match=same):
        check_run(run_dir, fast_config(steps=6, lr=5e-4))
    with pytest.raises(M2LError, match=same):  # --extend changes steps, nothing else
        check_run(run_dir, fast_config(steps=9, lr=5e-4), extend=True)
    with pytest.raises(M2LError, match=r"config \(steps\); .* pass --extend to train it on to 9 steps$"):
        check_run(run_dir, fast_config(steps=9))
    with pytest.raises(M2LError, match="the run spans 6 steps"):
        check_run(run_dir, fast_config(steps=3), extend=True)
    assert check_run(run_dir, fast_config(steps=9), extend=True).extend_to == 9
    assert check_run(run_dir, cfg, extend=True).extend_to is None  # the same command again: a resume
    (tmp_path / "file").write_text("x")
    with pytest.raises(M2LError, match="must be a run folder, not a file"):
        check_run(tmp_path / "file", cfg)


def test_a_missing_or_unreadable_config_next_to_checkpoints_is_an_error(audio_dirs, tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "step-000000002.safetensors").write_bytes(b"a checkpoint")
    with pytest.raises(M2LError, match="config.json: missing, but the run has checkpoints"):
        read_run_config(run_dir)
    code, _, err = run(capsys, *train_argv(audio_dirs, run_dir, "steps=2"))
    assert code == 1 and not (run_dir / "config.json").exists()
    assert_one_line_error(err, "missing, but the run has checkpoints")
    (run_dir / "config.json").write_text("{not json")
    code, _, err = run(capsys, *train_argv(audio_dirs, run_dir, "steps=2"))
    assert code == 1 and (run_dir / "config.json").read_text() == "{not json"
    assert_one_line_error(err, f"{run_dir / 'config.json'}: not a readable run config")


def test_the_lock_is_exclusive_and_a_dead_owners_lock_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    first, second = RunLock(run_dir), RunLock(run_dir)
    first.acquire()
    assert json.loads((run_dir / ".lock").read_text()) == {"pid": os.getpid(), "host": socket.gethostname()}
    held = rf"^{re.escape(str(run_dir))}: another trainer \(pid {os.getpid()} on "
    with pytest.raises(M2LError, match=held):
        second.acquire()
    first.release()
    first.release()
    assert not (run_dir / ".lock").exists()
    second.acquire()
    second.release()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (run_dir / ".lock").write_text(json.dumps({"pid": gone.pid, "host": socket.gethostname()}))
    with pytest.warns(UserWarning, match=f"taking over the lock of pid {gone.pid} on .*, which no longer"):
        first.acquire()
    assert json.loads((run_dir / ".lock").read_text())["pid"] == os.getpid()
    first.release()
    elsewhere = json.dumps({"pid": 1, "host": "elsewhere"})
    for text, says in ((elsewhere, "pid 1 on elsewhere"), ("", "unreadable")):
        (run_dir / ".lock").write_text(text)  # another machine's trainer, or one being written
        with pytest.raises(M2LError, match=says):
            first.acquire()


def test_a_second_trainer_fails_at_once_and_the_lock_ends_with_the_first(
    audio_dirs, tmp_path, scores, monkeypatch
):
    run_dir, cfg = tmp_path / "run", fast_config(steps=1)
    first = make_trainer(audio_dirs, run_dir, cfg)
    with pytest.raises(M2LError, match=rf"{re.escape(str(run_dir))}: another trainer \(pid {os.getpid()} "):
        make_trainer(audio_dirs, run_dir, cfg)
    assert (run_dir / ".lock").exists()  # the refused start took nothing away
    first.train()
    assert not (run_dir / ".lock").exists()

    def interrupted(self, audio):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "train_step", interrupted)
    with pytest.raises(KeyboardInterrupt):
        make_trainer(audio_dirs, tmp_path / "other", cfg).train()
    assert not (tmp_path / "other" / ".lock").exists()


def test_a_failed_start_leaves_nothing_and_the_corrected_command_works(audio_dirs, tmp_path, capsys, scores):
    run_dir = tmp_path / "run"
    for argv, says in (
        (train_argv(audio_dirs, run_dir, "steps=1", data="silent"), f"{audio_dirs['silent']}: none of 200"),
        (train_argv(audio_dirs, run_dir, "steps=1", "model=m2l-v2-tiny"), "crop_frames=128"),
    ):
        code, _, err = run(capsys, *argv)
        assert code == 1 and not run_dir.exists()
        assert_one_line_error(err, says)
    assert run(capsys, *train_argv(audio_dirs, run_dir, "steps=1"), "--until", "0")[0] == 0
    assert json.loads((run_dir / "config.json").read_text())["steps"] == 1


def test_extend_continues_the_learning_rate_without_a_jump(audio_dirs, tmp_path, capsys, scores):
    run_dir = tmp_path / "run"
    assert run(capsys, *train_argv(audio_dirs, run_dir, "steps=4", "warmup_steps=1"), "--until", "2")[0] == 0
    before = load_train_config(str(run_dir / "config.json"))
    longer = train_argv(audio_dirs, run_dir, "steps=6", "warmup_steps=1")
    code, _, err = run(capsys, *longer)
    assert code == 1 and load_train_config(str(run_dir / "config.json")) == before
    assert_one_line_error(err, "(steps); use another --out or the run's own config.json; pass --extend")
    code, out, _ = run(capsys, *longer, "--extend")
    assert code == 0
    assert f"extending run {run_dir} from 4 to 6 steps at step 2; learning rate continues from " in out
    after = load_train_config(str(run_dir / "config.json"))
    assert (after.steps, after.extensions) == (6, ((2, 4),))
    lrs = _train_lrs(run_dir)  # the record of step k holds the rate of step k - 1
    assert sorted(lrs) == list(range(1, 7))
    assert lrs[3] == pytest.approx(lr_at(2, before), rel=1e-12)  # resumed where the old schedule was
    decay = [lrs[k] for k in range(2, 7)]
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))
    assert lr_at(after.steps, after) == pytest.approx(after.min_lr)
    code, out, _ = run(capsys, *longer, "--extend")  # the same command again is a plain resume
    assert code == 0 and "already trained for 6 steps" in out
    assert load_train_config(str(run_dir / "config.json")) == after
    finished = train_argv(audio_dirs, run_dir, "steps=8", "warmup_steps=1")
    code, out, _ = run(capsys, *finished, "--extend", "--until", "6")
    assert code == 0 and "from 6 to 8 steps at step 6; learning rate stays at its final 1e-05" in out


def test_resume_sets_a_corrupt_checkpoint_aside_and_keeps_the_better_best(audio_dirs, tmp_path, scores):
    scores.update({1: 0.5, 2: 0.3})
    run_dir, cfg = tmp_path / "run", fast_config(steps=2, val_every=1, ckpt_every=1)
    make_trainer(audio_dirs, run_dir, cfg).train()
    ckpts = run_dir / "checkpoints"
    best, newest = ckpts / "best.safetensors", ckpts / "step-000000002.safetensors"
    assert [s for s, _ in list_checkpoints(ckpts)] == [1, 2]
    assert read_state(best)["counters"]["best_mel"] == 0.3
    corrupt = bytearray(newest.read_bytes())
    corrupt[-100] ^= 0xFF  # a tensor byte: the checksum fails
    newest.write_bytes(corrupt)
    scores[2] = 0.4  # step 2 trained again validates worse than the best on disk
    aside = ckpts / "step-000000002.safetensors.corrupt"
    says = f"{re.escape(str(newest))}: content does not match its checksum .*moved aside as {aside.name}"
    with pytest.warns(UserWarning, match=says):
        resumed = make_trainer(audio_dirs, run_dir, cfg)
    assert resumed.step == 1 and (resumed.counters["best_mel"], resumed.counters["best_step"]) == (0.3, 2)
    resumed.train()
    assert read_state(best)["counters"]["best_mel"] == 0.3  # not replaced by the worse model
    assert aside.read_bytes() == corrupt and read_state(newest)["step"] == 2
