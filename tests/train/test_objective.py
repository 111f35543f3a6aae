"""The training objective: teacher placement per recipe, the pass it saves, the spectral term."""

import dataclasses

import pytest
import torch
from train_testing import fast_config

from m2l.config import preset
from m2l.consistency.loss import consistency_loss
from m2l.consistency.sampling import sigma_from_index
from m2l.consistency.schedule import delta_exponential
from m2l.errors import M2LError
from m2l.models import create
from m2l.train.config import RECIPES
from m2l.train.objective import ConsistencyObjective, sample_seeds


def _setup(**changes):
    cfg = fast_config(**{"recipe": "published", **RECIPES["published"], **changes})
    torch.manual_seed(0)
    model = create(preset(cfg.model))
    torch.manual_seed(1)
    audio = 0.1 * torch.randn(2, 1, 34304)
    return model, ConsistencyObjective(model, cfg), audio, sample_seeds(0, 3, 0, 2)


class Counter:
    def __init__(self, model):
        self.levels = []
        original = model.denoise

        def denoise(x, sigma, cond):
            self.levels.append(sigma.detach().clone())
            return original(x, sigma, cond)

        model.denoise = denoise


def test_published_recipe_is_the_index_delta_teacher_with_inverse_gap_weights():
    model, obj, audio, seeds = _setup()
    assert (obj.cfg.teacher, obj.cfg.weighting, obj.cfg.spectral_weight) == ("index_delta", "inverse_gap", 0)
    step = 1
    losses = obj(audio, seeds, step)
    # recompute by hand from the same draws
    x0 = model.prepare(audio)
    index, noise = obj.draw(seeds, tuple(x0.shape[1:]), x0.device)
    delta = delta_exponential(step, obj.cfg.steps, obj.cfg.delta_start, obj.cfg.delta_end)
    sigma, sigma_t = (
        sigma_from_index(index, model.cfg.consistency),
        sigma_from_index((index - delta).clamp_min(0), model.cfg.consistency),
    )
    cond = model.conditioning(x0)
    with torch.no_grad():
        teacher = model.denoise(model.add_noise(x0, noise, sigma_t), sigma_t, cond)
    student = model.denoise(model.add_noise(x0, noise, sigma), sigma, cond)
    expected = consistency_loss(
        model.group_view(student), model.group_view(teacher), sigma, sigma_t, obj.cfg.huber_c
    )
    torch.testing.assert_close(losses, expected)


def test_curriculum_first_stage_is_denoising_without_a_teacher_pass():
    model, obj, audio, seeds = _setup(teacher="curriculum", gap_stage_steps=10, weighting="edm")
    calls = Counter(model)
    obj(audio, seeds, step=0)
    assert len(calls.levels) == 1  # the student only: at gap 1 the teacher is the clean input
    assert obj.last_terms["gap"] == 1.0
    calls.levels.clear()
    obj(audio, seeds, step=25)  # third stage: gap 1/4
    assert obj.last_terms["gap"] == 0.25
    student, teacher = calls.levels[1], calls.levels[0]
    cc = model.cfg.consistency
    torch.testing.assert_close(teacher, cc.sigma_min + (student - cc.sigma_min) * 0.75)


def test_denoising_stage_loss_is_the_distance_to_the_clean_input():
    model, obj, audio, seeds = _setup(teacher="curriculum", weighting="edm")
    with torch.no_grad():
        model.denoiser.net.conv_out.weight.normal_()  # a non-trivial network output
    losses = obj(audio, seeds, 0)
    x0 = model.prepare(audio)
    index, noise = obj.draw(seeds, tuple(x0.shape[1:]), x0.device)
    sigma = sigma_from_index(index, model.cfg.consistency)
    student = model.denoise(model.add_noise(x0, noise, sigma), sigma, model.conditioning(x0))
    target = model.add_noise(x0, noise, torch.full_like(sigma, model.cfg.consistency.sigma_min))
    expected = consistency_loss(
        model.group_view(student),
        model.group_view(target),
        sigma,
        sigma,
        obj.cfg.huber_c,
        "edm",
        model.cfg.consistency,
    )
    torch.testing.assert_close(losses, expected)


