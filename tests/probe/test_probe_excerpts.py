"""`m2l probe` on a labelled excerpt manifest: key, tempo and meter tasks, mean+std pooling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_testing import run as run_cli

from m2l.datasets import read_manifest
from m2l.probe import features as F

MODELS = ["--model", "m2l-v1-tiny", "--model", "m2l-v2-tiny", "--device", "cpu"]


def run(capsys: pytest.CaptureFixture, *argv: str | Path) -> tuple[int, str, str]:
    """`m2l probe ARGV` -> (exit code, stdout, stderr)."""
    return run_cli(capsys, "probe", *argv)


def test_the_synthetic_manifest_is_a_valid_excerpt_manifest(small_excerpts: Path) -> None:
    assert len(read_manifest(small_excerpts)) == 24


def test_excerpts_get_key_tempo_meter_and_meanstd_pooling(small_excerpts, tmp_path, capsys):
    cache = tmp_path / "cache"
    argv = [*MODELS, "--data", small_excerpts, "--cache", cache, "--probes", "linear", "--quiet"]
    code, out, err = run(capsys, *argv, "--out", tmp_path / "a")
    assert code == 0, err
    report = json.loads((tmp_path / "a" / "probe.json").read_text())
    assert report["set"] == "excerpts" and report["tasks"] == ["key", "tempo", "meter"]
    assert report["protocol"]["pooling"] == "meanstd"
    assert report["classes"] == {"key": ["A minor", "C major"], "meter": ["3/4", "4/4"]}
    assert report["splits"] == {"train": 8, "val": 8, "test": 8}
    models = {(fs["model"], fs["feature"]) for fs in report["feature_sets"]}
    assert ("log-mel", "logmel") in models and ("untrained m2l-v1-tiny", "untrained") in models
    assert {(r["task"], r["n_classes"]) for r in report["results"]} == {
        ("key", 2),
        ("tempo", 2),
        ("meter", 2),
    }
    assert "test 8 excerpts" in out and "key/linear" in out and "meter/linear" in out
    logmel = [r for r in report["results"] if r["model"] == "log-mel" and r["task"] == "key"]
    assert logmel[0]["accuracy"] == 1.0  # the two keys differ in their spectrum: learnable

    code, _, err = run(capsys, *argv, "--out", tmp_path / "b", "--pool", "mean", "--tasks", "key_mode,tonic")
    assert code == 0, err
    mean = json.loads((tmp_path / "b" / "probe.json").read_text())
    assert mean["tasks"] == ["key_mode", "tonic"] and mean["protocol"]["pooling"] == "mean"
    dims = {(fs["model"], fs["feature"]): fs["dim"] for fs in report["feature_sets"]}
    mean_dims = {(fs["model"], fs["feature"]): fs["dim"] for fs in mean["feature_sets"]}
    assert dims[("m2l-v1-tiny", "latents")] == 2 * mean_dims[("m2l-v1-tiny", "latents")]
    assert dims[("m2l-v2-tiny", "latents")] == 2 * mean_dims[("m2l-v2-tiny", "latents")]
    assert dims[("m2l-v2-tiny", "features")] == mean_dims[("m2l-v2-tiny", "features")]  # no time axis


def test_time_std_pools_over_the_time_axis() -> None:
    v1 = torch.zeros(2, 3, 4)
    v1[0, 1] = torch.tensor([0.0, 2.0, 0.0, 2.0])
    assert F.time_std(v1).tolist() == [0.0, 0.5, 0.0]  # std 1 on channel 0, 0 on channel 1
    v2 = torch.zeros(1, 2, 2, 3)
    v2[0, 1, 1, 2] = 4.0
    assert F.time_std(v2).tolist() == [0.0] * 5 + [2.0]
    assert F.time_std(torch.ones(2, 6)).numel() == 0
    with pytest.raises(Exception, match="pooling"):
        F.codec_extractor(None, "max")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "case, message",
    [
        ("key task on notes", "'key'"),
        ("text tempo class", "'tempo_class'"),
    ],
)
def test_manifest_without_the_needed_fields_is_one_line(case, message, small_excerpts, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    rows = [json.loads(line) for line in small_excerpts.read_text().splitlines()]
    for row in rows:
        row["path"] = str(small_excerpts.parent.parent / row["path"])
    if case == "key task on notes":
        rows = [{k: v for k, v in r.items() if k not in ("key", "key_mode", "tonic")} for r in rows]
        extra = ["--tasks", "key"]
    else:
        rows = [{**r, "tempo_class": "fast"} for r in rows]
        extra = []
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run(capsys, "--data", manifest, "--out", tmp_path / "out", *extra)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("m2l: error:")
    assert str(manifest) in lines[0] and message in lines[0]
    assert not (tmp_path / "out" / "probe.json").exists()


def test_notes_and_data_are_exclusive(small_excerpts, tmp_path, capsys):
    code, _, err = run(capsys, "--data", small_excerpts, "--notes", small_excerpts, "--out", tmp_path)
    assert code == 2 and "not allowed with" in err
