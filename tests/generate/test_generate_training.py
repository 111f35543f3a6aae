"""`m2l gen train` on a synthetic latent corpus: the validation loss falls (fp32 and bf16, flow and
EDM), the run folder holds what it should, a run stopped by SIGTERM resumes to the very weights of
an uninterrupted one, a run from before the newer config fields resumes, and a changed config or
dataset is refused unless asked for."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
import torch
from cli_testing import run
from generate_testing import codec_checkpoint, sinusoid_corpus
from m2l_testing import assert_one_line_error, read_header, rewrite_header
from safetensors.torch import load_file

from m2l.errors import M2LError
from m2l.formats import list_checkpoints
from m2l.generate import training
from m2l.generate.checkpoint import load_generator
from m2l.generate.data import LatentSplit
from m2l.generate.train_config import GenTrainConfig
from m2l.latents.pack import pack_folder

FAST = ("steps=30", "batch_size=16", "warmup=5", "lr=1e-2", "ema_decay=0.9", "val_every=10", "log_every=10")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(a folder of 400 one-row `.m2l` files of 20 frames, the codec checkpoint they record):
    many short clips, so that a tiny model learns what generalises to held-out clips."""
    folder = tmp_path_factory.mktemp("corpus")
    codec = codec_checkpoint(folder)
    return sinusoid_corpus(folder / "latents", codec, files=400, frames=20), codec


def _train(
    capsys, corpus: Path, out: Path, *settings: str, options: tuple[str, ...] = ()
) -> tuple[int, str, str]:
    """`m2l gen train` of gen-tiny with the FAST settings, `settings` (KEY=VALUE) and `options`."""
    sets = [arg for s in (*FAST, *settings) for arg in ("--set", s)]
    cli = ("gen", "train", corpus, "--out", out, "--preset", "gen-tiny", "--device", "cpu")
    return run(capsys, *cli, *sets, *options)


def _log(out: Path, key: str) -> list[float]:
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [line[key] for line in lines if key in line]


def test_training_lowers_the_validation_loss_and_writes_the_run(capsys, corpus, tmp_path):
    latents, codec = corpus
    out = tmp_path / "run"
    code, stdout, err = _train(
        capsys, latents, out, "steps=100", "batch_size=32", "ckpt_every=25", "keep_last=2"
    )
    assert code == 0, err
    assert "done at step 100/100" in stdout
    val = _log(out, "val_loss")
    print("validation losses", val)
    assert len(val) == 10
    assert val[-1] < 0.9 * val[0] and val[-1] < 1.75  # no skill (a zero velocity) scores about 2
    assert [step for step, _ in list_checkpoints(out / "checkpoints")] == [75, 100]
    gen = load_generator(out)
    assert gen.codec_source == str(codec.resolve()) and gen.labels == ()
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 100
    assert not (out / ".lock").exists()


def test_a_run_stopped_by_sigterm_resumes_to_the_uninterrupted_result(capsys, corpus, tmp_path, monkeypatch):
    latents, _ = corpus
    code, _, err = _train(capsys, latents, tmp_path / "whole")
    assert code == 0, err
    step = training.train_step

    def stopped_at_12(state: training.Run) -> float:
        loss = step(state)
        if state.step == 12:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler asks the loop to save and stop
        return loss

    monkeypatch.setattr(training, "train_step", stopped_at_12)
    code, stdout, err = _train(capsys, latents, tmp_path / "cut")
    assert code == 0, err
    assert "stopped by SIGTERM" in stdout and "step 12/30" in stdout
    assert [s for s, _ in list_checkpoints(tmp_path / "cut" / "checkpoints")] == [12]
    monkeypatch.setattr(training, "train_step", step)
    code, stdout, err = _train(capsys, latents, tmp_path / "cut")
    assert code == 0, err
    assert "done at step 30/30" in stdout
    whole = load_file(tmp_path / "whole" / "generator.safetensors")
    resumed = load_file(tmp_path / "cut" / "generator.safetensors")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert _log(tmp_path / "whole", "val_loss")[-1] == _log(tmp_path / "cut", "val_loss")[-1]


