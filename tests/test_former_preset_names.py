"""The presets' former names (`m2l.config.PRESET_ALIASES`, the v2 presets were `m2l2-*`): accepted
wherever a preset name is, and files an older m2l wrote under them still load, decode and report
the current name."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from cli_testing import run
from m2l_testing import random_model, rewrite_header

import m2l
from m2l.config import (
    PRESET_ALIASES,
    PRESETS,
    config_from_dict,
    config_hash,
    config_to_dict,
    current_model_id,
    preset,
    preset_name,
)
from m2l.errors import M2LError
from m2l.formats import load_latents, save_checkpoint
from m2l.loading import UNTRAINED_TAG, load_model
from m2l.train.config import TRAIN_PRESETS, TrainConfig, apply_overrides, train_config_to_dict
from m2l.train.run_folder import check_run

OLD, NEW = "m2l2-tiny", "m2l-v2-tiny"


def test_every_former_name_stands_for_a_current_preset_of_the_same_architecture():
    assert set(PRESET_ALIASES.values()) <= set(PRESETS)
    assert not set(PRESET_ALIASES) & set(PRESETS)
    assert PRESET_ALIASES[OLD] == NEW and PRESET_ALIASES["m2l2"] == "m2l-v2"
    for old, new in PRESET_ALIASES.items():
        config = preset(old)
        assert config.name == new == preset_name(old)
        assert config == preset(new)
    assert all(preset(name).name == name for name in PRESETS)  # each preset bears its name


def test_other_names_are_left_alone_and_unknown_names_list_only_current_presets():
    for text in ("m2l-v1-small", "default", "music2latent", "runs/m2l2-tiny", "m2l2-huge", ""):
        assert preset_name(text) == text
    with pytest.raises(M2LError, match="unknown preset 'm2l2-huge'") as err:
        preset("m2l2-huge")
    assert "m2l-v2-tiny" in str(err.value) and "m2l2-tiny" not in str(err.value)


@pytest.mark.parametrize(
    ("recorded", "now"),
    [
        ("m2l2-tiny@untrained-seed0", "m2l-v2-tiny@untrained-seed0"),
        ("m2l2@4165405c7fb2", "m2l-v2@4165405c7fb2"),
        ("m2l2-stereo@step1000", "m2l-v2-stereo@step1000"),
        ("m2l-v1-small@08beaef5a124", "m2l-v1-small@08beaef5a124"),
        ("default:m2l-v1-small@08beaef5a124", "default:m2l-v1-small@08beaef5a124"),
        ("music2latent@0123456789ab", "music2latent@0123456789ab"),
        ("m2l2-tiny", "m2l2-tiny"),  # not a model id
    ],
)
def test_a_model_id_recorded_under_a_former_name_reads_as_the_current_one(recorded, now):
    assert current_model_id(recorded) == now


def test_a_config_recorded_under_a_former_name_is_the_current_preset():
    data = {**config_to_dict(preset(NEW)), "name": OLD}
    config = config_from_dict(data)
    assert config == preset(NEW) and config.name == NEW
    assert config_hash(config) == config_hash(preset(OLD))
    other = config_from_dict({**data, "name": "my-model"})
    assert other.name == "my-model"  # a name of one's own is kept


def test_loading_a_former_name_gives_the_current_preset_and_records_its_current_name():
    with pytest.warns(UserWarning, match="untrained"):
        old, old_id = load_model(OLD)
    with pytest.warns(UserWarning, match="untrained"):
        new, new_id = load_model(NEW)
    assert old_id == new_id == f"{NEW}{UNTRAINED_TAG}"
    assert all(
        torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values(), strict=True)
    )
    with pytest.warns(UserWarning, match="untrained"):
        assert m2l.load(OLD, device="cpu").source == NEW


@pytest.fixture(scope="module")
def old_latent_file(tmp_path_factory):
    """A latent file of the untrained m2l-v2-tiny, as an older m2l wrote it (former names)."""
    with pytest.warns(UserWarning, match="untrained"):
        codec = m2l.load(NEW, device="cpu")
    path = tmp_path_factory.mktemp("old") / "old.m2l"
    clip = 0.1 * np.sin(np.arange(codec.sample_rate // 2) * 0.05, dtype=np.float32)
    codec.encode_file(clip).save(path)
    rewrite_header(path, reseal=True, model_id=f"{OLD}{UNTRAINED_TAG}", model_source=OLD)
    return path


def test_a_latent_file_of_a_former_name_reads_with_the_current_name(old_latent_file):
    lf = load_latents(old_latent_file)
    assert (lf.model_id, lf.model_source) == (f"{NEW}{UNTRAINED_TAG}", NEW)


def test_a_folder_of_latents_of_one_model_under_both_names_is_one_model(old_latent_file, tmp_path):
    from m2l.latents.store import catalogue

    folder = tmp_path / "latents"
    folder.mkdir()
    (folder / "old.m2l").write_bytes(old_latent_file.read_bytes())
    with pytest.warns(UserWarning, match="untrained"):
        codec = m2l.load(NEW, device="cpu")
    codec.encode_file(np.zeros(codec.sample_rate // 2, dtype=np.float32)).save(folder / "new.m2l")
    entries = catalogue(folder)
    assert {(e.model_id, e.model_source) for e in entries} == {(f"{NEW}{UNTRAINED_TAG}", NEW)}


def test_a_latent_file_of_a_former_name_decodes_with_the_renamed_preset(old_latent_file, tmp_path, capsys):
    with pytest.warns(UserWarning, match="untrained"):
        codec = m2l.load(NEW, device="cpu")
    audio = codec.decode(load_latents(old_latent_file), seed=0)  # no model mismatch
    assert audio.shape[-1] == load_latents(old_latent_file).length
    # no --model: the model the file records (by its former name) is found and accepted
    code, _, err = run(capsys, "decode", old_latent_file, "-o", tmp_path / "d.wav", "--device", "cpu")
    assert code == 0, err
    assert f"using the model recorded in {old_latent_file}: {NEW}" in err
    code, _, err = run(capsys, "decode", old_latent_file, "-o", tmp_path / "e.wav", "--model", OLD, "-q")
    assert code == 0, err
    code, out, err = run(capsys, "info", "--json", old_latent_file)
    assert code == 0, err
    assert json.loads(out)["model_id"] == f"{NEW}{UNTRAINED_TAG}"


def test_a_checkpoint_of_a_former_name_loads_as_the_current_preset_and_decodes_its_latents(tmp_path, capsys):
    path = tmp_path / "old.safetensors"
    save_checkpoint(path, random_model(NEW, seed=2).state_dict(), preset(NEW))
    rewrite_header(path, reseal=True, config=json.dumps({**config_to_dict(preset(NEW)), "name": OLD}))
    model, model_id = load_model(path)
    assert model.cfg.name == NEW and model_id.startswith(f"{NEW}@")
    # its latents, written by an older m2l under the former name, decode without a mismatch
    codec = m2l.load(path, device="cpu")
    lf_path = tmp_path / "a.m2l"
    codec.encode_file(np.zeros(codec.sample_rate // 2, dtype=np.float32)).save(lf_path)
    rewrite_header(lf_path, reseal=True, model_id=model_id.replace(NEW, OLD, 1))
    codec.decode(load_latents(lf_path), seed=0)
    # the former name with --checkpoint, and what `m2l info` reports
    code, _, err = run(
        capsys, "decode", lf_path, "-o", tmp_path / "d.wav", "--model", OLD, "--checkpoint", path
    )
    assert code == 0, err
    code, out, err = run(capsys, "info", "--json", path)
    assert code == 0, err
    assert json.loads(out)["name"] == NEW


def test_a_training_config_of_a_former_name_is_the_current_preset(tmp_path):
    assert TrainConfig(model=OLD).model == NEW
    assert apply_overrides(TrainConfig(), [f"model={OLD}"]).model == NEW
    assert TRAIN_PRESETS["tiny-v2"]().model == NEW
    # a run folder whose config.json an older m2l wrote resumes under the same preset
    asked = TRAIN_PRESETS["tiny-v2"]()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({**train_config_to_dict(asked), "model": OLD}))
    plan = check_run(run_dir, asked)
    assert plan.existing and plan.cfg == asked
