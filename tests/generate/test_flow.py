"""`m2l.generate.flow`: context masks, the masked flow loss, guidance and the seeded samplers."""

from __future__ import annotations

import pytest
import torch
from generate_testing import tiny_generator
from m2l_testing import assert_one_line_error

from m2l.errors import M2LError
from m2l.generate.flow import (
    context_masks,
    euler_step,
    flow_loss,
    gap_mask,
    guided_velocity,
    heun_step,
    prefix_mask,
    time_grid,
)
from m2l.generate.sampling import sample, sample_long, window_seeds


def _kind(row: torch.Tensor) -> str:
    """none / prefix / gap of one mask row (or "other")."""
    given = row.nonzero().flatten().tolist()
    frames = row.numel()
    if not given:
        return "none"
    if given == list(range(len(given))) and len(given) < frames:
        return "prefix"
    hole = (~row).nonzero().flatten().tolist()
    contiguous = hole == list(range(hole[0], hole[-1] + 1)) if hole else False
    return "gap" if contiguous and hole[0] > 0 and hole[-1] < frames - 1 else "other"


def test_context_masks_draw_the_three_kinds_in_proportion_and_repeat_for_a_seed():
    masks = context_masks(3000, 12, torch.Generator().manual_seed(0), mix=(0.2, 0.3, 0.5))
    kinds = [_kind(row) for row in masks]
    assert "other" not in kinds
    for kind, share in (("none", 0.2), ("prefix", 0.3), ("gap", 0.5)):
        assert abs(kinds.count(kind) / len(kinds) - share) < 0.04
    lengths = {int(row.sum()) for row, kind in zip(masks, kinds, strict=True) if kind == "prefix"}
    assert lengths == set(range(1, 12))
    again = context_masks(3000, 12, torch.Generator().manual_seed(0), mix=(0.2, 0.3, 0.5))
    assert torch.equal(masks, again)
    with pytest.raises(M2LError):
        context_masks(4, 2, torch.Generator())


def test_prefix_and_gap_masks():
    assert prefix_mask(2, 5, 2).tolist() == [[True, True, False, False, False]] * 2
    assert gap_mask(1, 5, 1, 3).tolist() == [[True, False, False, True, True]]


def test_flow_loss_counts_generated_frames_only_and_repeats_for_a_generator():
    model = tiny_generator()
    x0 = torch.randn(4, 64, 16)
    mask = prefix_mask(4, 16, 6)
    loss = flow_loss(model, x0, torch.Generator().manual_seed(3), mask)
    assert torch.equal(loss, flow_loss(model, x0, torch.Generator().manual_seed(3), mask))
    assert not torch.equal(loss, flow_loss(model, x0, torch.Generator().manual_seed(4), mask))
    # the same draws by hand: t, then the noise
    generator = torch.Generator().manual_seed(3)
    t = torch.rand(4, generator=generator)
    noise = torch.randn(4, 64, 16, generator=generator)
    x_t = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
    error = (model(x_t, t, mask, x0) - (noise - x0))[..., 6:] ** 2
    assert torch.allclose(loss, error.mean())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())


def test_label_dropout_uses_the_null_class():
    model = tiny_generator(num_classes=2)
    x0, label = torch.randn(3, 64, 16), torch.tensor([0, 1, 0])
    dropped = flow_loss(model, x0, torch.Generator().manual_seed(0), label=label, label_dropout=1.0)
    unlabelled = flow_loss(model, x0, torch.Generator().manual_seed(0), label=torch.full((3,), 2))
    assert torch.equal(dropped, unlabelled)


def test_guidance_one_is_the_conditional_prediction_and_zero_the_unconditional():
    model = tiny_generator(num_classes=3)
    x, t, label = torch.randn(2, 64, 16), torch.rand(2), torch.tensor([1, 2])
    with torch.no_grad():
        conditional, null = model(x, t, label=label), model(x, t)
        assert torch.equal(guided_velocity(model, x, t, label=label, guidance=1.0), conditional)
        assert torch.allclose(guided_velocity(model, x, t, label=label, guidance=0.0), null, atol=1e-6)
        guided = guided_velocity(model, x, t, label=label, guidance=3.0)
    assert torch.allclose(guided, null + 3.0 * (conditional - null), atol=1e-5)


