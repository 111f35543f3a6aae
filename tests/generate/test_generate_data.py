"""The generator's training data: side rows of mid/side files are left out, and the normalising
statistics are those of the rows it learns."""

from __future__ import annotations

from pathlib import Path

import torch
from generate_testing import codec_checkpoint

from m2l.config import config_hash
from m2l.formats import LatentFile
from m2l.generate.data import LatentSplit
from m2l.latents.stats import compute_stats
from m2l.loading import load


def stereo_corpus(folder: Path, codec_path: Path) -> Path:
    """Three 2-row files of 24 frames: a, b coded mid/side (mid values about 5, side about 0
    with a small spread), c left/right (both rows about 5)."""
    codec = load(codec_path, device="cpu")
    generator = torch.Generator().manual_seed(0)
    for name, stereo in (("a", "ms"), ("b", "ms"), ("c", "lr")):
        music = 5 + torch.randn(64, 24, generator=generator)
        second = 0.1 * torch.randn(64, 24, generator=generator) if stereo == "ms" else music.flip(-1)
        LatentFile(
            latents=torch.stack((music, second)),  # [2, 64, 24]
            sample_rate=codec.sample_rate,
            length=24 * codec.samples_per_unit,
            model_id=codec.model_id,
            config_hash=config_hash(codec.model.cfg),
            latent_scale=1.0,
            left_pad=codec.default_left_pad,
            kind="v1",
            model_source=codec.source,
            extra={"stereo": stereo},
        ).save(folder / f"{name}.m2l")
    return folder


def test_side_rows_are_left_out_and_the_stats_are_those_of_the_rows_kept(tmp_path):
    latents = tmp_path / "latents"
    latents.mkdir()
    stereo_corpus(latents, codec_checkpoint(tmp_path))
    data = LatentSplit(latents, 16, val_share=0.0)
    sources = {(data.crops.store.entries[e].source, row) for e, row in data.train}
    assert sources == {("a.m2l", 0), ("b.m2l", 0), ("c.m2l", 0), ("c.m2l", 1)}
    assert abs(sum(data.stats.mean) / 64 - 5.0) < 0.1  # every row: about 3.33
    assert abs(sum(compute_stats(latents).mean) / 64 - 10 / 3) < 0.1
    batch, _ = data.batch(data.train, 64, torch.Generator().manual_seed(1))
    assert abs(float(batch.mean())) < 0.2 and abs(float(batch.std()) - 1.0) < 0.2  # normalised