def test_a_changed_config_is_refused_unless_asked(capsys, corpus, tmp_path):
    latents, _ = corpus
    out = tmp_path / "run"
    assert _train(capsys, latents, out, "steps=10")[0] == 0
    code, _, err = _train(capsys, latents, out, "steps=20", "lr=2e-2")
    assert code == 1
    assert_one_line_error(err, str(out), "lr, steps", "--change-config")
    sets = [arg for s in (*FAST, "steps=20", "lr=2e-2") for arg in ("--set", s)]
    code, stdout, err = run(
        capsys, "gen", "train", latents, "--out", out, "--preset", "gen-tiny", *sets, "--change-config"
    )
    assert code == 0, err
    assert "done at step 20/20" in stdout
    config = json.loads((out / "config.json").read_text())
    config["generator"]["width"] *= 2  # as if the run had trained a wider network
    (out / "config.json").write_text(json.dumps(config))
    code, _, err = run(
        capsys, "gen", "train", latents, "--out", out, "--preset", "gen-tiny", *sets, "--change-config"
    )
    assert code == 1
    assert_one_line_error(err, "another generator")


def test_a_bad_setting_is_one_line(capsys, corpus, tmp_path):
    code, _, err = _train(capsys, corpus[0], tmp_path / "run", "stepz=3")
    assert code == 1
    assert_one_line_error(err, "unknown field stepz", "did you mean steps")
    assert not (tmp_path / "run").exists()


def test_labels_come_from_a_manifest_column_of_a_packed_dataset(capsys, tmp_path):
    latents = sinusoid_corpus(tmp_path / "latents", codec_checkpoint(tmp_path), files=6, frames=20)
    genres = ["rock", "jazz", "rock", "jazz", "", "rock"]  # clip4 has no genre: the null class
    rows = [{"path": f"clip{i}.wav", "genre": g} for i, g in enumerate(genres)]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    pack_folder(latents, tmp_path / "dataset", manifest=manifest)
    split = LatentSplit(tmp_path / "dataset", 16, "genre", 0.2)
    assert split.labels == ("jazz", "rock")
    entries = split.crops.store.entries
    by_source = {e.source: label for e, label in zip(entries, split.entry_labels, strict=True)}
    assert [by_source[f"clip{i}.m2l"] for i in range(6)] == [1, 0, 1, 0, 2, 1]
    code, _, err = _train(capsys, tmp_path / "dataset", tmp_path / "run", "steps=3", "label_column=genre")
    assert code == 0, err
    gen = load_generator(tmp_path / "run")
    assert gen.labels == ("jazz", "rock") and gen.cfg.num_classes == 2
    code, _, err = _train(capsys, tmp_path / "dataset", tmp_path / "other", "steps=3", "label_column=mood")
    assert code == 1
    assert_one_line_error(err, "no file has a value in the manifest column 'mood'")


def test_bf16_training_lowers_the_validation_loss(capsys, corpus, tmp_path):
    latents, _ = corpus
    out = tmp_path / "run"
    code, stdout, err = _train(capsys, latents, out, "steps=100", "batch_size=32", "precision=bf16")
    assert code == 0, err
    val = _log(out, "val_loss")
    print("bf16 validation losses", val)
    assert val[-1] < 0.9 * val[0] and val[-1] < 1.75
    assert json.loads((out / "config.json").read_text())["train"]["precision"] == "bf16"


def test_bf16_autocasts_the_forward_pass_and_fp32_does_not():
    layer, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    cpu = torch.device("cpu")
    with training.autocast(GenTrainConfig(precision="bf16"), cpu):
        assert layer(x).dtype == torch.bfloat16
    with training.autocast(GenTrainConfig(), cpu):
        assert layer(x).dtype == torch.float32
    with pytest.raises(M2LError) as err:
        GenTrainConfig(precision="fp8")
    assert_one_line_error(err, "precision", "fp32, bf16")


