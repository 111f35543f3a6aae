"""Tests for the `m2l` command line (in-process via `main`, once through `python -m m2l`).

All tests use the tiny random checkpoint from conftest; none touches the network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from m2l.cli import COMMANDS, main
from m2l.formats import load_latents


def write_tone(
    path: Path, seconds: float = 0.5, rate: int = 44100, channels: int = 1, subtype: str = "PCM_16"
) -> Path:
    t = np.arange(int(round(seconds * rate))) / rate
    data = np.stack([0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data.astype(np.float32), rate, subtype=subtype)
    return path


def run(capsys: pytest.CaptureFixture, *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, name: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("m2l: error: "), err
    assert name in lines[0], err
    assert "Traceback" not in err


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models on a shared 2-core runner: several torch threads only fight each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def model(tiny_checkpoint: Path) -> list[str]:
    return ["--model", str(tiny_checkpoint), "--device", "cpu", "--quiet"]


def test_commands_table_is_extensible():
    assert {"encode", "decode", "reconstruct", "info", "convert"} <= set(COMMANDS)
    for cmd in COMMANDS.values():
        assert callable(cmd.add_arguments) and callable(cmd.run)


def test_round_trip_encode_info_decode(tmp_path, capsys, model, tiny_checkpoint):
    src = write_tone(tmp_path / "in" / "song.wav", seconds=2.0, rate=48000, channels=2)
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "lat", *model)
    assert code == 0, err
    m2l_file = tmp_path / "lat" / "song.m2l"
    lf = load_latents(m2l_file)
    assert lf.sample_rate == 44100 and lf.channels == 2
    assert abs(lf.length - round(96000 * 44100 / 48000)) <= 1

    code, out, err = run(capsys, "info", m2l_file)
    assert code == 0, err
    for fragment in ("m2l latent file", lf.model_id, "44100", "2.000 s", "latent frames", "std"):
        assert fragment in out
    code, out, err = run(capsys, "info", "--json", m2l_file)
    assert code == 0, err
    info = json.loads(out)
    assert info["type"] == "latents" and info["format_version"] == 1
    assert info["length"] == lf.length and info["channels"] == 2
    assert info["latent_shape"] == list(lf.latents.shape)
    assert info["latent_frames"] == lf.latents.shape[-1]
    assert info["duration_seconds"] == pytest.approx(lf.length / 44100)
    assert info["stats"]["min"] <= info["stats"]["mean"] <= info["stats"]["max"]

    code, _, err = run(capsys, "decode", m2l_file, "-o", tmp_path / "dec", "--seed", "1", *model)
    assert code == 0, err
    assert err == ""  # nothing about the seed or progress with --quiet
    audio, rate = sf.read(tmp_path / "dec" / "song.wav", always_2d=True)
    assert rate == 44100 and audio.shape == (lf.length, 2)
    assert np.abs(audio).max() > 0

    code, _, err = run(capsys, "decode", m2l_file, "-o", tmp_path / "x.flac", "--seed", "1", *model)
    assert code == 0, err
    assert sf.info(tmp_path / "x.flac").format == "FLAC"


def test_preset_with_checkpoint_and_single_file_output(tmp_path, capsys, tiny_checkpoint):
    src = write_tone(tmp_path / "a.wav")
    code, _, err = run(
        capsys,
        "encode",
        src,
        "-o",
        tmp_path / "named.m2l",
        "--model",
        "m2l-v1-tiny",
        "--checkpoint",
        tiny_checkpoint,
        "--device",
        "cpu",
        "-q",
    )
    assert code == 0, err
    assert (tmp_path / "named.m2l").is_file()
    # --checkpoint with a non-preset model is refused in one line
    code, _, err = run(
        capsys,
        "encode",
        src,
        "-o",
        tmp_path / "o",
        "--model",
        tiny_checkpoint,
        "--checkpoint",
        tiny_checkpoint,
        "-q",
    )
    assert code == 1
    assert_one_line_error(err, "--checkpoint")


def test_reconstruct_tree_mirrors_outputs(tmp_path, capsys, model):
    root = tmp_path / "music"
    write_tone(root / "top.wav")
    write_tone(root / "a" / "x.WAV", channels=2)
    write_tone(root / "a" / "b" / "y.flac", rate=22050)
    (root / "a" / "notes.txt").write_text("not audio")
    write_tone(root / ".hidden" / "z.wav")
    out = tmp_path / "out"
    code, _, err = run(capsys, "reconstruct", root, "-o", out, "--format", "flac", *model)
    assert code == 0, err
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == ["a/b/y.flac", "a/x.flac", "top.flac"]
    for rel, channels in (("top.flac", 1), ("a/x.flac", 2), ("a/b/y.flac", 1)):
        info = sf.info(out / rel)
        assert info.samplerate == 44100 and info.channels == channels
    # the 22.05 kHz input comes back at the model rate with the resampled length
    assert sf.info(out / "a/b/y.flac").frames == 22050


def test_output_folder_inside_input_is_not_walked(tmp_path, capsys, model):
    root = tmp_path / "music"
    write_tone(root / "a.wav")
    code, _, err = run(capsys, "reconstruct", root, "-o", root / "rec", *model)
    assert code == 0, err
    code, _, err = run(capsys, "reconstruct", root, "-o", root / "rec", "--force", *model)
    assert code == 0, err
    assert not (root / "rec" / "rec").exists()


def test_refuses_overwrite_without_force(tmp_path, capsys, model):
    src = write_tone(tmp_path / "a.wav")
    out = tmp_path / "lat"
    assert run(capsys, "encode", src, "-o", out, *model)[0] == 0
    before = (out / "a.m2l").read_bytes()
    code, _, err = run(capsys, "encode", src, "-o", out, *model)
    assert code == 1
    assert_one_line_error(err, str(out / "a.m2l"))
    assert "--force" in err
    assert (out / "a.m2l").read_bytes() == before
    code, _, err = run(capsys, "encode", src, "-o", out, "--force", *model)
    assert code == 0, err


def test_seed_makes_decoding_reproducible(tmp_path, capsys, model):
    src = write_tone(tmp_path / "a.wav")
    assert run(capsys, "encode", src, "-o", tmp_path, *model)[0] == 0
    lat = tmp_path / "a.m2l"
    outs = {}
    for name, seed in (("s1", "7"), ("s2", "7"), ("s3", "8")):
        code, _, err = run(
            capsys, "decode", lat, "-o", tmp_path / f"{name}.wav", "--seed", seed, "--steps", "2", *model
        )
        assert code == 0, err
        outs[name] = sf.read(tmp_path / f"{name}.wav")[0]
    np.testing.assert_array_equal(outs["s1"], outs["s2"])
    assert not np.array_equal(outs["s1"], outs["s3"])


def _bad_inputs(tmp_path: Path, make_latents) -> dict[str, tuple[str, Path]]:
    rng = np.random.default_rng(0)
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    three = write_tone(tmp_path / "three.wav", channels=3)
    tampered = make_latents("tampered")
    data = bytearray(tampered.read_bytes())
    for i in range(len(data) - 40, len(data) - 20):
        data[i] ^= 0x5A
    tampered.write_bytes(bytes(data))
    truncated = make_latents("truncated")
    truncated.write_bytes(truncated.read_bytes()[:-100])
    return {
        "corrupt": ("encode", corrupt),
        "empty": ("encode", empty),
        "three_channels": ("encode", three),
        "missing": ("encode", tmp_path / "missing.wav"),
        "tampered": ("decode", tampered),
        "truncated": ("decode", truncated),
    }


@pytest.fixture()
def make_latents(tmp_path, capfd, model):
    src = write_tone(tmp_path / "src" / "good.wav", seconds=0.3)

    def make(name: str) -> Path:
        out = tmp_path / f"{name}.m2l"
        assert run(capfd, "encode", src, "-o", out, *model)[0] == 0
        return out

    return make


@pytest.mark.parametrize("case", ["corrupt", "empty", "three_channels", "missing", "tampered", "truncated"])
def test_bad_input_gives_one_line_error(tmp_path, capfd, model, make_latents, case):
    command, path = _bad_inputs(tmp_path, make_latents)[case]
    capfd.readouterr()
    code, out, err = run(capfd, command, path, "-o", tmp_path / "out", *model)
    assert code == 1
    assert_one_line_error(err, str(path))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_bad_file_does_not_stop_the_others(tmp_path, capsys, model):
    root = tmp_path / "in"
    write_tone(root / "a.wav")
    (root / "b.wav").write_bytes(b"RIFF junk")
    write_tone(root / "c.wav")
    code, _, err = run(capsys, "encode", root, "-o", tmp_path / "out", *model)
    assert code == 1
    assert_one_line_error(err, str(root / "b.wav"))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.m2l", "c.m2l"]


def test_downmix_accepts_many_channels(tmp_path, capsys, model):
    src = write_tone(tmp_path / "six.wav", channels=6)
    code, _, err = run(
        capsys, "reconstruct", src, "-o", tmp_path / "o.wav", "--downmix", "--seed", "0", *model
    )
    assert code == 0, err
    assert sf.info(tmp_path / "o.wav").channels == 1


def test_usage_and_resolution_errors(tmp_path, capsys, model):
    assert main(["encode", str(tmp_path)]) == 2  # no -o
    capsys.readouterr()
    assert main(["decode", "x.m2l", "-o", "o", "--steps", "0"]) == 2
    capsys.readouterr()
    assert main(["nonsense"]) == 2
    capsys.readouterr()
    empty_dir = tmp_path / "nothing"
    empty_dir.mkdir()
    code, _, err = run(capsys, "encode", empty_dir, "-o", tmp_path / "out", *model)
    assert code == 1
    assert_one_line_error(err, str(empty_dir))
    # a.wav and a.flac in one folder would both become a.m2l
    write_tone(tmp_path / "clash" / "a.wav")
    write_tone(tmp_path / "clash" / "a.flac")
    code, _, err = run(capsys, "encode", tmp_path / "clash", "-o", tmp_path / "out", *model)
    assert code == 1
    assert_one_line_error(err, "a.m2l")
    assert not (tmp_path / "out").exists()
    # several inputs need an output folder, not a file name
    code, _, err = run(
        capsys,
        "encode",
        tmp_path / "clash" / "a.wav",
        tmp_path / "clash" / "a.flac",
        "-o",
        tmp_path / "both.m2l",
        *model,
    )
    assert code == 1
    assert_one_line_error(err, "both.m2l")
    assert not (tmp_path / "both.m2l").exists()


def test_window_option_reaches_the_codec(tmp_path, capsys, model):
    src = write_tone(tmp_path / "a.wav", seconds=2.5)
    assert run(capsys, "encode", src, "-o", tmp_path / "full.m2l", *model)[0] == 0
    code, _, err = run(capsys, "encode", src, "-o", tmp_path / "win.m2l", "--window", "1", *model)
    assert code == 0, err
    full, win = load_latents(tmp_path / "full.m2l"), load_latents(tmp_path / "win.m2l")
    assert full.latents.shape == win.latents.shape
    assert not np.array_equal(full.latents.numpy(), win.latents.numpy())  # windows cross-faded
    assert run(capsys, "encode", src, "-o", tmp_path / "x.m2l", "--window", "0", *model)[0] == 2


def test_model_mismatch_needs_flag(tmp_path, capsys, model, tiny_checkpoint_other):
    src = write_tone(tmp_path / "a.wav", seconds=0.3)
    assert run(capsys, "encode", src, "-o", tmp_path, *model)[0] == 0
    other = ["--model", str(tiny_checkpoint_other), "--device", "cpu", "-q"]
    code, _, err = run(capsys, "decode", tmp_path / "a.m2l", "-o", tmp_path / "d1.wav", *other)
    assert code == 1
    assert_one_line_error(err, "--allow-model-mismatch")
    code, _, err = run(
        capsys, "decode", tmp_path / "a.m2l", "-o", tmp_path / "d2.wav", "--allow-model-mismatch", *other
    )
    assert code == 0, err


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


def test_convert(tmp_path, capsys, tiny_checkpoint):
    out = tmp_path / "copy.safetensors"
    code, stdout, err = run(capsys, "convert", tiny_checkpoint, out)
    assert code == 0, err
    model_id = stdout.strip()
    assert model_id.startswith("m2l-v1-tiny@")
    code, stdout, err = run(capsys, "info", "--json", out)
    assert json.loads(stdout)["model_id"] == model_id
    before = out.read_bytes()
    code, _, err = run(capsys, "convert", tiny_checkpoint, out)
    assert code == 1
    assert_one_line_error(err, str(out))
    assert out.read_bytes() == before
    code, stdout, err = run(capsys, "convert", tiny_checkpoint, out, "--force")
    assert code == 0 and stdout.strip() == model_id
    code, _, err = run(capsys, "convert", tmp_path / "missing.pt", tmp_path / "x.safetensors")
    assert code == 1
    assert_one_line_error(err, "missing.pt")


def test_python_dash_m_exit_code_and_clean_stderr(tmp_path, tiny_checkpoint):
    bad = tmp_path / "noise.wav"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "m2l",
            "encode",
            str(bad),
            "-o",
            str(tmp_path / "out"),
            "--model",
            str(tiny_checkpoint),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("m2l: model m2l-v1-tiny@")  # which model ran, then one error line
    assert len(lines) == 2 and lines[1].startswith("m2l: error: ") and "noise.wav" in lines[1]
    assert proc.stdout == ""
