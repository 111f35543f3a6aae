"""`m2l.consistency.precond`: the EDM scalings, the noise conditioning and the boundary condition
of `Denoiser`."""

import math

import torch

from m2l.config import ConsistencyConfig
from m2l.consistency.precond import Denoiser, noise_conditioning, scalings

CFG = ConsistencyConfig()


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x, noise, cond):
        return self.lin(x) + noise[:, :4]


def test_boundary_condition_is_identity_at_sigma_min():
    den = Denoiser(_Net(), CFG, 8)
    x = torch.randn(5, 4)
    out = den(x, torch.full((5,), CFG.sigma_min))
    assert torch.allclose(out, x, atol=1e-6)
    c_skip, c_out, _ = scalings(torch.tensor(CFG.sigma_min), CFG)
    assert c_skip.item() == 1.0 and c_out.item() == 0.0


def test_scalings_at_large_sigma():
    c_skip, c_out, c_in = scalings(torch.tensor(80.0), CFG)
    assert c_skip < 1e-4 and abs(c_out - CFG.sigma_data) < 1e-3
    assert abs(c_in - 1 / (80.0**2 + 0.25) ** 0.5) < 1e-9


def test_noise_conditioning_embeds_log_sigma_over_4_as_sin_then_cos():
    e = noise_conditioning(torch.tensor([1.0, 80.0]), 8)
    assert e.shape == (2, 8)
    assert torch.allclose(e[0], torch.cat([torch.zeros(4), torch.ones(4)]))  # log(1) = 0
    assert torch.allclose(e[:, :4] ** 2 + e[:, 4:] ** 2, torch.ones(2, 4))
    assert torch.allclose(e[1, 0], torch.tensor(math.log(80.0) / 4).sin())  # the first frequency is 1


def test_the_raw_network_is_given_the_noise_conditioning_and_the_scaled_input():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, noise, cond):
            seen.append((x, noise, cond))
            return torch.zeros_like(x)

    sigma, x = torch.tensor([0.5, 3.0]), torch.randn(2, 4)
    out = Denoiser(Spy(), CFG, 6)(x, sigma, "features")
    (x_in, noise, cond), (c_skip, _, c_in) = seen[0], scalings(sigma, CFG)
    assert torch.equal(noise, noise_conditioning(sigma, 6)) and cond == "features"
    torch.testing.assert_close(x_in, c_in[:, None] * x)
    torch.testing.assert_close(out, c_skip[:, None] * x)
