"""`m2l.consistency.sampling`: the sigma <-> index warp, Karras levels, re-noising, noise sources,
the context sampler."""

import math

import pytest
import torch

from m2l.config import ConsistencyConfig
from m2l.consistency.sampling import (
    fresh_noise,
    index_from_sigma,
    karras_sigmas,
    noise_levels,
    renoise,
    renoise_scale,
    sample_multistep,
    sample_one_step,
    sample_with_context,
    sigma_from_index,
)

CFG = ConsistencyConfig()


def test_sigma_index_round_trip_and_ends():
    idx = torch.linspace(0, 1, 11, dtype=torch.float64)
    sig = sigma_from_index(idx, CFG)
    assert abs(sig[0] - CFG.sigma_min) < 1e-12 and abs(sig[-1] - CFG.sigma_max) < 1e-9
    assert torch.allclose(index_from_sigma(sig, CFG), idx)
    assert (sig.diff() > 0).all()


def test_karras_sigmas():
    assert karras_sigmas(1, CFG).tolist() == [CFG.sigma_max]
    s = karras_sigmas(4, CFG)
    assert len(s) == 4 and s[0] == CFG.sigma_max and (s.diff() < 0).all() and s[-1] > CFG.sigma_min


def test_samplers_call_the_denoiser_at_the_right_levels():
    target = torch.randn(3, 4)
    seen = []

    def denoise(x, sigma):
        seen.append(sigma[0].item())
        return target

    noise = torch.randn(3, 4)
    assert torch.equal(sample_one_step(denoise, noise, CFG), target)
    seen.clear()
    out = sample_multistep(denoise, noise, CFG, steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, target)
    assert seen == pytest.approx(karras_sigmas(3, CFG).tolist(), rel=1e-6)


def test_multistep_renoise_is_reproducible_with_a_generator():
    def denoise(x, sigma):
        return x * 0.5

    noise = torch.ones(2, 3)
    a = sample_multistep(denoise, noise, CFG, steps=3, generator=torch.Generator().manual_seed(1))
    b = sample_multistep(denoise, noise, CFG, steps=3, generator=torch.Generator().manual_seed(1))
    c = sample_multistep(denoise, noise, CFG, steps=3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_renoise_adds_the_missing_noise_above_sigma_min():
    x0, noise = torch.randn(2, 5), torch.randn(2, 5)
    for sigma in (0.4, 3.0, CFG.sigma_max):
        scale = math.sqrt(sigma**2 - CFG.sigma_min**2)
        assert renoise_scale(sigma, CFG.sigma_min) == scale
        assert torch.equal(renoise(x0, noise, sigma, CFG.sigma_min), x0 + scale * noise)
    for sigma in (CFG.sigma_min, 0.0):  # at or below the boundary: nothing to add
        assert renoise_scale(sigma, CFG.sigma_min) == 0.0
        assert torch.equal(renoise(x0, noise, sigma, CFG.sigma_min), x0)


def test_noise_levels_are_given_or_karras():
    assert noise_levels(CFG, steps=4) == karras_sigmas(4, CFG).tolist()
    assert noise_levels(CFG, sigmas=torch.tensor([2.0, 1.0])) == [2.0, 1.0]


def test_fresh_noise_comes_from_the_source_or_the_generator():
    like = torch.zeros(3, 4, dtype=torch.float64)
    got = fresh_noise(2, like, None, lambda i: torch.full((3, 4), float(i)))
    assert got.dtype == torch.float64 and torch.equal(got, torch.full((3, 4), 2.0, dtype=torch.float64))
    a = fresh_noise(0, like, torch.Generator().manual_seed(4), None)
    b = fresh_noise(0, like, torch.Generator().manual_seed(4), None)
    assert a.shape == like.shape and torch.equal(a, b)


def test_multistep_with_a_noise_source_matches_the_written_out_loop():
    def denoise(x, sigma):
        return torch.tanh(x) * 0.5 + sigma[:, None] * 1e-3

    noise = torch.randn(2, 6)
    fresh = [torch.randn(2, 6) for _ in range(3)]
    asked = []

    def source(i):
        asked.append(i)
        return fresh[i]

    out = sample_multistep(denoise, noise, CFG, steps=4, noise_source=source)
    levels = karras_sigmas(4, CFG).tolist()
    x = noise * levels[0]
    for i, level in enumerate(levels):
        est = denoise(x, torch.full((2,), level))
        if i + 1 < len(levels):
            x = est + math.sqrt(levels[i + 1] ** 2 - CFG.sigma_min**2) * fresh[i]
    assert asked == [0, 1, 2] and torch.equal(out, est)


def test_context_sampler_alone_sees_one_chunk_per_row():
    seen = []

    def denoise(x, sigma):
        seen.append((tuple(x.shape), sigma.clone()))
        return x * 0.5

    noise = torch.randn(3, 2, 4)
    gen = torch.Generator().manual_seed(0)
    est, refined = sample_with_context(denoise, noise, CFG, steps=2, generator=gen)
    assert refined is None and est.shape == noise.shape
    levels = karras_sigmas(2, CFG).tolist()
    assert [s for s, _ in seen] == [(3, 1, 2, 4)] * 2
    for (_, sigma), level in zip(seen, levels, strict=True):
        assert sigma.shape == (3, 1) and torch.allclose(sigma, torch.full((3, 1), level))


def test_context_sampler_keeps_the_context_fixed_and_returns_its_estimate():
    context = torch.randn(2, 3)
    seen = []

    def denoise(x, sigma):
        seen.append((x.clone(), sigma.clone()))
        return torch.stack((x[:, 0] * 2.0, x[:, 1] * 0.5), dim=1)

    noise = torch.randn(2, 3)
    fresh = [torch.randn(2, 3) for _ in range(2)]
    est, refined = sample_with_context(
        denoise, noise, CFG, steps=3, noise_source=lambda i: fresh[i], context=context, context_sigma=0.4
    )
    levels = karras_sigmas(3, CFG).tolist()
    assert len(seen) == 3
    for (x, sigma), level in zip(seen, levels, strict=True):
        assert torch.equal(x[:, 0], context)  # never re-noised
        assert sigma.shape == (2, 2)
        assert torch.allclose(sigma[:, 0], torch.tensor(0.4))
        assert torch.allclose(sigma[:, 1], torch.tensor(level))
    assert torch.equal(refined, context * 2.0)
    x = noise * levels[0]
    for i in range(3):
        new = x * 0.5
        if i < 2:
            x = renoise(new, fresh[i], levels[i + 1], CFG.sigma_min)
    assert torch.equal(est, new)


@pytest.mark.parametrize("steps", [1, 3])
def test_context_sampler_without_context_matches_multistep(steps):
    def chunk_denoise(x, sigma):
        return torch.sin(x) * sigma[..., None]

    noise = torch.randn(2, 5)
    fresh = [torch.randn(2, 5) for _ in range(steps)]
    est, _ = sample_with_context(chunk_denoise, noise, CFG, steps=steps, noise_source=lambda i: fresh[i])

    def flat_denoise(x, sigma):
        return chunk_denoise(x[:, None], sigma[:, None])[:, 0]

    flat = sample_multistep(flat_denoise, noise, CFG, steps=steps, noise_source=lambda i: fresh[i])
    assert torch.equal(est, flat)
