"""`m2l.consistency.precond`: the EDM scalings and the boundary condition of `Denoiser`."""

import torch

from m2l.config import ConsistencyConfig
from m2l.consistency.precond import Denoiser, scalings

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
