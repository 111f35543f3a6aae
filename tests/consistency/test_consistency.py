import pytest
import torch

from m2l.config import ConsistencyConfig
from m2l.consistency.precond import Denoiser, scalings
from m2l.consistency.sampling import sample_multistep, sample_one_step
from m2l.consistency.schedule import (
    delta_exponential,
    index_from_sigma,
    karras_sigmas,
    noise_embedding,
    sample_index_lognormal,
    sigma_from_index,
)

CFG = ConsistencyConfig()


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, sigma, cond):
        return self.lin(x) + sigma[:, None].log()


def test_boundary_condition_is_identity_at_sigma_min():
    den = Denoiser(_Net(), CFG)
    x = torch.randn(5, 4)
    out = den(x, torch.full((5,), CFG.sigma_min))
    assert torch.allclose(out, x, atol=1e-6)
    c_skip, c_out, _ = scalings(torch.tensor(CFG.sigma_min), CFG)
    assert c_skip.item() == 1.0 and c_out.item() == 0.0


def test_scalings_at_large_sigma():
    c_skip, c_out, c_in = scalings(torch.tensor(80.0), CFG)
    assert c_skip < 1e-4 and abs(c_out - CFG.sigma_data) < 1e-3
    assert abs(c_in - 1 / (80.0**2 + 0.25) ** 0.5) < 1e-9


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


def test_curriculum_gap_starts_with_denoising_and_halves_per_stage_down_to_its_floor():
    from m2l.consistency.schedule import curriculum_gap

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
    from m2l.consistency.schedule import teacher_sigma_relative

    cfg = ConsistencyConfig()
    sigma = torch.tensor([[0.002, 0.3, 80.0]])
    torch.testing.assert_close(teacher_sigma_relative(sigma, 1.0, cfg), torch.full_like(sigma, 0.002))
    torch.testing.assert_close(teacher_sigma_relative(sigma, 0.0, cfg), sigma)
    half = teacher_sigma_relative(sigma, 0.5, cfg)
    torch.testing.assert_close(half, 0.002 + (sigma - 0.002) / 2)
