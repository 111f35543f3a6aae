import json
import pickle

import numpy as np
import pytest
import torch
from m2l_testing import assert_one_line_error, random_model, rewrite_header

import m2l
from m2l import loading
from m2l.config import config_to_dict
from m2l.formats import STATE_FORMAT, atomic_save, save_checkpoint, seal
from m2l.loading import convert, load_model
from m2l.models.v1 import Music2Latent
from m2l.models.v1_authors import authors_key_map


def test_preset_with_checkpoint_and_checkpoint_alone(tmp_path):
    model = random_model("m2l-v1-tiny")
    save_checkpoint(tmp_path / "t.safetensors", model.state_dict(), model.cfg)
    a = m2l.load("m2l-v1-tiny", device="cpu", checkpoint=tmp_path / "t.safetensors")
    b = m2l.load(tmp_path / "t.safetensors", device="cpu")
    assert a.model_id == b.model_id and a.model_id.startswith("m2l-v1-tiny@")
    x = torch.randn(1, 9000) * 0.1
    assert torch.equal(a.encode(x), b.encode(x))
    with pytest.raises(m2l.M2LError, match="not m2l-v1-small"):
        m2l.load("m2l-v1-small", checkpoint=tmp_path / "t.safetensors")


def test_untrained_preset_warns():
    with pytest.warns(UserWarning, match="untrained"):
        codec = m2l.load("m2l-v1-tiny", device="cpu")
    assert codec.model_id == "m2l-v1-tiny@untrained-seed0"


@pytest.mark.filterwarnings("ignore:.*untrained weights")
@pytest.mark.parametrize("name", ["m2l-v1-tiny", "m2l-v2-tiny"])
def test_an_untrained_preset_is_one_model_whatever_the_global_generator_holds(name):
    models = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        state = torch.get_rng_state()
        model, model_id = load_model(name)
        assert torch.equal(torch.get_rng_state(), state)  # left as it was
        assert model_id == f"{name}@untrained-seed{loading.UNTRAINED_SEED}"
        models.append(model.state_dict())
    for key, value in models[0].items():
        assert torch.equal(value, models[1][key]), key


def _authors_file(tmp_path):
    model = random_model("m2l-v1", seed=3)
    ours = model.state_dict()
    state = {k: ours[v] for k, v in authors_key_map(model.cfg, set(ours)).items()}
    for j in range(4):
        state[f"decoder.bottleneck_layers.{j}.proj_emb.weight"] = torch.zeros(512, 256)
        state[f"decoder.bottleneck_layers.{j}.proj_emb.bias"] = torch.zeros(512)
    path = tmp_path / "music2latent.pt"
    torch.save({"gen_state_dict": state}, path)
    return model, state, path


def test_authors_checkpoint_converts_and_round_trips(tmp_path):
    model, _, path = _authors_file(tmp_path)
    loaded, model_id = load_model(path)
    assert model_id.startswith("music2latent@")
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    convert(path, tmp_path / "conv.safetensors")
    again, _ = load_model(tmp_path / "conv.safetensors")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())
    with pytest.raises(m2l.M2LError, match="exists"):
        convert(path, tmp_path / "conv.safetensors")


