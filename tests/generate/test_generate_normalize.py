"""`m2l.generate.normalize`: latents to the generator's scale and back, with checked statistics."""

from __future__ import annotations

import pytest
import torch
from m2l_testing import assert_one_line_error

from m2l.errors import M2LError
from m2l.generate.model import generator_preset
from m2l.generate.normalize import from_generator, to_generator
from m2l.latents.stats import LatentStats


def _stats(kind: str = "v1", dims: int = 64) -> LatentStats:
    mean, std = torch.linspace(-1, 1, dims), torch.linspace(0.5, 2, dims)
    return LatentStats(kind, "rand@1", "hash", 1000, tuple(mean.tolist()), tuple(std.tolist()), 0.0, 1.2)


def test_latents_are_normalised_per_dimension_and_restored():
    stats, cfg = _stats(), generator_preset("gen-tiny")
    mean, std = torch.tensor(stats.mean)[:, None], torch.tensor(stats.std)[:, None]
    noise = torch.randn(2, 64, 5000, generator=torch.Generator().manual_seed(0))  # atol 0.1: 7 sigma
    latents = mean + std * noise  # a stereo file's mid and side rows
    z = to_generator(latents, stats, cfg)
    assert torch.allclose(z.mean((0, 2)), torch.zeros(64), atol=0.1)
    assert torch.allclose(z.std((0, 2)), torch.ones(64), atol=0.1)
    assert torch.allclose(from_generator(z, stats, cfg), latents, atol=1e-5)


@pytest.mark.parametrize("stats, named", [(_stats("v2"), "v2"), (_stats(dims=32), "32 dimensions")])
def test_statistics_of_other_latents_are_refused(stats, named):
    with pytest.raises(M2LError) as err:
        to_generator(torch.zeros(64, 8), stats, generator_preset("gen-tiny"))
    assert_one_line_error(err, named, "gen-tiny")
