"""`bench/gen_objective_study.py`: its Frechet distance is right on known cases, and a smoke run on
a tiny packed dataset trains both arms for the same budget and reports what the study needs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from generate_testing import codec_checkpoint, sinusoid_corpus, sinusoids

from m2l.latents.pack import pack_folder

SCRIPT = Path(__file__).parents[2] / "bench" / "gen_objective_study.py"
spec = importlib.util.spec_from_file_location("gen_objective_study", SCRIPT)
study = importlib.util.module_from_spec(spec)
spec.loader.exec_module(study)


def test_the_frechet_distance_of_known_gaussians():
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=generator, dtype=torch.float64)
    assert study.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    shifted = a + torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64)  # same covariance: |shift|^2
    assert study.frechet_distance(a, shifted) == pytest.approx(5.0, rel=1e-6)
    scaled = 3 * torch.randn(4000, 3, generator=generator, dtype=torch.float64)  # (3 - 1)^2 per dim
    assert study.frechet_distance(a, scaled) == pytest.approx(12.0, rel=0.1)


def test_window_features_tell_structured_clips_from_noise():
    clips = sinusoids(64, 8, 16, torch.Generator().manual_seed(1))
    noise = torch.randn(64, 8, 16, generator=torch.Generator().manual_seed(2))
    more = sinusoids(64, 8, 16, torch.Generator().manual_seed(3))
    features = study.window_features(clips)
    assert features.shape == (64, 24)
    assert float(features[:, 16:].mean()) > 0.5 > float(study.window_features(noise)[:, 16:].mean())
    like = study.frechet_distance(study.window_features(more), features)
    assert like < 0.2 * study.frechet_distance(study.window_features(noise), features)


def test_a_smoke_run_trains_both_arms_and_writes_the_results(tmp_path, capsys):
    latents = sinusoid_corpus(tmp_path / "latents", codec_checkpoint(tmp_path), files=30, frames=20)
    pack_folder(latents, tmp_path / "dataset")
    out = tmp_path / "study.json"
    options = ["--preset", "gen-tiny", "--batch-size", "8", "--windows", "16", "--val-every", "2"]
    options += ["--val-batches", "1", "--sampler-steps", "1,2", "--out", str(out), "--lr", "3e-3"]
    result = study.main([str(tmp_path / "dataset"), "--cpu-seconds", "0.5", *options])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result, default=str))
    assert result["dataset"]["files"] == 30 and result["fd_noise_vs_real"] > result["fd_real_vs_real"] > 0
    for objective in ("flow", "edm"):
        arm = result["arms"][objective]
        assert arm["steps"] >= 1 and arm["cpu_s"] >= 0.5 and arm["cpu_s"] < 0.5 + 3 * arm["cpu_s_per_step"]
        assert [step for step, _ in arm["val_curve"]][-1] == arm["steps"]
        assert set(arm["fd"]) == {"heun-1", "heun-2", "euler-1", "euler-2"}
        assert all(v >= 0 for v in arm["fd"].values())
    assert result["arms"]["flow"]["nfe"] == {"heun-1": 2, "heun-2": 4, "euler-1": 1, "euler-2": 2}
    assert result["arms"]["edm"]["nfe"] == {"heun-1": 1, "heun-2": 3, "euler-1": 1, "euler-2": 2}
    steps = study.main([str(tmp_path / "dataset"), "--steps", "3", *options])
    assert steps["arms"]["flow"]["steps"] == steps["arms"]["edm"]["steps"] == 3
