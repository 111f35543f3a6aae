"""`m2l.consistency.schedule`: the teacher offsets and gap, and log-normal index sampling."""

import torch

from m2l.config import ConsistencyConfig
from m2l.consistency.sampling import sigma_from_index
from m2l.consistency.schedule import (
    curriculum_gap,
    delta_exponential,
    sample_index_lognormal,
    teacher_sigma_relative,
)

CFG = ConsistencyConfig()


def test_delta_schedule_and_lognormal_sampling():
    assert abs(delta_exponential(0, 100) - 0.1) < 1e-12
    assert abs(delta_exponential(100, 100) - 0.001) < 1e-12
    assert delta_exponential(30, 100) > delta_exponential(60, 100)
    gen = torch.Generator().manual_seed(0)
    idx = sample_index_lognormal(20000, CFG, -1.1, 2.0, gen)
    assert idx.min() >= 0 and idx.max() <= 1
    log_sigma = sigma_from_index(idx.double(), CFG).log()
    assert abs(log_sigma.median() + 1.1) < 0.1


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