@pytest.mark.parametrize("model_name,crop", [("m2l-v1-tiny", 64), ("m2l-v2-tiny", 128)])
def test_spectral_term_decodes_from_sigma_max_and_adds_to_the_loss(model_name, crop):
    model, obj, audio, seeds = _setup(
        model=model_name, crop_frames=crop, teacher="curriculum", weighting="edm", spectral_weight=2.0
    )
    from m2l.audio.spectral import num_samples

    audio = 0.1 * torch.randn(2, 1, num_samples(crop, model.cfg.spectral))
    with torch.no_grad():  # the zero-initialised output conv would stop gradients to the decoder
        model.denoiser.net.conv_out.weight.normal_(0, 0.01)
    calls = Counter(model)
    with_spec = obj(audio, seeds, 0)
    assert torch.allclose(calls.levels[-1], torch.full_like(calls.levels[-1], 80.0))
    terms = obj.last_terms
    assert terms["spectral"] > 0
    plain = ConsistencyObjective(model, dataclasses.replace(obj.cfg, spectral_weight=0.0))
    without = plain(audio, seeds, 0)
    torch.testing.assert_close(
        with_spec.mean() - without.mean(), torch.tensor(2.0 * terms["spectral"]), rtol=1e-4, atol=1e-4
    )
    with_spec.mean().backward()  # gradients reach the decoder through the spectral term
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.decoder.parameters())


def test_shared_spectral_term_scores_the_students_moved_to_sigma_max_without_an_extra_pass():
    model, obj, audio, seeds = _setup(
        teacher="curriculum", weighting="edm", spectral_weight=1.0, spectral_share=0.5
    )
    seeds = sample_seeds(0, 5, 0, 8)
    audio = 0.1 * torch.randn(8, 1, 34304)
    with torch.no_grad():
        model.denoiser.net.conv_out.weight.normal_(0, 0.01)
    calls = Counter(model)
    losses = obj(audio, seeds, 0)
    assert len(calls.levels) == 1  # denoising stage + shared spectral term: the student pass only
    top = torch.isclose(calls.levels[0][:, 0], torch.tensor(80.0))
    assert 0 < int(top.sum()) < 8  # some samples, decided per sample by its seed
    _, _, mask = obj.draw(seeds, (2, 1024, 64), torch.device("cpu"))
    assert torch.equal(top, mask)
    plain = ConsistencyObjective(model, dataclasses.replace(obj.cfg, spectral_weight=0.0))
    diff = (losses - plain(audio, seeds, 0)).detach()
    assert (diff[~mask] == 0).all() and (diff[mask] > 0).all()


def _auxiliary_setup(**changes):
    """`_setup` of the curriculum + EDM objective with a spectral term and `changes`, a network
    whose output is not zero, and a counter of its evaluations."""
    model, obj, audio, seeds = _setup(teacher="curriculum", weighting="edm", spectral_weight=1.0, **changes)
    with torch.no_grad():
        model.denoiser.net.conv_out.weight.normal_(0, 0.01)
    return model, obj, audio, seeds, Counter(model)


