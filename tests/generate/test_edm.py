"""`m2l.generate.edm`: the preconditioning formulas, the noise schedule, the EDM loss, and the
sampler through `sample` / `sample_long` (exact on Gaussian data, seeded, context kept)."""

from __future__ import annotations

import math

import pytest
import torch
from generate_testing import tiny_generator

from m2l.generate.edm import (
    P_MEAN,
    P_STD,
    SIGMA_MAX,
    SIGMA_MIN,
    denoise,
    edm_loss,
    karras_sigmas,
    loss_weight,
    network_time,
    preconditioning,
)
from m2l.generate.flow import gap_mask, prefix_mask
from m2l.generate.sampling import sample, sample_long


def test_preconditioning_at_sigma_data_and_at_the_limits():
    c_skip, c_out, c_in, c_noise = preconditioning(torch.tensor([1.0]))
    assert torch.allclose(c_skip, torch.tensor([0.5]))
    assert torch.allclose(c_out, torch.tensor([1 / math.sqrt(2)]))
    assert torch.allclose(c_in, torch.tensor([1 / math.sqrt(2)]))
    assert torch.equal(c_noise, torch.tensor([0.0]))
    sigma = torch.tensor([1e-3, 0.5, 2.0, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = preconditioning(sigma)
    assert torch.allclose(c_skip, 1 / (1 + sigma**2))
    assert torch.allclose(c_out, sigma / (1 + sigma**2).sqrt())
    assert torch.allclose(c_in**2 * (1 + sigma**2), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(c_noise, sigma.log() / 4)
    assert torch.allclose(loss_weight(sigma) * c_out**2, torch.ones(4, dtype=torch.float64))
    assert c_skip[0] > 0.999 and c_out[0] < 0.002  # almost clean: the input is the answer
    assert c_skip[-1] < 0.001 and abs(float(c_out[-1]) - 1) < 0.001  # almost noise: predict x0
    c_skip, c_out, _, _ = preconditioning(torch.tensor([2.0]), sigma_data=0.5)
    assert torch.allclose(c_skip, torch.tensor([0.25 / 4.25]))
    assert torch.allclose(c_out, torch.tensor([1 / 4.25**0.5]))


def test_network_times_span_zero_to_one_over_the_sampler_range():
    t = network_time(torch.tensor([SIGMA_MIN, 1.0, SIGMA_MAX], dtype=torch.float64))
    assert torch.allclose(t[[0, 2]], torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert 0 < t[1] < 1
    # training sigmas (P_mean +- 2.5 P_std) stay well inside the range the embedding resolves
    edges = network_time(torch.tensor([P_MEAN - 2.5 * P_STD, P_MEAN + 2.5 * P_STD]).exp())
    assert 0.05 < float(edges[0]) < float(edges[1]) < 0.95


def test_the_karras_schedule():
    sigmas = karras_sigmas(5)
    assert len(sigmas) == 6 and sigmas[-1] == 0.0
    assert sigmas[0] == pytest.approx(SIGMA_MAX) and sigmas[-2] == pytest.approx(SIGMA_MIN)
    assert all(a > b for a, b in zip(sigmas, sigmas[1:], strict=False))
    roots = [s ** (1 / 7) for s in sigmas[:-1]]  # evenly spaced in sigma^(1 / rho)
    gaps = [a - b for a, b in zip(roots, roots[1:], strict=False)]
    assert max(gaps) - min(gaps) < 1e-9
    assert karras_sigmas(1) == [SIGMA_MAX, 0.0]


def test_the_loss_is_the_preconditioned_mse_on_generated_frames():
    model = tiny_generator(objective="edm")
    x0, mask = torch.randn(4, 64, 16), prefix_mask(4, 16, 6)
    loss = edm_loss(model, x0, torch.Generator().manual_seed(3), mask)
    assert torch.equal(loss, edm_loss(model, x0, torch.Generator().manual_seed(3), mask))
    generator = torch.Generator().manual_seed(3)  # the same draws by hand: ln sigma, then the noise
    sigma = (P_MEAN + P_STD * torch.randn(4, generator=generator)).exp()
    noise = torch.randn(4, 64, 16, generator=generator)
    x = x0 + sigma[:, None, None] * noise
    with torch.no_grad():
        weighted = loss_weight(sigma)[:, None, None] * (denoise(model, x, sigma, mask, x0) - x0) ** 2
    assert torch.allclose(loss, weighted[..., 6:].mean(), rtol=1e-4)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_an_untrained_model_is_the_exact_denoiser_of_unit_gaussian_data_and_heun_converges_to_it():
    """F = 0 gives D(x; sigma) = x / (1 + sigma^2), the ideal denoiser of N(0, 1) data, whose ODE
    carries sigma_max * noise to noise * sigma_max / sqrt(1 + sigma_max^2)."""
    model = tiny_generator(perturbed=False, objective="edm")
    noise = torch.randn((2, 64, 16), generator=torch.Generator().manual_seed(3))
    one = sample(model, (2, 64, 16), 1, seed=3)  # one Euler step to sigma = 0: D(80 noise; 80)
    assert torch.allclose(one, noise * SIGMA_MAX / (1 + SIGMA_MAX**2), rtol=1e-4, atol=0)
    exact = noise * SIGMA_MAX / math.sqrt(1 + SIGMA_MAX**2)
    errors = [float((sample(model, (2, 64, 16), n, seed=3) - exact).abs().max()) for n in (8, 16, 32)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.02 * float(exact.abs().max())


def test_sampling_is_seeded_and_independent_of_the_global_rng():
    model = tiny_generator(objective="edm")
    torch.manual_seed(1)
    first = sample(model, (2, 64, 16), 3, seed=7)
    torch.manual_seed(2)
    assert torch.equal(first, sample(model, (2, 64, 16), 3, seed=7))
    assert not torch.allclose(first, sample(model, (2, 64, 16), 3, seed=8))
    assert not torch.allclose(first, sample(model, (2, 64, 16), 3, seed=7, method="euler"))
    flow = tiny_generator(objective="flow")  # the same weights, sampled as a flow
    assert not torch.allclose(first, sample(flow, (2, 64, 16), 3, seed=7))
    assert torch.isfinite(first).all()


@pytest.mark.parametrize("kind", ["continuation", "inpainting"])
def test_context_frames_come_back_exactly_as_given(kind):
    model = tiny_generator(objective="edm")
    context = torch.randn(2, 64, 16)
    mask = prefix_mask(2, 16, 7) if kind == "continuation" else gap_mask(2, 16, 5, 11)
    out = sample(model, (2, 64, 16), 3, seed=0, context=context, mask=mask)
    assert torch.equal(out[:, :, mask[0]], context[:, :, mask[0]])
    free = sample(model, (2, 64, 16), 3, seed=0)
    assert not torch.allclose(out[..., ~mask[0]], free[..., ~mask[0]])  # generated with the context


def test_labels_guidance_and_long_clips():
    model = tiny_generator(objective="edm", num_classes=3)
    one = sample(model, (2, 64, 16), 2, seed=0, label=1)
    assert torch.equal(one, sample(model, (2, 64, 16), 2, seed=0, label=torch.tensor([1, 1])))
    assert not torch.allclose(one, sample(model, (2, 64, 16), 2, seed=0, label=2))
    assert not torch.allclose(one, sample(model, (2, 64, 16), 2, seed=0, label=1, guidance=3.0))
    prompt = torch.randn(64, 10)
    options = {"prompt": prompt, "overlap": 4, "label": 0, "guidance": 2.0}
    clip = sample_long(model, 30, 2, seed=3, **options)
    assert clip.shape == (1, 64, 30) and torch.equal(clip[0, :, :10], prompt)
    assert torch.equal(clip, sample_long(model, 30, 2, seed=3, **options))
