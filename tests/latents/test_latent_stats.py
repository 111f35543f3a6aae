"""`m2l.latents.stats`: streamed moments equal torch's over the whole corpus; the stats file."""

from __future__ import annotations

import json

import pytest
import torch
from latents_testing import random_folder
from m2l_testing import assert_one_line_error

from m2l.errors import M2LError
from m2l.formats import load_latents
from m2l.latents.index import LAYOUTS
from m2l.latents.pack import pack_folder
from m2l.latents.stats import LatentStats, Moments, compute_stats


def _all_vectors(paths, kind):
    """Every latent vector of the files [N, 64], float64, with torch alone."""
    return torch.cat([LAYOUTS[kind].vectors(load_latents(p).latents) for p in paths]).double()


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_stats_equal_torch_over_all_latents_concatenated(tmp_path, kind):
    paths = random_folder(tmp_path / "latents", kind, frames=(20, 35, 8, 50))
    pack_folder(tmp_path / "latents", tmp_path / "dataset", shard_bytes=40_000)
    vectors = _all_vectors(paths, kind)
    for source in (tmp_path / "latents", tmp_path / "dataset"):
        stats = compute_stats(source)
        assert stats.vectors == vectors.shape[0] and stats.kind == kind and stats.latent_dim == 64
        assert torch.allclose(torch.tensor(stats.mean, dtype=torch.float64), vectors.mean(0), atol=1e-6)
        std = torch.tensor(stats.std, dtype=torch.float64)
        assert torch.allclose(std, vectors.std(0, correction=0), atol=1e-6)
        assert abs(stats.global_mean - vectors.mean().item()) < 1e-6
        assert abs(stats.global_std - vectors.std(correction=0).item()) < 1e-6


def test_any_streaming_gives_the_one_pass_result(tmp_path):
    random_folder(tmp_path, "v1", frames=(20, 35, 8, 50))
    one_pass = compute_stats(tmp_path, piece_units=1 << 20)
    for piece in (1, 3, 16):
        streamed = compute_stats(tmp_path, piece_units=piece)
        assert streamed.vectors == one_pass.vectors
        assert max(abs(a - b) for a, b in zip(streamed.mean, one_pass.mean, strict=True)) < 1e-12
        assert max(abs(a - b) for a, b in zip(streamed.std, one_pass.std, strict=True)) < 1e-12
        assert abs(streamed.global_std - one_pass.global_std) < 1e-12


def test_merging_moments_of_parts_equals_one_pass():
    gen = torch.Generator().manual_seed(0)
    data = 3.0 + 1e3 * torch.randn(1000, 8, generator=gen, dtype=torch.float64)  # large offset: stability
    whole = Moments(8).add(data)
    parts = [Moments(8).add(chunk) for chunk in torch.split(data, [1, 400, 0, 599])]
    merged = Moments(8)
    for part in parts:
        merged.merge(part)
    assert merged.count == whole.count == 1000
    assert torch.allclose(merged.mean, data.mean(0), rtol=0, atol=1e-9)
    assert torch.allclose(merged.std(), data.std(0, correction=0), rtol=1e-12, atol=0)
    mean, std = merged.pooled()
    assert abs(mean - data.mean().item()) < 1e-9 and abs(std - data.std(correction=0).item()) < 1e-9


def test_the_stats_file_round_trips_and_refuses_edits(tmp_path):
    random_folder(tmp_path / "latents", "v2")
    stats = compute_stats(tmp_path / "latents")
    path = stats.save(tmp_path / "stats.json")
    assert LatentStats.load(path) == stats
    with pytest.raises(M2LError) as err:
        stats.save(path)
    assert_one_line_error(err, str(path), "already exists")
    data = json.loads(path.read_text())
    assert data["format"] == "m2l-latent-stats" and data["version"] == 1 and len(data["std"]) == 64
    data["std"][0] *= 2
    path.write_text(json.dumps(data))
    with pytest.raises(M2LError) as err:
        LatentStats.load(path)
    assert_one_line_error(err, str(path), "does not match its checksum")
    path.write_text("{not json")
    with pytest.raises(M2LError) as err:
        LatentStats.load(path)
    assert_one_line_error(err, str(path), "not a readable JSON file")


def test_normalize_and_denormalize_are_inverse_and_check_the_layout(tmp_path):
    random_folder(tmp_path, "v1")
    stats = compute_stats(tmp_path)
    z = torch.randn(3, 64, 10)
    for mode in ("dims", "global"):
        assert torch.allclose(stats.denormalize(stats.normalize(z, mode), mode), z, atol=1e-5)
    assert torch.allclose(stats.normalize(z)[:, 5], (z[:, 5] - stats.mean[5]) / stats.std[5], atol=1e-5)
    with pytest.raises(M2LError) as err:
        stats.normalize(torch.randn(3, 10, 64))
    assert_one_line_error(err, "64 channels")
