"""The generator file: it round-trips (float32 and float16), `sniff` and `m2l info` know it, and a
damaged, forged or foreign file is refused with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_testing import run
from generate_testing import codec_checkpoint, tiny_generator, unit_stats
from latents_testing import flip_byte
from m2l_testing import assert_one_line_error, read_header, rewrite_header

import m2l
from m2l.errors import M2LError
from m2l.generate import checkpoint
from m2l.generate.checkpoint import NO_SHIPPED, load_generator, save_generator
from m2l.generate.sampling import sample_long
from m2l.latents.stats import LatentStats
from m2l.sniff import Kind, sniff


def _saved(path: Path, half: bool = False, labels: tuple[str, ...] = ("drums", "piano")) -> Path:
    model = tiny_generator(3, num_classes=len(labels))
    return save_generator(
        path,
        model,
        model.cfg,
        labels=labels,
        stats=unit_stats(),
        codec_id="c@1",
        codec_source="default",
        half=half,
    )


def test_the_file_round_trips(tmp_path):
    model = tiny_generator(3, num_classes=2)
    path = _saved(tmp_path / "g.safetensors")
    gen = m2l.load_generator(path)
    assert gen.cfg == model.cfg
    assert gen.labels == ("drums", "piano") and gen.label_of("piano") == 1 and gen.label_of(None) is None
    assert gen.stats == unit_stats()
    assert (gen.codec_id, gen.codec_source) == ("c@1", "default")
    for name, value in model.state_dict().items():
        assert torch.equal(gen.model.state_dict()[name], value), name
    assert sniff(path).kind is Kind.GENERATOR


def test_a_half_precision_file_loads_as_float32(tmp_path):
    model = tiny_generator(3, num_classes=2)
    gen = load_generator(_saved(tmp_path / "g.safetensors", half=True))
    weight = gen.model.proj_in.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, model.proj_in.weight.half().float())
    assert not torch.equal(weight, model.proj_in.weight)  # rounded to float16 indeed


def test_info_describes_a_generator(tmp_path, capsys):
    code, out, _ = run(capsys, "info", _saved(tmp_path / "g.safetensors"))
    assert code == 0
    assert "m2l latent generator" in out and "drums, piano" in out and "c@1" in out
    assert "gen-tiny (flow objective)" in out


def test_a_damaged_file_is_refused_with_one_line(tmp_path):
    path = _saved(tmp_path / "g.safetensors")
    flip_byte(path)
    with pytest.raises(M2LError) as err:
        load_generator(path)
    assert_one_line_error(err, str(path), "checksum")


def test_resealed_metadata_is_still_checked(tmp_path):
    path = _saved(tmp_path / "g.safetensors")
    rewrite_header(path, reseal=True, labels='["drums"]')
    with pytest.raises(M2LError) as err:
        load_generator(path)
    assert_one_line_error(err, str(path), "1 distinct labels", "2 classes")
    path = _saved(tmp_path / "h.safetensors")
    rewrite_header(path, reseal=True, config='{"name": "gen-tiny"}')
    with pytest.raises(M2LError) as err:
        load_generator(path)
    assert_one_line_error(err, str(path), "malformed generator config")


def test_another_file_is_refused_with_one_line(tmp_path):
    codec = codec_checkpoint(tmp_path)
    with pytest.raises(M2LError) as err:
        load_generator(codec)
    assert_one_line_error(err, str(codec), "not an m2l-generator file")


def test_save_refuses_labels_that_do_not_fit_and_an_existing_file(tmp_path):
    model = tiny_generator(3, num_classes=2)
    with pytest.raises(M2LError) as err:
        save_generator(
            tmp_path / "g",
            model,
            model.cfg,
            labels=("a",),
            stats=unit_stats(),
            codec_id="c",
            codec_source="d",
        )
    assert_one_line_error(err, "1 distinct labels")
    path = _saved(tmp_path / "g.safetensors")
    with pytest.raises(M2LError) as err:
        _saved(path)
    assert_one_line_error(err, "already exists")


def test_no_shipped_generator_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "SHIPPED_GENERATOR", tmp_path / "missing.safetensors")
    with pytest.raises(M2LError) as err:
        load_generator()
    assert str(err.value) == NO_SHIPPED
    assert "m2l gen train" in NO_SHIPPED and "--model" in NO_SHIPPED


def test_a_run_folder_without_a_generator_is_named(tmp_path):
    with pytest.raises(M2LError) as err:
        load_generator(tmp_path)
    assert_one_line_error(err, str(tmp_path), "generator.safetensors")


def test_export_writes_a_half_precision_copy_that_samples_alike(tmp_path):
    source = _saved(tmp_path / "g.safetensors")
    shipped = checkpoint.export_generator(source, tmp_path / "half.safetensors", half=True)
    assert (tmp_path / "half.safetensors").stat().st_size < 0.6 * source.stat().st_size
    assert shipped.extra["exported_from"] == str(source)
    assert (shipped.labels, shipped.codec_id, shipped.stats) == (("drums", "piano"), "c@1", unit_stats())
    full = load_generator(source)
    x, t = torch.randn(2, 64, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([0.3, 0.8])
    a, b = full.model(x, t), shipped.model(x, t)  # [2, 64, 16]
    assert 0 < float((a - b).abs().max()) < 1e-2 * float(a.abs().max())  # rounded, not changed
    with pytest.raises(M2LError, match="exists"):
        checkpoint.export_generator(source, tmp_path / "half.safetensors", half=True)


def test_the_objective_is_saved_and_a_file_from_before_it_loads_as_flow(tmp_path):
    model = tiny_generator(3, objective="edm")
    stored = {"labels": (), "stats": unit_stats(), "codec_id": "c", "codec_source": "d"}
    path = save_generator(tmp_path / "edm.safetensors", model, model.cfg, **stored)
    assert load_generator(path).cfg.objective == "edm"
    old = _saved(tmp_path / "old.safetensors")
    config = json.loads(read_header(old)[0]["__metadata__"]["config"])
    del config["objective"]  # as m2l wrote it before EDM
    rewrite_header(old, reseal=True, config=json.dumps(config))
    assert load_generator(old).cfg.objective == "flow"
    rewrite_header(old, reseal=True, config=json.dumps({**config, "objective": "ddpm"}))
    with pytest.raises(M2LError) as err:
        load_generator(old)
    assert_one_line_error(err, str(old), "objective", "flow, edm", "ddpm")


def test_sample_returns_codec_scale_latents_keeping_a_prompt(tmp_path):
    model = tiny_generator(5)
    stats = LatentStats("v1", "c@1", "c0ffee", 100, (2.0,) * 64, (3.0,) * 64, 2.0, 3.0)
    path = save_generator(
        tmp_path / "g.safetensors", model, model.cfg, labels=(), stats=stats, codec_id="c@1", codec_source="c"
    )
    gen = load_generator(path)
    z = gen.sample(40, seed=1, steps=2, batch=3)  # [3, 64, 40]
    assert z.shape == (3, 64, 40)
    assert torch.equal(z, gen.sample(40, seed=1, steps=2, batch=3))
    assert not torch.equal(z, gen.sample(40, seed=2, steps=2, batch=3))
    normalised = sample_long(gen.model, 40, 2, 1, batch=3)
    assert torch.allclose(z, 2.0 + 3.0 * normalised, atol=1e-5)  # the codec's scale
    prompt = 2.0 + 3.0 * torch.randn(64, 10, generator=torch.Generator().manual_seed(0))
    continued = gen.sample(30, seed=0, steps=2, prompt=prompt)  # [1, 64, 30]
    assert continued.shape == (1, 64, 30)
    assert torch.allclose(continued[0, :, :10], prompt, atol=1e-5)