def _assert_term_adds(obj, model, audio, seeds, losses, field, term, weight):
    """`losses` exceed those of the same objective with `field` = 0 by `weight` times the logged
    mean of `term`."""
    plain = ConsistencyObjective(model, dataclasses.replace(obj.cfg, **{field: 0.0}))
    torch.testing.assert_close(
        (losses - plain(audio, seeds, 0)).mean(),
        torch.tensor(weight * obj.last_terms[term]),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize(
    "field,term", [("phase_weight", "phase"), ("coherence_weight", "coherence"), ("level_weight", "level")]
)
def test_phase_and_level_terms_score_the_same_one_step_decode(field, term):
    model, obj, audio, seeds, calls = _auxiliary_setup(**{field: 3.0})
    losses = obj(audio, seeds, 0)
    assert len(calls.levels) == 2  # student + one one-step decode shared by every term
    assert obj.last_terms[term] > 0
    _assert_term_adds(obj, model, audio, seeds, losses, field, term, 3.0)


def test_rollout_decodes_the_first_decode_again_at_a_level_in_the_configured_range():
    model, obj, audio, seeds, calls = _auxiliary_setup(
        rollout_weight=0.5, rollout_sigma_min=0.3, rollout_sigma_max=0.6
    )
    losses = obj(audio, seeds, 0)
    assert len(calls.levels) == 3  # student, one-step decode, second step
    second = calls.levels[2]
    assert ((second >= 0.3) & (second <= 0.6)).all() and not torch.equal(second[0], second[1])
    assert obj.last_terms["spectral_2step"] > 0
    _assert_term_adds(obj, model, audio, seeds, losses, "rollout_weight", "spectral_2step", 0.5)


def test_context_rollout_renoises_the_left_chunk_and_starts_the_right_one_again():
    """v2 decodes each chunk after the first beside its left neighbour's first estimate at
    sigma_cond: the two-step term of `rollout_context` trains that path and no other."""
    model, obj, _, seeds, calls = _auxiliary_setup(
        model="m2l-v2-tiny", crop_frames=128, rollout_weight=0.5, rollout_sigma_min=0.2, rollout_sigma_max=0.8
    )
    obj = ConsistencyObjective(model, dataclasses.replace(obj.cfg, rollout_context=True))
    from m2l.audio.spectral import num_samples

    audio = 0.1 * torch.randn(2, 1, num_samples(128, model.cfg.spectral))
    losses = obj(audio, seeds, 0)
    second = calls.levels[-1]  # [B, 2]: left, right
    assert ((second[:, 0] >= 0.2) & (second[:, 0] <= 0.8)).all()
    assert torch.equal(second[:, 1], torch.full_like(second[:, 1], model.cfg.consistency.sigma_max))
    _assert_term_adds(obj, model, audio, seeds, losses, "rollout_weight", "spectral_2step", 0.5)


def test_context_rollout_is_refused_for_a_model_without_chunk_pairs():
    model, obj, *_ = _auxiliary_setup(rollout_weight=1.0)
    with pytest.raises(M2LError, match="rollout_context is for chunked"):
        ConsistencyObjective(model, dataclasses.replace(obj.cfg, rollout_context=True))


def test_auxiliary_terms_fade_out_and_then_cost_no_extra_pass():
    model, obj, audio, seeds = _setup(
        teacher="curriculum",
        weighting="edm",
        spectral_weight=1.0,
        rollout_weight=1.0,
        gap_stage_steps=1,
        aux_fade_start=10,
        aux_fade_steps=4,
    )
    assert [obj.aux_scale(s) for s in (0, 9, 10, 12, 14, 99)] == [1.0, 1.0, 1.0, 0.5, 0.0, 0.0]
    calls = Counter(model)
    obj(audio, seeds, 14)
    assert len(calls.levels) == 2  # teacher + student: no one-step or two-step decode
    assert "spectral" not in obj.last_terms


def test_only_the_named_auxiliary_terms_fade():
    model, obj, audio, seeds = _setup(
        teacher="curriculum",
        weighting="edm",
        spectral_weight=1.0,
        level_weight=2.0,
        rollout_weight=1.0,
        gap_stage_steps=1,
        aux_fade_start=10,
        aux_fade_steps=4,
        aux_fade_terms="spectral",
    )
    calls = Counter(model)
    losses = obj(audio, seeds, 14)
    assert len(calls.levels) == 4  # teacher, student, one-step decode (level), second step
    assert "spectral" not in obj.last_terms and "spectral_2step" not in obj.last_terms
    assert obj.last_terms["level"] > 0 and obj.last_terms["level_2step"] > 0
    plain = ConsistencyObjective(model, dataclasses.replace(obj.cfg, rollout_weight=0.0))
    torch.testing.assert_close(  # the two-step term still counts, at its full weight
        (losses - plain(audio, seeds, 14)).mean(),
        torch.tensor(2.0 * obj.last_terms["level_2step"]),
        rtol=1e-4,
        atol=1e-4,
    )
