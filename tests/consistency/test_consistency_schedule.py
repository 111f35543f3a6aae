"""`m2l.consistency.schedule`: the sigma <-> index warp, Karras levels, the teacher offsets and gap,
log-normal index sampling and the noise embedding."""

import torch

from m2l.config import ConsistencyConfig
from m2l.consistency.schedule import (
    curriculum_gap,
    delta_exponential,
    index_from_sigma,
    karras_sigmas,
    noise_embedding,
    sample_index_lognormal,
    sigma_from_index,
    teacher_sigma_relative,
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


def test_delta_schedule_and_lognormal_sampling():
    assert abs(delta_exponential(0, 100) - 0.1) < 1e-12
    assert abs(delta_exponential(100, 100) - 0.001) < 1e-12
    assert delta_exponential(30, 100) > delta_exponential(60, 100)
    gen = torch.Generator().manual_seed(0)
    idx = sample_index_lognormal(20000, CFG, -1.1, 2.0, gen)
    assert idx.min() >= 0 and idx.max() <= 1
    log_sigma = sigma_from_index(idx.double(), CFG).log()
    assert abs(log_sigma.median() + 1.1) < 0.1


def test_noise_embedding_is_sin_then_cos():
    e = noise_embedding(torch.tensor([1.0, 80.0]), 8)
    assert e.shape == (2, 8)
    assert torch.allclose(e[0], torch.cat([torch.zeros(4), torch.ones(4)]))  # log(1) = 0
    assert torch.allclose(e[:, :4] ** 2 + e[:, 4:] ** 2, torch.ones(2, 4))


def test_curriculum_gap_starts_with_denoising_and_halves_per_stage_down_to_its_floor():
    assert [curriculum_gap(s, 100, 1 / 8) for s in (0, 99, 100, 199, 200, 300, 400, 10_000)] == [
        1.0,
        1.0,
        0.5,
        0.5,
        0.25,
        0.125,
        0.125,
        0.125,
    ]


def test_relative_teacher_sigma_spans_sigma_min_to_sigma():
    cfg = ConsistencyConfig()
    sigma = torch.tensor([[0.002, 0.3, 80.0]])
    torch.testing.assert_close(teacher_sigma_relative(sigma, 1.0, cfg), torch.full_like(sigma, 0.002))
    torch.testing.assert_close(teacher_sigma_relative(sigma, 0.0, cfg), sigma)
    half = teacher_sigma_relative(sigma, 0.5, cfg)
    torch.testing.assert_close(half, 0.002 + (sigma - 0.002) / 2)
