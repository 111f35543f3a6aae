"""`m2l eval` end to end through `m2l.cli.main`: results.json, --force, bad input, sigma_cond."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from cli_testing import run
from eval_testing import RATE, save_random_checkpoint, write_items

from m2l.audio.io import load_audio
from m2l.cli import main
from m2l.evaluate.boundaries import boundary_analysis, boundary_positions
from m2l.evaluate.embeddings import load_embedder
from m2l.evaluate.fad import fad
from m2l.evaluate.fidelity import fidelity_scores
from m2l.evaluate.latents import latent_stats
from m2l.evaluate.metrics import mel_distance, si_sdr, stft_distance
from m2l.loading import load

FAST = ["--no-visqol", "-q", "--device", "cpu"]


def error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("m2l: error:")]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("eval-ckpt")
    return {
        "v1": save_random_checkpoint(root / "v1.safetensors", "m2l-v1-tiny", seed=0),
        "v2": save_random_checkpoint(root / "v2.safetensors", "m2l-v2-tiny", seed=1),
    }


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DATA/musicset/test/manifest.jsonl listing two items by paths relative to DATA."""
    data = tmp_path_factory.mktemp("DATA")
    split = data / "musicset" / "test"
    paths = write_items(split)
    lines = [
        json.dumps(
            {
                "path": p.relative_to(data).as_posix(),
                "duration": 1.0,
                "sample_rate": RATE,
                "channels": 1,
                "licence": "CC0",
                "source": "generated",
            }
        )
        for p in reversed(paths)
    ]
    (split / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return split / "manifest.jsonl"


@pytest.fixture(scope="module")
def evaluated(
    tmp_path_factory: pytest.TempPathFactory, checkpoints: dict[str, Path], manifest: Path
) -> tuple[Path, dict, int, str]:
    out = tmp_path_factory.mktemp("eval-out") / "report"
    argv = [
        "eval",
        "--model",
        f"v1={checkpoints['v1']}",
        "--model",
        f"v2={checkpoints['v2']}",
        "--data",
        str(manifest),
        "--out",
        str(out),
        "--steps",
        "1,2",
        "--sigma-cond",
        "0.4",
        "--seconds",
        "0.75",
        "--audio-items",
        "1",
        *FAST,
    ]
    code = main(argv)
    return out, json.loads((out / "results.json").read_text()), code, " ".join(argv)


def test_results_structure(evaluated, checkpoints, capsys):
    out, res, code, _ = evaluated
    assert code == 0
    assert res["format"] == "m2l-eval" and res["version"] == 1
    assert "--sigma-cond 0.4" in res["command"] and "--seconds 0.75" in res["command"]
    assert res["data"]["kind"] == "manifest" and res["data"]["seconds"] == 0.75
    assert any("ignored for v1 model(s): v1" in n for n in res["notes"])
    assert [i["name"] for i in res["items"]] == ["musicset/test/b.wav", "musicset/test/sub/a.flac"]
    assert [i["channels"] for i in res["items"]] == [1, 2]
    crop = round(0.75 * RATE)
    assert res["items"][0]["start_seconds"] == pytest.approx(((RATE - crop) // 2) / RATE)
    assert res["items"][0]["media"] is not None and res["items"][1]["media"] is None
    v1, v2 = res["models"]
    assert (v1["label"], v1["version"], v2["label"], v2["version"]) == ("v1", "v1", "v2", "v2")
    assert v1["model_id"] == load(checkpoints["v1"], device="cpu").model_id
    assert [s["label"] for s in v1["settings"]] == ["steps=1", "steps=2"]
    assert [s["label"] for s in v2["settings"]] == ["steps=1 sigma_cond=0.4", "steps=2 sigma_cond=0.4"]
    assert v2["boundary_spacing"] == 32768
    for model in res["models"]:
        for s in model["settings"]:
            changes = {"visqol_change_from_1_step", "mel_distance_change_from_1_step"}
            assert set(s["metrics"]) == {
                "si_sdr",
                "mel_distance",
                "stft_distance",
                "visqol",
                "level_db",
                "lr_correlation_error",
                "side_mid_change_db",
                "balance_error",
                "fad",
                "boundary_ratio",
                "decode_seconds",
                *(changes if s["steps"] > 1 else ()),
            }
            assert [r["item"] for r in s["items"]] == [0, 1]
            assert s["metrics"]["visqol"] is None and s["metrics"]["fad"] >= 0
            assert s["metrics"]["si_sdr"] == pytest.approx(sum(r["si_sdr"] for r in s["items"]) / 2)
            assert (out / s["items"][0]["media"]["audio"]).is_file()
            assert (out / s["items"][0]["media"]["image"]).is_file() and s["items"][1]["media"] is None
    # a 0.75 s item crosses one v2 chunk seam and no v1 window seam (10 s windows)
    assert all(r["boundary"]["boundaries"] == 1 for s in v2["settings"] for r in s["items"])
    assert all(r["boundary"]["ratio"] is None for s in v1["settings"] for r in s["items"])
    assert v1["settings"][0]["metrics"]["boundary_ratio"] is None
    assert res["options"]["visqol"] is False and res["computed"]["visqol"] is False  # --no-visqol
    assert res["computed"]["si_sdr"] and res["computed"]["fad"] and res["computed"]["boundary_ratio"]
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_values_match_the_metric_functions(evaluated, checkpoints, manifest):
    out, res, _, _ = evaluated
    codec = load(checkpoints["v2"], device="cpu")
    crop = round(0.75 * RATE)
    waves, recons = [], []
    for item in res["items"]:
        full = load_audio(item["path"], RATE)[0]
        start = round(item["start_seconds"] * RATE)
        waves.append(full[:, start : start + crop])
    setting = res["models"][1]["settings"][1]  # steps=2 sigma_cond=0.4
    latents = []
    for wave, row in zip(waves, setting["items"], strict=True):
        z = codec.encode(wave)
        latents.append(z)
        y = codec.decode(z, seed=0, length=crop, steps=2, sigma_cond=0.4)
        recons.append(y)
        assert row["si_sdr"] == pytest.approx(float(si_sdr(y, wave).mean()), rel=1e-5)
        assert row["mel_distance"] == pytest.approx(float(mel_distance(y, wave, RATE).mean()), rel=1e-5)
        assert row["stft_distance"] == pytest.approx(float(stft_distance(y, wave).mean()), rel=1e-5)
        expected = boundary_analysis(y, wave, RATE, boundary_positions(codec, crop))
        assert row["boundary"] == pytest.approx(expected, rel=1e-6)
        fidelity = fidelity_scores(y, wave, RATE)
        assert row["level_db"] == pytest.approx(fidelity["level_db"], rel=1e-5)
        error = fidelity["lr_correlation_error"]
        assert row["lr_correlation_error"] == (None if error is None else pytest.approx(error, rel=1e-4))
        balance = fidelity["balance_error"]
        assert row["balance_error"] == (None if balance is None else pytest.approx(balance, rel=1e-4))
    assert setting["items"][0]["lr_correlation_error"] is None  # the mono item has no stereo image
    metrics = setting["metrics"]
    assert metrics["level_db"] == pytest.approx(sum(r["level_db"] for r in setting["items"]) / 2)
    assert metrics["lr_correlation_error"] == setting["items"][1]["lr_correlation_error"]  # stereo only
    mel_one_step = res["models"][1]["settings"][0]["metrics"]["mel_distance"]
    assert metrics["mel_distance_change_from_1_step"] == pytest.approx(metrics["mel_distance"] - mel_one_step)
    assert metrics["visqol_change_from_1_step"] is None  # --no-visqol
    assert metrics["fad"] == pytest.approx(fad(waves, recons, RATE, load_embedder("mel-stats")), rel=1e-6)
    b = [r["boundary"] for r in setting["items"]]
    near = sum(x["boundary_error"] * x["boundary_frames"] for x in b) / sum(x["boundary_frames"] for x in b)
    far = sum(x["interior_error"] * x["interior_frames"] for x in b) / sum(x["interior_frames"] for x in b)
    pooled = near / far
    assert metrics["boundary_ratio"] == pytest.approx(pooled, rel=1e-9)
    vectors = torch.cat([z.reshape(-1, 64) for z in latents])
    expected_stats = latent_stats(vectors, dim=-1, latent_scale=1.0)
    assert res["models"][1]["latent_stats"]["mean"] == pytest.approx(expected_stats["mean"], rel=1e-6)
    assert res["models"][1]["latent_stats"]["count"] == expected_stats["count"]


def test_report_links_are_relative(evaluated):
    out, res, _, _ = evaluated
    page = (out / "report.html").read_text()
    assert page.count('class="metric-row"') == 4
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert len(links) == 2 * (1 + 4)  # item 0: original + 4 reconstructions, audio and image each
    for link in links:
        assert not link.startswith(("/", "file:", "http")) and (out / link).is_file()


def test_out_dir_never_overwritten_without_force(tmp_path, capsys, checkpoints):
    write_items(tmp_path / "data", seconds=0.5)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    base = [
        "eval",
        "--model",
        checkpoints["v2"],
        "--data",
        tmp_path / "data",
        "--out",
        out,
        "--items",
        "1",
        "--audio-items",
        "0",
        *FAST,
    ]
    code, _, err = run(capsys, *base)
    assert code == 1 and error_lines(err) == [
        f"m2l: error: {out}: already exists and is not empty (pass --force to overwrite)"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    code, stdout, _ = run(capsys, *base, "--force")
    assert code == 0 and stdout.strip() == str(out / "report.html")
    first = (out / "results.json").read_text()
    assert (out / "keep.txt").read_text() == "mine"
    code, _, err = run(capsys, *base, "--seed", "3")
    assert code == 1 and len(error_lines(err)) == 1
    assert (out / "results.json").read_text() == first  # untouched
    code, _, _ = run(capsys, *base, "--seed", "3", "--force")
    assert code == 0 and json.loads((out / "results.json").read_text())["options"]["seed"] == 3


def _bad_data(root: Path, case: str) -> Path:
    """A bad --data argument of kind `case`, made under `root`."""
    if case == "missing":
        return root / "nowhere"
    if case == "empty-folder":
        (root / "empty").mkdir()
        return root / "empty"
    if case == "not-a-manifest":
        (root / "list.txt").write_text("a.wav\n")
        return root / "list.txt"
    manifest = root / "manifest.jsonl"
    lines = {
        "bad-json": '{"path": "b.wav"}\n{not json\n',
        "no-path": '{"duration": 1.0}\n',
        "missing-file": '{"path": "gone.wav"}\n',
        "empty-manifest": "\n",
    }[case]
    write_items(root, seconds=0.2)
    manifest.write_text(lines)
    return manifest


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing", "no such folder or manifest"),
        ("empty-folder", "no audio files found"),
        ("not-a-manifest", "expected a folder of audio or a manifest.jsonl"),
        ("bad-json", "manifest.jsonl:2: not valid JSON"),
        ("no-path", "manifest.jsonl:1: missing field 'path'"),
        ("missing-file", "manifest.jsonl:1: gone.wav: audio file not found"),
        ("empty-manifest", "manifest lists no audio files"),
    ],
)
def test_bad_data_is_one_line_naming_the_input(tmp_path, capsys, case, expected):
    data = _bad_data(tmp_path, case)
    out = tmp_path / "out"
    code, _, err = run(capsys, "eval", "--model", "m2l-v1-tiny", "--data", data, "--out", out, *FAST)
    lines = error_lines(err)
    assert code == 1 and len(lines) == 1 and len(err.splitlines()) == 1
    assert str(data) in lines[0] and expected in lines[0]
    assert not out.exists()


def test_unreadable_item_names_the_file(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    write_items(data, seconds=0.2)
    (data / "c.wav").write_bytes(b"RIFF not really a wave file")
    code, _, err = run(capsys, "eval", "--model", "m2l-v1-tiny", "--data", data, "--out", out, *FAST)
    lines = error_lines(err)
    assert code == 1 and len(lines) == 1 and str(data / "c.wav") in lines[0]


def test_sigma_cond_refused_when_no_model_is_v2(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    write_items(data, seconds=0.2)
    code, _, err = run(
        capsys,
        "eval",
        "--model",
        "m2l-v1-tiny",
        "--data",
        data,
        "--out",
        out,
        "--sigma-cond",
        "0.2,0.4",
        *FAST,
    )
    lines = error_lines(err)
    assert code == 1 and len(lines) == 1 and "--sigma-cond applies to Music2Latent2 (v2)" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    "argv",
    [["--steps", "0"], ["--steps", "1,x"], ["--sigma-cond", "-1"], ["--items", "0"], ["--seconds", "nan"]],
)
def test_bad_options_are_usage_errors(tmp_path, capsys, argv):
    code, _, err = run(
        capsys, "eval", "--model", "m2l-v1-tiny", "--data", tmp_path, "--out", tmp_path / "out", *argv
    )
    assert code == 2 and "error" in err


def test_unknown_model_names_the_source(tmp_path, capsys):
    data, out = tmp_path / "data", tmp_path / "out"
    write_items(data, seconds=0.2)
    code, _, err = run(capsys, "eval", "--model", "x=no-such-model", "--data", data, "--out", out, *FAST)
    lines = error_lines(err)
    assert code == 1 and len(lines) == 1 and "no-such-model" in lines[0]


def test_an_item_and_its_reconstructions_share_one_db_scale(tmp_path, capsys, checkpoints, monkeypatch):
    from eval_testing import luminance, read_png

    from m2l.evaluate import run as eval_run

    def quiet_decode(codec, z, item, setting, seed):
        return item.wave * 0.01  # a reconstruction 40 dB quieter than the original

    monkeypatch.setattr(eval_run, "_decode", quiet_decode)
    write_items(tmp_path / "data")
    out = tmp_path / "report"
    argv = ["eval", "--model", f"v1={checkpoints['v1']}", "--data", tmp_path / "data", "--out", out]
    code, _, err = run(capsys, *argv, "--items", "1", "--audio-items", "1", "--steps", "1", *FAST)
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    original = read_png(out / results["items"][0]["media"]["image"])[2]
    reconstruction = read_png(out / results["models"][0]["settings"][0]["items"][0]["media"]["image"])[2]
    assert original.shape == reconstruction.shape
    assert luminance(reconstruction).mean() < luminance(original).mean() - 10  # visibly darker
    assert "loudest bin of the item's original" in (out / "report.html").read_text()


def test_stereo_option_sets_the_coding_of_per_channel_models(tmp_path, capsys, checkpoints):
    data = tmp_path / "data"
    write_items(data)
    errors = {}
    for mode in ("ms", "lr"):
        out = tmp_path / mode
        argv = ["eval", "--model", str(checkpoints["v1"]), "--data", str(data), "--out", str(out)]
        assert main([*argv, "--stereo", mode, "--audio-items", "0", *FAST]) == 0
        res = json.loads((out / "results.json").read_text())
        assert res["options"]["stereo"] == mode and f"--stereo {mode}" in res["command"]
        errors[mode] = res["models"][0]["settings"][0]["items"][1]["lr_correlation_error"]
    assert errors["ms"] != errors["lr"]