def _strip_state(path: Path) -> None:
    """Remove `precision` and `objective` from a training state's configs, as an older m2l wrote it."""
    meta = read_header(path)[0]["__metadata__"]
    train, network = json.loads(meta["train_config"]), json.loads(meta["generator_config"])
    del train["precision"], network["objective"]
    rewrite_header(path, reseal=True, train_config=json.dumps(train), generator_config=json.dumps(network))


def test_a_run_from_before_the_new_fields_resumes_but_unknown_fields_are_refused(capsys, corpus, tmp_path):
    latents, _ = corpus
    out = tmp_path / "run"
    assert _train(capsys, latents, out, "steps=12", "ckpt_every=12")[0] == 0
    config = json.loads((out / "config.json").read_text())
    del config["train"]["precision"], config["generator"]["objective"], config["dataset_content"]
    (out / "config.json").write_text(json.dumps(config))
    (state,) = [path for _, path in list_checkpoints(out / "checkpoints")]
    _strip_state(state)
    logged = (out / "log.jsonl").read_text()
    code, stdout, err = _train(capsys, latents, out, "steps=12", "ckpt_every=12")
    assert code == 0, err
    assert "done at step 12/12" in stdout and "older checkpoint" not in err
    assert (out / "log.jsonl").read_text() == logged  # resumed at step 12: nothing trained again
    upgraded = json.loads((out / "config.json").read_text())  # the defaults written down
    assert upgraded["train"]["precision"] == "fp32" and upgraded["generator"]["objective"] == "flow"
    assert upgraded["dataset_content"]["files"] == 400
    upgraded["train"]["colour"] = 3
    (out / "config.json").write_text(json.dumps(upgraded))
    code, _, err = _train(capsys, latents, out, "steps=12", "ckpt_every=12")
    assert code == 1
    assert_one_line_error(err, "malformed generator training config", "colour")


def test_another_dataset_is_refused_unless_asked_and_a_moved_one_is_not(capsys, corpus, tmp_path):
    latents, _ = corpus
    out = tmp_path / "run"
    assert _train(capsys, latents, out, "steps=3")[0] == 0
    moved = tmp_path / "moved"
    shutil.copytree(latents, moved)
    code, stdout, err = _train(capsys, moved, out, "steps=3")  # the same latents elsewhere
    assert code == 0, err
    codec = latents.parent / "codec.safetensors"
    other = sinusoid_corpus(tmp_path / "other", codec, files=40, frames=20, seed=1)
    code, _, err = _train(capsys, other, out, "steps=3")
    assert code == 1
    named = (str(out), str(moved.resolve()), str(other.resolve()), "40 files", "--change-config")
    assert_one_line_error(err, *named)
    code, stdout, err = _train(capsys, other, out, "steps=6", options=("--change-config",))
    assert code == 0, err
    assert "done at step 6/6" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == str(other.resolve()) and config["dataset_content"]["files"] == 40


def test_an_edm_generator_trains_from_the_command_line_and_keeps_its_objective(capsys, corpus, tmp_path):
    """The loop trains with the EDM loss (about 1 without skill, where the flow loss is about 2;
    that EDM learns is `test_generate_learning`'s), and the generator file says how to sample it."""
    latents, _ = corpus
    out = tmp_path / "run"
    settings = ("steps=30", "lr=3e-3")
    code, stdout, err = _train(capsys, latents, out, *settings, options=("--objective", "edm"))
    assert code == 0, err
    val = _log(out, "val_loss")
    assert 0.9 < val[0] < 1.1 and val[-1] < val[0]
    assert load_generator(out).cfg.objective == "edm"
    assert json.loads((out / "config.json").read_text())["generator"]["objective"] == "edm"
    code, _, err = _train(capsys, latents, out, *settings)  # --objective flow: another network
    assert code == 1
    assert_one_line_error(err, "another generator")