def test_steps_are_exact_on_straight_paths_and_heun_beats_euler_on_a_curved_one():
    x = torch.ones(1, 2, 3)
    assert torch.allclose(euler_step(lambda x, t: 2 * torch.ones_like(x), x, 1.0, 0.5), torch.zeros_like(x))
    assert time_grid(4) == [1.0, 0.75, 0.5, 0.25, 0.0]

    def integrate(step, steps):  # dx/dt = t from 1 to 0: x(0) = x(1) - 1 / 2
        grid, y = time_grid(steps), x.clone()
        for t, t_next in zip(grid[:-1], grid[1:], strict=True):
            y = step(lambda y, t: torch.full_like(y, t), y, t, t_next)
        return y

    assert torch.allclose(integrate(heun_step, 3), x - 0.5)
    assert not torch.allclose(integrate(euler_step, 3), x - 0.5)


@pytest.mark.parametrize("method", ["heun", "euler"])
def test_sampling_is_deterministic_for_a_seed_and_independent_of_the_global_rng(method):
    model = tiny_generator()
    torch.manual_seed(1)
    first = sample(model, (2, 64, 16), 3, seed=7, method=method)
    torch.manual_seed(2)
    torch.rand(100)
    assert torch.equal(first, sample(model, (2, 64, 16), 3, seed=7, method=method))
    assert not torch.allclose(first, sample(model, (2, 64, 16), 3, seed=8, method=method))
    assert first.shape == (2, 64, 16) and torch.isfinite(first).all()


@pytest.mark.parametrize("kind", ["continuation", "inpainting"])
def test_context_frames_come_back_exactly_as_given(kind):
    model = tiny_generator()
    context = torch.randn(2, 64, 16)
    mask = prefix_mask(2, 16, 7) if kind == "continuation" else gap_mask(2, 16, 5, 11)
    out = sample(model, (2, 64, 16), 2, seed=0, context=context, mask=mask)
    assert torch.equal(out[mask[:, None].expand_as(out)], context[mask[:, None].expand_as(out)])
    free = sample(model, (2, 64, 16), 2, seed=0)
    assert not torch.allclose(out[..., ~mask[0]], free[..., ~mask[0]])  # generated with the context
    one = sample(model, (2, 64, 16), 2, seed=0, context=context[0], mask=mask[0])  # [D, T] and [T]
    assert torch.equal(one[:, :, mask[0]], context[0][None, :, mask[0]].expand(2, -1, -1))


def test_labels_and_guidance_in_sampling():
    model = tiny_generator(num_classes=3)
    one = sample(model, (2, 64, 16), 2, seed=0, label=1)
    assert torch.equal(one, sample(model, (2, 64, 16), 2, seed=0, label=torch.tensor([1, 1])))
    assert not torch.allclose(one, sample(model, (2, 64, 16), 2, seed=0, label=1, guidance=3.0))


def test_long_clips_continue_window_after_window():
    model = tiny_generator()
    clip = sample_long(model, 40, 2, seed=3, batch=2)
    assert clip.shape == (2, 64, 40) and torch.equal(clip, sample_long(model, 40, 2, seed=3, batch=2))
    first = sample(model, (2, 64, 16), 2, seed=next(window_seeds(3)))
    assert torch.equal(clip[..., :16], first)  # the first window is an unconditional sample
    prompt = torch.randn(64, 10)
    continued = sample_long(model, 30, 2, seed=3, prompt=prompt, overlap=4)
    assert continued.shape == (1, 64, 30) and torch.equal(continued[0, :, :10], prompt)
    assert sample_long(model, 5, 2, seed=3).shape == (1, 64, 5)


@pytest.mark.parametrize(
    "call, named",
    [
        (lambda m: sample(m, (1, 32, 16), 2, 0), "(B, 64, T)"),
        (lambda m: sample(m, (1, 64, 16), 0, 0), "steps"),
        (lambda m: sample(m, (1, 64, 16), 2, -1), "seed"),
        (lambda m: sample(m, (1, 64, 16), 2, 0, method="rk4"), "heun"),
        (lambda m: sample(m, (1, 64, 16), 2, 0, mask=torch.ones(16, dtype=torch.bool)), "context"),
        (lambda m: sample(m, (1, 64, 16), 2, 0, guidance=2.0), "needs a class label"),
        (lambda m: sample(m, (2, 64, 16), 2, 0, label=torch.tensor([0, 1, 2])), "2 integers"),
        (lambda m: sample_long(m, 40, 2, 0, overlap=16), "overlap"),
        (lambda m: sample_long(m, 4, 2, 0, prompt=torch.randn(64, 8)), "longer"),
    ],
)
def test_bad_sampling_arguments_are_one_line_errors(call, named):
    with pytest.raises(M2LError) as err:
        call(tiny_generator())
    assert_one_line_error(err, named)
