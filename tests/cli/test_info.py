"""`m2l info` (`m2l.cli.info`): checkpoints and latent files described as text and JSON."""

from __future__ import annotations

import json

import pytest
from cli_testing import bad_latent_files, run
from m2l_testing import assert_one_line_error

from m2l.cli.info import format_info, inspect_path
from m2l.errors import M2LError


def test_info_checkpoint(capsys, tiny_checkpoint, tmp_path):
    code, out, err = run(capsys, "info", tiny_checkpoint)
    assert code == 0, err
    for fragment in ("m2l checkpoint", "m2l-v1-tiny", "parameters", "base_channels = 8"):
        assert fragment in out
    code, out, err = run(capsys, "info", "--json", tiny_checkpoint, tiny_checkpoint)
    assert code == 0, err
    objs = [json.loads(line) for line in out.strip().splitlines()]
    assert len(objs) == 2
    info = objs[0]
    assert info["type"] == "checkpoint" and info["name"] == "m2l-v1-tiny" and info["kind"] == "v1"
    assert info["parameters"] > 100_000 and len(info["sha256"]) == 64
    assert info["model_id"] == f"m2l-v1-tiny@{info['sha256'][:12]}"
    assert info["config"]["base_channels"] == 8
    # a missing path and a non-m2l file fail in one line each, the good one is still printed
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    code, out, err = run(capsys, "info", "--json", tmp_path / "none.m2l", junk, tiny_checkpoint)
    assert code == 1
    assert len(out.strip().splitlines()) == 1
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "none.m2l" in lines[0] and "junk.bin" in lines[1]
    assert "Traceback" not in err


def test_format_info_v2_latents_and_training_checkpoints():
    stats = {"min": -1.5, "max": 2.25, "mean": 0.0, "std": None}
    latents = {
        "path": "song.m2l",
        "type": "latents",
        "format_version": 1,
        "model_id": "m2l-v2@abc",
        "config_hash": "h",
        "kind": "v2",
        "sample_rate": 44100,
        "channels": 1,
        "length": 44100,
        "duration_seconds": 1.0,
        "latent_shape": [1, 2, 4, 64],
        "chunks": 2,
        "latents_per_chunk": 4,
        "latent_dim": 64,
        "latent_frames": 8,
        "latent_scale": 0.5,
        "left_pad": 0,
        "stats": stats,
        "source_sample_rate": 48000,
        "stereo": "joint",
        "extra": {"audio_channels": 2, "source_sample_rate": 48000},
    }
    text = format_info(latents).splitlines()
    assert text[0] == "song.m2l"
    assert "  source rate:       48000 Hz" in text and "  stereo:            joint (one row)" in text
    assert "  chunks:            2 x 4 latents" in text
    assert "  latent shape:      [1, 2, 4, 64]" in text
    assert text[-1] == "  latent values:     min -1.5  max 2.25  mean 0  std None"
    training = {
        "path": "run/last.safetensors",
        "type": "training-checkpoint",
        "step": 500,
        "name": "m2l-v1-small",
        "kind": "v1",
        "train_config": "small",
        "parameters": 1234567,
        "config": {},
    }
    assert format_info(training).splitlines()[1:] == [
        "  type:              m2l training checkpoint (m2l.load / --model use its EMA weights)",
        "  step:              500",
        "  config:            m2l-v1-small (v1), recipe small",
        "  parameters:        1,234,567",
    ]


def test_inspect_path_refuses_folders_and_missing_paths(tmp_path):
    with pytest.raises(M2LError, match="is a directory"):
        inspect_path(tmp_path)
    with pytest.raises(M2LError, match="no such file"):
        inspect_path(tmp_path / "none.m2l")


def test_info_reports_tampered_and_malformed_latent_files_in_one_line(capsys, tmp_path, model):
    cases = bad_latent_files(capsys, tmp_path, model)
    code, out, err = run(capsys, "info", "--json", tmp_path / "good.m2l")
    assert code == 0 and json.loads(out)["format_version"] == 2, err
    for path, fragment in cases.items():
        code, out, err = run(capsys, "info", path)
        assert code == 1 and out == "", (path.name, out)
        assert_one_line_error(err, str(path))
        assert fragment in err, err


def test_info_says_how_a_latent_file_holds_stereo(capsys, tiny_checkpoint, tmp_path):
    import dataclasses

    import torch

    from m2l.loading import load

    codec = load(tiny_checkpoint, device="cpu")
    pair = 0.1 * torch.randn(2, 20000, generator=torch.Generator().manual_seed(0))
    lf = codec.encode_file(pair, source_sample_rate=22050)
    lf.save(tmp_path / "ms.m2l")
    dataclasses.replace(lf, extra={"source_sample_rate": 22050}).save(tmp_path / "older.m2l")
    codec.encode_file(pair[:1]).save(tmp_path / "mono.m2l")
    code, out, err = run(capsys, "info", tmp_path / "ms.m2l", tmp_path / "older.m2l", tmp_path / "mono.m2l")
    assert code == 0, err
    ms, older, mono = out.split("\n\n") if "\n\n" in out else (out, "", "")
    assert "  stereo:            mid/side (decoded back to left/right)" in ms
    assert "  source rate:       22050 Hz" in ms
    assert "  stereo:            left/right" in older
    assert "stereo:" not in mono
    code, out, _ = run(capsys, "info", "--json", tmp_path / "ms.m2l")
    assert json.loads(out)["stereo"] == "ms"


def test_info_of_a_folder_describes_every_m2l_file_in_it(capsys, tmp_path, model, tiny_checkpoint):
    import shutil

    from cli_testing import write_tone

    audio = tmp_path / "audio"
    for rel in ("b.wav", "a/x.wav"):
        write_tone(audio / rel, seconds=0.3)
    folder = tmp_path / "mixed"
    assert run(capsys, "encode", audio, "-o", folder, *model)[0] == 0
    shutil.copy(tiny_checkpoint, folder / "a" / "model.safetensors")
    shutil.copy(audio / "b.wav", folder / "b.wav")
    (folder / "notes.txt").write_text("not an m2l file")
    shutil.copy(folder / "b.m2l", folder / ".hidden.m2l")
    expected = [folder / "a" / "model.safetensors", folder / "a" / "x.m2l", folder / "b.m2l"]

    code, out, err = run(capsys, "info", "--json", folder)
    assert code == 0, err
    infos = [json.loads(line) for line in out.splitlines()]
    assert [info["path"] for info in infos] == [str(p) for p in expected]
    assert [info["type"] for info in infos] == ["checkpoint", "latents", "latents"]
    assert err == f"m2l: {folder}: skipped 2 files that are not m2l files\n"
    code, out, _ = run(capsys, "info", folder / "a")  # text: one block per file, the path first
    assert code == 0 and out.split("\n\n")[1].startswith(f"{folder / 'a' / 'x.m2l'}\n")

    (folder / "a" / "x.m2l").write_bytes(b"damaged")  # an .m2l file fails, the rest are described
    code, out, err = run(capsys, "info", "--json", folder)
    assert code == 1 and len(out.splitlines()) == 2
    assert err.startswith(f"m2l: error: {folder / 'a' / 'x.m2l'}: ") and len(err.splitlines()) == 2
    code, out, err = run(capsys, "info", audio)
    assert code == 1 and out == ""
    assert_one_line_error(err, f"{audio}: no m2l files in this folder")
