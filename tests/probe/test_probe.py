"""`m2l probe`: feature extraction and cache, probes that learn, probe.json, errors."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from cli_testing import run as run_cli
from m2l_testing import sine, sine_tensor

from m2l.cli import main
from m2l.codec import Codec
from m2l.codec_v1 import Codec1
from m2l.codec_v2 import Codec2
from m2l.config import preset
from m2l.loading import UNTRAINED_TAG, load_model
from m2l.models import create
from m2l.probe import features as F
from m2l.probe.probes import chance_levels, evaluate_probe, standardise

MODELS = ["--model", "m2l-v1-tiny", "--model", "m2l-v2-tiny", "--device", "cpu"]


def run(capsys: pytest.CaptureFixture, *argv: str | Path) -> tuple[int, str, str]:
    """`m2l probe ARGV` -> (exit code, stdout, stderr)."""
    return run_cli(capsys, "probe", *argv)


def run_cached(capsys: pytest.CaptureFixture, notes: Path, out: Path, cache: Path, *argv: str):
    """`m2l probe` of both tiny models with linear probes into `out`, features cached in `cache`."""
    return run(capsys, *MODELS, "--notes", notes, "--out", out, "--cache", cache, "--probes", "linear", *argv)


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("m2l: error:")]


def count_encodes(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count codec encoder calls (v1 and v2) and log-mel audio reads."""
    calls = {"encode": 0, "logmel": 0}
    original = Codec.__dict__["encode"]  # the shared public method of Codec1 and Codec2

    def counted(self, *args, **kwargs):
        calls["encode"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Codec, "encode", counted)
    load = F.load_audio

    def counted_load(*args, **kwargs):
        calls["logmel"] += 1
        return load(*args, **kwargs)

    monkeypatch.setattr(F, "load_audio", counted_load)
    return calls