def test_bad_checkpoints(tmp_path):
    _, state, _ = _authors_file(tmp_path)
    state.pop("conv_out.bias")
    torch.save({"gen_state_dict": state}, tmp_path / "missing.pt")
    with pytest.raises(m2l.M2LError, match="missing"):
        load_model(tmp_path / "missing.pt")
    torch.save({"other": 1}, tmp_path / "other.pt")
    with pytest.raises(m2l.M2LError, match="gen_state_dict"):
        load_model(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(m2l.M2LError, match="junk.pt"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(m2l.M2LError, match="no such"):
        load_model(tmp_path / "nope.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_code_is_refused(tmp_path, capsys):
    torch.save({"gen_state_dict": {"x": _Evil()}}, tmp_path / "evil.pt", pickle_module=pickle)
    with pytest.raises(m2l.M2LError, match="evil.pt"):
        load_model(tmp_path / "evil.pt")
    assert "pwned" not in capsys.readouterr().out


def test_hub_failure_is_one_clear_line(monkeypatch):
    hub = pytest.importorskip("huggingface_hub")

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(hub, "hf_hub_download", offline)
    monkeypatch.setattr(loading, "hub_reachable", lambda: True)
    with pytest.raises(m2l.M2LError, match=r"m2l.load\(PATH\), or --model PATH") as info:
        m2l.load("music2latent")
    assert_one_line_error(info)


@pytest.mark.parametrize("how", ["offline-variable", "unreachable"])
def test_offline_fails_fast_without_asking_the_network(monkeypatch, how):
    hub = pytest.importorskip("huggingface_hub")
    calls = []

    def download(*args, local_files_only=False, **kwargs):
        calls.append(local_files_only)
        raise OSError("not cached" if local_files_only else "slow retries")

    def no_route(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(hub, "hf_hub_download", download)
    monkeypatch.setattr(loading.socket, "create_connection", no_route)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    if how == "offline-variable":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(m2l.M2LError, match="HF_HUB_OFFLINE" if how == "offline-variable" else "unreachable"):
        m2l.load("music2latent")
    assert calls == [True]  # the local cache was asked; the network never was


def test_a_cached_authors_checkpoint_is_used_offline(monkeypatch, tmp_path):
    hub = pytest.importorskip("huggingface_hub")
    cached = tmp_path / "music2latent.pt"
    monkeypatch.setattr(hub, "hf_hub_download", lambda *a, local_files_only=False, **k: str(cached))
    monkeypatch.setattr(loading, "hub_reachable", lambda: pytest.fail("the network was asked"))
    assert loading.fetch_authors_checkpoint() == cached


def test_files_of_other_kinds_are_refused_by_name(tmp_path):
    import os
    import signal

    import soundfile as sf

    from m2l.formats import LatentFile, save_latents
    from m2l.train.export import pick_checkpoint

    save_latents(tmp_path / "a.m2l", LatentFile(torch.zeros(1, 64, 2), 44100, 8192, "m@1", "h", 0.06, 0))
    sf.write(str(tmp_path / "a.wav"), np.zeros(100, np.float32), 8000)
    os.mkfifo(tmp_path / "pipe.pt")
    expected = {
        "a.m2l": "is an m2l latent file, not a model checkpoint",
        "a.wav": "is an audio file, not a model checkpoint",
        "pipe.pt": "is a named pipe (FIFO), not a regular file",
    }
    previous = signal.signal(signal.SIGALRM, signal.default_int_handler)
    signal.alarm(20)  # a FIFO that was opened would block: fail by KeyboardInterrupt, not hang
    try:
        for name, message in expected.items():
            with pytest.raises(m2l.M2LError) as info:
                load_model(tmp_path / name)
            assert str(info.value) == f"{tmp_path / name}: {message}"
        with pytest.raises(m2l.M2LError, match="pipe.pt: is a named pipe"):
            pick_checkpoint(tmp_path / "pipe.pt")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(m2l.M2LError, match="a.m2l: is an m2l latent file, not an m2l training checkpoint"):
        pick_checkpoint(tmp_path / "a.m2l")


def test_loading_does_not_import_training_code():
    import ast
    from pathlib import Path

    import m2l.loading

    tree = ast.parse(Path(m2l.loading.__file__).read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names]
    assert not [name for name in imported if name.startswith("m2l.train")]


def _forged(tmp_path, kind: str, **changes):
    """A tiny model's weights in a checkpoint (or training checkpoint) whose config says `changes`."""
    model = random_model("m2l-v1-tiny")
    config = {**config_to_dict(model.cfg), **changes}
    path = tmp_path / f"{kind}.safetensors"
    if kind == "checkpoint":
        save_checkpoint(path, model.state_dict(), model.cfg)
        rewrite_header(path, reseal=True, config=json.dumps(config))
    else:
        tensors = {f"ema.{k}": v for k, v in model.state_dict().items()}
        meta = {"format": STATE_FORMAT, "version": "2", "model_config": json.dumps(config)}
        atomic_save(tensors, seal(tensors, meta), path, False)
    return path


@pytest.mark.parametrize("kind", ["checkpoint", "training-state"])
def test_a_config_bigger_than_its_weights_is_refused_before_building(tmp_path, monkeypatch, kind):
    built, build = [], Music2Latent.__init__

    def recording(model, config):  # records the builds that are not meta-device skeletons
        build(model, config)
        if next(model.parameters()).device.type != "meta":
            built.append(config)

    path = _forged(tmp_path, kind, base_channels=64, bottleneck_channels=4096)
    monkeypatch.setattr(Music2Latent, "__init__", recording)
    with pytest.raises(m2l.M2LError) as exc:
        load_model(path)
    message = str(exc.value)
    assert message.startswith(f"{path}: weights do not fit m2l-v1-tiny: its config needs ")
    assert "the file holds 418,546 values" in message and "\n" not in message
    assert built == []  # the model was never instantiated for real


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"heads": 0}, "heads must be"),
        ({"latent_scale": float("nan")}, "latent_scale must be"),
        ({"base_channels": 10**9}, "base_channels must be"),
        (
            {"spectral": {**config_to_dict(m2l.config.preset("m2l-v1-tiny"))["spectral"], "hop_length": 0}},
            "hop_length",
        ),
        ({"base_channels": 130, "multipliers": [1, 1, 1, 1, 1]}, "cannot build the model"),  # GroupNorm
    ],
)
def test_absurd_configs_in_files_are_one_line_errors(tmp_path, changes, fragment):
    for kind in ("checkpoint", "training-state"):
        path = _forged(tmp_path, kind, **changes)
        with pytest.raises(m2l.M2LError, match=fragment) as exc:
            load_model(path)
        assert str(exc.value).startswith(f"{path}: ") and "\n" not in str(exc.value)


@pytest.mark.parametrize(
    "source,hint",
    [
        ("small", "(did you mean m2l-v1-small or m2l-v2-small or m2l-v2-small-stereo?)"),
        ("small-v2-stereo", "(did you mean m2l-v2-small-stereo?)"),
        ("m2l-v1-smal", "(did you mean m2l-v1-small?)"),
    ],
)
def test_a_training_preset_name_or_a_typo_is_answered_with_the_model_presets(source, hint):
    with pytest.raises(m2l.M2LError) as err:
        load_model(source)
    assert hint in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(m2l.M2LError) as err:
        load_model("qqq")
    assert "did you mean" not in str(err.value)
