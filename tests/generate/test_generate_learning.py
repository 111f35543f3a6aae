"""The generator learns, with either objective: a `gen-tiny` model trained for 100 steps on
structured synthetic latents lowers its loss (flow or EDM) and samples clips whose frame-to-frame
correlation is the data's, not the noise's (an untrained model fails the same check)."""

from __future__ import annotations

import torch
from generate_testing import lag1_autocorrelation, sinusoids, tiny_generator

from m2l.generate.edm import edm_loss
from m2l.generate.flow import context_masks, flow_loss
from m2l.generate.model import Generator
from m2l.generate.sampling import sample

DIMS, FRAMES = 8, 16  # 8 latent dimensions keep the problem learnable in a hundred small steps


def _held_out_loss(model: Generator, data: torch.Tensor) -> float:
    with torch.no_grad():
        return float(flow_loss(model, data, torch.Generator().manual_seed(5)))


def _like_data(samples: torch.Tensor, data: torch.Tensor) -> bool:
    """The samples' lag-1 autocorrelation is nearer the data's than half-way from unit noise's."""
    target, noise = (
        lag1_autocorrelation(data),
        lag1_autocorrelation(torch.randn(data.shape, generator=torch.Generator().manual_seed(0))),
    )
    return abs(lag1_autocorrelation(samples) - target) < 0.5 * abs(noise - target)


def test_flow_loss_falls_and_samples_take_the_structure_of_the_data():
    model = tiny_generator(perturbed=False, latent_dim=DIMS)
    held_out = sinusoids(256, DIMS, FRAMES, torch.Generator().manual_seed(7))
    before = _held_out_loss(model, held_out)
    assert not _like_data(sample(model, (64, DIMS, FRAMES), 8, seed=0), held_out)  # noise at first
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(100):
        batch = sinusoids(32, DIMS, FRAMES, generator)
        loss = flow_loss(model, batch, generator, context_masks(32, FRAMES, generator))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = _held_out_loss(model, held_out)
    samples = sample(model, (64, DIMS, FRAMES), 8, seed=0)
    noise = torch.randn(held_out.shape, generator=torch.Generator().manual_seed(0))
    print(
        f"loss {before:.3f} -> {after:.3f}; lag-1 autocorrelation: samples "
        f"{lag1_autocorrelation(samples):.3f}, data {lag1_autocorrelation(held_out):.3f}, "
        f"noise {lag1_autocorrelation(noise):.3f}; sample std {float(samples.std()):.3f}"
    )
    assert after < 0.7 * before
    assert _like_data(samples, held_out)
    assert 0.6 < float(samples.std()) < 1.4  # the data's scale, neither collapsed nor blown up


def test_edm_loss_falls_and_samples_take_the_structure_of_the_data():
    """The EDM loss starts lower (c_skip already passes the noisy input through, which the flow
    must learn first), so what falls is the part that needs the data's structure: a smaller fall
    is asked than of the flow loss. Adam at 3e-3: at 1e-2 this tiny EDM model stalls."""
    model = tiny_generator(perturbed=False, latent_dim=DIMS, objective="edm")
    held_out = sinusoids(256, DIMS, FRAMES, torch.Generator().manual_seed(7))
    with torch.no_grad():
        before = float(edm_loss(model, held_out, torch.Generator().manual_seed(5)))
    assert not _like_data(sample(model, (64, DIMS, FRAMES), 8, seed=0), held_out)  # noise at first
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(100):
        batch = sinusoids(32, DIMS, FRAMES, generator)
        loss = edm_loss(model, batch, generator, context_masks(32, FRAMES, generator))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        after = float(edm_loss(model, held_out, torch.Generator().manual_seed(5)))
    samples = sample(model, (64, DIMS, FRAMES), 8, seed=0)
    print(
        f"EDM loss {before:.3f} -> {after:.3f}; lag-1 autocorrelation: samples "
        f"{lag1_autocorrelation(samples):.3f}, data {lag1_autocorrelation(held_out):.3f}; "
        f"sample std {float(samples.std()):.3f}"
    )
    assert after < 0.8 * before
    assert _like_data(samples, held_out)
    assert 0.6 < float(samples.std()) < 1.4
