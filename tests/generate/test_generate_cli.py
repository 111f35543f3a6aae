"""`m2l generate` with a tiny generator and the micro codec: the requested length, one file per
seed, prompts kept exactly (continuation) or around the gap (inpainting), and one-line refusals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import soundfile as sf
import torch
from cli_testing import run, write_tone
from generate_testing import codec_checkpoint, generator_file
from m2l_testing import assert_one_line_error

from m2l.generate import checkpoint
from m2l.generate.checkpoint import NO_SHIPPED, load_generator
from m2l.generate.make import Request, make_latents, prompt_latents
from m2l.loading import load


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generator file (classes "calm" and "loud") that decodes with a micro codec checkpoint."""
    folder = tmp_path_factory.mktemp("model")
    return generator_file(folder / "g.safetensors", codec_checkpoint(folder), labels=("calm", "loud"))


def _generate(capsys, model: Path, out: Path, *options: str | Path) -> tuple[int, str, str]:
    return run(capsys, "generate", "-o", out, "--model", model, "--steps", "2", *options)


def test_writes_mono_audio_of_the_requested_length(capsys, model, tmp_path):
    code, stdout, err = _generate(capsys, model, tmp_path / "a.wav", "--seconds", "2.5")
    assert code == 0, err
    info = sf.info(tmp_path / "a.wav")
    assert (info.frames, info.channels) == (round(2.5 * 44100), 1)
    assert "a.wav (2.50 s, seed 0)" in stdout


def test_the_seed_decides_the_audio(capsys, model, tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        code, _, err = _generate(capsys, model, tmp_path / f"{name}.wav", "--seconds", "1", "--seed", seed)
        assert code == 0, err
    a, b, c = ((tmp_path / f"{name}.wav").read_bytes() for name in "abc")
    assert a == b and a != c


def test_an_output_is_only_replaced_with_force(capsys, model, tmp_path):
    out = tmp_path / "a.wav"
    out.write_bytes(b"keep me")
    code, _, err = _generate(capsys, model, out, "--seconds", "1")
    assert code == 1
    assert_one_line_error(err, str(out), "already exists", "--force")
    assert out.read_bytes() == b"keep me"
    code, _, err = _generate(capsys, model, out, "--seconds", "1", "--force")
    assert code == 0, err
    assert sf.info(out).frames == 44100


def test_a_continuation_keeps_the_prompt_latents_exactly(capsys, model, tmp_path):
    prompt = write_tone(tmp_path / "prompt.wav", seconds=1.0)
    gen = load_generator(model)
    codec = load(gen.codec_source, device="cpu")
    given, samples = prompt_latents(gen, codec, prompt)  # [D, P]
    z, length = make_latents(gen, codec, Request(seconds=3.0, steps=2, prompt=prompt))  # [1, D, T]
    assert samples == 44100 and length == 3 * 44100
    assert z.shape[-1] == codec.num_units(length) > given.shape[-1]
    assert torch.equal(z[0, :, : given.shape[-1]], given)
    code, _, err = _generate(capsys, model, tmp_path / "out.wav", "--seconds", "3", "--prompt", prompt)
    assert code == 0, err
    assert sf.info(tmp_path / "out.wav").frames == 3 * 44100


def test_inpainting_remakes_only_the_gap(capsys, model, tmp_path):
    prompt = write_tone(tmp_path / "prompt.wav", seconds=3.0)
    gen = load_generator(model)
    codec = load(gen.codec_source, device="cpu")
    given, _ = prompt_latents(gen, codec, prompt)  # [D, P], P > the 16-frame window
    z, length = make_latents(gen, codec, Request(steps=2, prompt=prompt, inpaint=(1.0, 1.5)))
    per_second = codec.sample_rate / codec.samples_per_unit
    first, stop = math.floor(1.0 * per_second), math.ceil(1.5 * per_second)
    assert length == 3 * 44100 and z.shape[-1] == given.shape[-1]
    kept = torch.ones(given.shape[-1], dtype=torch.bool)
    kept[first:stop] = False
    assert torch.equal(z[0][:, kept], given[:, kept])
    assert not torch.allclose(z[0][:, ~kept], given[:, ~kept])
    code, _, err = _generate(capsys, model, tmp_path / "out.wav", "--prompt", prompt, "--inpaint", "1:1.5")
    assert code == 0, err
    assert sf.info(tmp_path / "out.wav").frames == 3 * 44100


def test_a_style_changes_the_audio_and_an_unknown_one_is_named(capsys, model, tmp_path):
    for name, style in (("calm", "calm"), ("loud", "loud")):
        code, _, err = _generate(
            capsys, model, tmp_path / f"{name}.wav", "--seconds", "1", "--style", style, "--guidance", "2"
        )
        assert code == 0, err
    assert (tmp_path / "calm.wav").read_bytes() != (tmp_path / "loud.wav").read_bytes()
    code, _, err = _generate(capsys, model, tmp_path / "x.wav", "--seconds", "1", "--style", "jazz")
    assert code == 1
    assert_one_line_error(err, "unknown style 'jazz'", "calm, loud")


def test_bad_requests_are_one_line(capsys, model, tmp_path):
    code, _, err = _generate(capsys, model, tmp_path / "x.wav", "--inpaint", "1:2")
    assert code == 1
    assert_one_line_error(err, "--inpaint needs --prompt")
    prompt = write_tone(tmp_path / "prompt.wav", seconds=2.0)
    code, _, err = _generate(capsys, model, tmp_path / "x.wav", "--seconds", "1", "--prompt", prompt)
    assert code == 1
    assert_one_line_error(err, "not longer than the prompt")
    code, _, err = _generate(capsys, model, tmp_path / "x.wav", "--prompt", prompt, "--inpaint", "0:2")
    assert code == 1
    assert_one_line_error(err, "--inpaint", "nothing to keep")
    assert not (tmp_path / "x.wav").exists()


def test_without_model_the_missing_shipped_generator_is_one_clear_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "SHIPPED_GENERATOR", tmp_path / "missing.safetensors")
    code, _, err = run(capsys, "generate", "-o", tmp_path / "x.wav")
    assert code == 1
    assert err.strip() == f"m2l: error: {NO_SHIPPED}"
    assert not (tmp_path / "x.wav").exists()


def test_gen_export_writes_a_half_precision_copy_that_generate_takes(capsys, model, tmp_path):
    half = tmp_path / "half.safetensors"
    code, out, err = run(capsys, "gen", "export", model, half, "--fp16")
    assert code == 0, err
    assert str(half) in out and "float16" in out
    assert half.stat().st_size < 0.6 * model.stat().st_size
    code, _, err = _generate(capsys, half, tmp_path / "a.wav", "--seconds", "1")
    assert code == 0, err
    code, _, err = run(capsys, "gen", "export", model, half)
    assert code == 1
    assert_one_line_error(err, str(half), "exists")