@pytest.fixture(scope="module")
def model_run(small_notes: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One run with both tiny presets (linear probes), its output folder and report."""
    out = tmp_path_factory.mktemp("probe-models")
    assert (
        main(
            [
                "probe",
                *MODELS,
                "--notes",
                str(small_notes),
                "--out",
                str(out),
                "--probes",
                "linear",
                "--quiet",
            ]
        )
        == 0
    )
    return out, json.loads((out / "probe.json").read_text())


# ----------------------------------------------------------------------------- learning
def test_logmel_probes_learn_pitch_and_instrument(wide_notes, tmp_path, capsys):
    code, out, err = run(capsys, "--notes", wide_notes, "--out", tmp_path / "p")
    assert code == 0, err
    report = json.loads((tmp_path / "p" / "probe.json").read_text())
    acc = {(r["task"], r["probe"]): r for r in report["results"] if r["feature"] == "logmel"}
    assert set(acc) == {(t, p) for t in ("pitch", "pitch_class", "instrument") for p in ("linear", "mlp")}
    for (task, probe), r in acc.items():
        assert r["n_train"] == r["n_val"] == r["n_test"] == 72
        floor = {"pitch": 0.4, "pitch_class": 0.4, "instrument": 0.65}[task]
        assert r["accuracy"] > floor, (task, probe, r)
        assert r["accuracy"] > 2 * r["chance_majority"], (task, probe, r)
    assert math.isclose(acc["pitch", "linear"]["chance_uniform"], 1 / 24)
    assert math.isclose(acc["instrument", "linear"]["chance_uniform"], 1 / 3)
    assert "log-mel" in out and "instrument/mlp" in out and "chance (majority)" in out


def test_probe_scores_separable_and_chance():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    feats = rng.normal(size=(90, 5)) + 4.0 * np.eye(3, 5)[labels]
    splits = np.array(["train", "val", "test"] * 30)
    for probe in ("linear", "mlp"):
        r = evaluate_probe(feats, labels, splits, probe)
        assert r["accuracy"] >= 0.9 and r["n_classes"] == 3 and r["n_test"] == 30
    noise = evaluate_probe(rng.normal(size=(90, 5)), labels, splits, "linear")
    assert noise["accuracy"] < 0.7  # no signal, no learning
    assert chance_levels(np.array([0, 0, 0, 1]), 4) == (0.75, 0.25)
    one = evaluate_probe(feats, np.where(splits == "train", 0, labels), splits, "linear")
    assert one["accuracy"] is None and "fewer than two classes" in one["skipped"]


def test_standardise_uses_train_statistics():
    train = np.array([[1.0, 5.0], [3.0, 5.0]])
    other = np.array([[2.0, 7.0]])
    a, b = standardise(train, other)
    np.testing.assert_allclose(a, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(b, [[0.0, 2.0]])  # constant column: centred, unit scale


# ----------------------------------------------------------------------------- features
def test_clip_vectors_average_as_the_papers():
    v1 = torch.arange(24.0).reshape(2, 3, 4)  # [channels, dim, frames]
    for features in (True, False):
        np.testing.assert_allclose(Codec1.clip_vector(v1, features=features), v1.mean(dim=(0, 2)))
    feats = torch.arange(12.0).reshape(2, 6)  # [rows, K * dim]
    np.testing.assert_allclose(Codec2.clip_vector(feats, features=True), [3, 4, 5, 6, 7, 8])
    lat = torch.arange(48.0).reshape(2, 3, 2, 4)  # [rows, chunks, K, dim]
    got = Codec2.clip_vector(lat, features=False)
    assert got.shape == (8,)
    np.testing.assert_allclose(got, lat.mean(dim=(0, 1)).flatten())


def test_logmel_stats_follow_the_pitch():
    rate = F.LOGMEL_RATE
    tones = [
        sine_tensor(f, samples=rate // 2, rate=rate, amplitude=1.0, dtype=np.float32)
        for f in (250.0, 1000.0, 4000.0)
    ]
    peaks = [int(np.argmax(F.logmel_stats(x)[: F.LOGMEL_BANDS])) for x in tones]
    assert peaks[0] < peaks[1] < peaks[2]
    assert F.logmel_stats(torch.zeros(100)).shape == (2 * F.LOGMEL_BANDS,)


@pytest.mark.filterwarnings("ignore:.*untrained weights")
def test_untrained_preset_is_the_seeded_untrained_encoder():
    model, model_id = F.seeded(lambda: load_model("m2l-v2-tiny"))
    twin = F.seeded(lambda: create(preset("m2l-v2-tiny")))
    assert model_id.endswith(UNTRAINED_TAG)
    for (name, a), b in zip(model.state_dict().items(), twin.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_probe_json_structure(model_run, small_notes, capsys):
    out, report = model_run
    assert report["format"] == "m2l-probe" and report["version"] == 1
    assert report["splits"] == {"train": 12, "val": 12, "test": 12}
    assert report["manifest"] == str(small_notes) and len(report["manifest_sha256"]) == 64
    sets = [(s["model"], s["feature"], s["dim"]) for s in report["feature_sets"]]
    assert sets == [
        ("m2l-v1-tiny", "features", 512),
        ("m2l-v1-tiny", "latents", 64),
        ("m2l-v2-tiny", "features", 512),
        ("m2l-v2-tiny", "latents", 8 * 64),
        ("untrained m2l-v1-tiny", "untrained", 512),
        ("untrained m2l-v2-tiny", "untrained", 512),
        ("log-mel", "logmel", 2 * F.LOGMEL_BANDS),
    ]
    assert len(report["results"]) == len(sets) * 3
    keys = {
        "model",
        "model_id",
        "feature",
        "dim",
        "task",
        "probe",
        "accuracy",
        "val_accuracy",
        "hyperparameters",
        "chance_majority",
        "chance_uniform",
        "n_classes",
        "n_train",
        "n_val",
        "n_test",
    }
    for r in report["results"]:
        assert set(r) == keys and r["probe"] == "linear"
        assert 0.0 <= r["accuracy"] <= 1.0 and r["n_test"] == 12
        assert r["hyperparameters"]["C"] in report["protocol"]["linear"]["C"]
    by = {(r["model"], r["feature"], r["task"]): r["accuracy"] for r in report["results"]}
    for task in ("pitch", "pitch_class", "instrument"):  # a preset is the seeded untrained encoder
        assert by["m2l-v1-tiny", "features", task] == by["untrained m2l-v1-tiny", "untrained", task]
    assert (out / "cache").is_dir() and not list(out.glob(".*tmp*"))


# ----------------------------------------------------------------------------- cache
def test_second_run_reuses_the_cache(model_run, small_notes, tmp_path, monkeypatch, capsys):
    out, first = model_run
    calls = count_encodes(monkeypatch)
    code, _, err = run_cached(capsys, small_notes, tmp_path / "again", out / "cache")
    assert code == 0, err
    assert calls == {"encode": 0, "logmel": 0}
    again = json.loads((tmp_path / "again" / "probe.json").read_text())
    assert again["results"] == first["results"]  # fixed seeds: the same numbers


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_cache_is_recomputed(model_run, small_notes, tmp_path, monkeypatch, capsys, damage):
    out, _ = model_run
    cache = tmp_path / "cache"
    shutil.copytree(out / "cache", cache)
    key = F.untrained_id(preset("m2l-v1-tiny"))
    sha = F.read_notes(small_notes, ["pitch"]).sha256
    target = F.cache_file(cache, key, "latents", sha)
    good = F.read_cache(target, key, "latents", sha, 36)
    assert good is not None and good.shape == (36, 64)
    data = bytearray(target.read_bytes())
    if damage == "flip":
        data[-8:] = bytes(b ^ 0xFF for b in data[-8:])
    else:
        data = data[:40]
    target.write_bytes(bytes(data))
    calls = count_encodes(monkeypatch)
    code, _, err = run_cached(capsys, small_notes, tmp_path / "o", cache, "--tasks", "pitch")
    assert code == 0, err
    assert calls == {"encode": 36, "logmel": 0}  # only the damaged entry: 36 notes x 1 kind
    warning = [line for line in err.splitlines() if "unusable feature cache" in line]
    assert len(warning) == 1 and str(target) in warning[0]
    np.testing.assert_array_equal(F.read_cache(target, key, "latents", sha, 36), good)


# ----------------------------------------------------------------------------- --force
def test_existing_result_needs_force(model_run, small_notes, tmp_path, capsys):
    out, _ = model_run
    args = [
        "--notes",
        small_notes,
        "--out",
        tmp_path,
        "--cache",
        out / "cache",
        "--tasks",
        "pitch",
        "--probes",
        "linear",
    ]
    assert run(capsys, *args)[0] == 0
    result = tmp_path / "probe.json"
    result.write_text("keep me")
    code, _, err = run(capsys, *args)
    assert code == 1 and result.read_text() == "keep me"
    assert len(error_lines(err)) == 1 and str(result) in err and "--force" in err
    code, _, err = run(capsys, *args, "--force")
    assert code == 0, err
    assert json.loads(result.read_text())["tasks"] == ["pitch"]


# ----------------------------------------------------------------------------- bad input
def _one_note_per_split(root: Path) -> list[dict]:
    wave = sine(250.0, samples=4000, rate=16000, amplitude=0.3, dtype=np.float32)
    rows = []
    for i, split in enumerate(("train", "val", "test")):
        sf.write(root / f"n{i}.wav", wave, 16000)
        rows.append({"path": f"n{i}.wav", "split": split, "pitch": 60 + i, "pitch_class": i, "program": 0})
    return rows


BAD_MANIFESTS = {
    "bad json": (lambda rows: [json.dumps(rows[0]), "{not json", *map(json.dumps, rows[1:])], ":2:"),
    "not an object": (lambda rows: ["[1, 2]", *map(json.dumps, rows)], ":1:"),
    "no program": (
        lambda rows: [json.dumps({k: v for k, v in r.items() if k != "program"}) for r in rows],
        "'program'",
    ),
    "string pitch": (lambda rows: [json.dumps({**r, "pitch": "C4"}) for r in rows], "'pitch'"),
    "bool program": (lambda rows: [json.dumps({**r, "program": True}) for r in rows], "'program'"),
    "unknown split": (lambda rows: [json.dumps({**r, "split": "dev"}) for r in rows], "'split'"),
    "missing audio": (
        lambda rows: [json.dumps({**rows[0], "path": "missing.wav"}), *map(json.dumps, rows[1:])],
        "missing.wav",
    ),
    "no val": (lambda rows: [json.dumps(r) for r in rows if r["split"] != "val"], "'val'"),
    "empty": (lambda rows: ["", "  "], "no notes"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_bad_manifest_is_one_line_naming_it(case, tmp_path, capsys):
    make, expected = BAD_MANIFESTS[case]
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(make(_one_note_per_split(tmp_path))) + "\n")
    code, out, err = run(capsys, "--notes", manifest, "--out", tmp_path / "out")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("m2l: error:") and str(manifest) in lines[0]
    assert expected in lines[0]
    assert not (tmp_path / "out" / "probe.json").exists()


def test_good_small_manifest_runs(tmp_path, capsys):
    manifest = tmp_path / "manifest.jsonl"
    rows = _one_note_per_split(tmp_path)
    rows += [{**r, "path": r["path"], "pitch": 70, "program": 1} for r in rows]  # 2 classes in train
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run(capsys, "--notes", manifest, "--out", tmp_path / "out", "--probes", "linear")
    assert code == 0, err


@pytest.mark.parametrize("what", ["missing", "directory"])
def test_missing_manifest_or_directory(what, tmp_path, capsys):
    manifest = tmp_path / "nope.jsonl" if what == "missing" else tmp_path
    code, _, err = run(capsys, "--notes", manifest, "--out", tmp_path / "out")
    assert code == 1 and len(err.strip().splitlines()) == 1 and str(manifest) in err


def test_out_is_a_file(small_notes, tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("x")
    code, _, err = run(capsys, "--notes", small_notes, "--out", out)
    assert code == 1 and len(error_lines(err)) == 1 and str(out) in err


def test_without_sklearn_says_so_in_one_line(small_notes, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    code, _, err = run(capsys, "--notes", small_notes, "--out", tmp_path)
    assert code == 1
    assert len(err.strip().splitlines()) == 1 and "scikit-learn" in err and "m2l[probe]" in err


def test_unknown_task_is_a_usage_error(small_notes, tmp_path, capsys):
    code, _, err = run(capsys, "--notes", small_notes, "--out", tmp_path, "--tasks", "pitch,loudness")
    assert code == 2 and "loudness" in err
