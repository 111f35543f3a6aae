import math

import torch

from m2l.consistency.loss import consistency_loss, pseudo_huber


def test_pseudo_huber_known_values():
    a = torch.zeros(2, 1, 100)
    b = torch.zeros(2, 1, 100)
    b[0, 0, 0] = 3.0
    b[1, 0, :4] = 2.0  # norm 4
    c = 0.00054 * math.sqrt(100)
    out = pseudo_huber(a, b, 0.00054)
    expected = torch.tensor([[math.sqrt(9 + c * c) - c], [math.sqrt(16 + c * c) - c]])
    torch.testing.assert_close(out, expected)
    assert pseudo_huber(a, a, 0.00054).abs().max() == 0


def test_consistency_loss_weights_by_inverse_delta_sigma_and_sums_groups():
    a = torch.zeros(1, 2, 4)
    b = torch.ones(1, 2, 4)  # distance sqrt(4 + c^2) - c per group
    sigma = torch.tensor([[1.0, 2.0]])
    teacher = torch.tensor([[0.5, 1.0]])
    per_group = pseudo_huber(a, b, 0.1)[0]
    out = consistency_loss(a, b, sigma, teacher, 0.1)
    torch.testing.assert_close(out, (per_group / torch.tensor([0.5, 1.0])).sum().reshape(1))


def test_edm_weight_is_inverse_c_out_bounded_near_sigma_min_and_ignores_the_gap():
    from m2l.config import ConsistencyConfig
    from m2l.consistency.loss import C_OUT_FLOOR, loss_weight
    from m2l.consistency.precond import scalings

    cc = ConsistencyConfig()
    sigma = torch.tensor([[0.002, 0.01, 0.5, 80.0]])
    w = loss_weight(sigma, sigma * 0.5, "edm", cc)
    c_out = scalings(sigma, cc)[1]
    torch.testing.assert_close(w[0, 2:], 1 / c_out[0, 2:])
    assert w[0, 0] == 1 / C_OUT_FLOOR  # c_out is 0 at sigma_min: floored, finite
    assert torch.isfinite(w).all() and (w <= 1 / C_OUT_FLOOR).all()
    torch.testing.assert_close(w, loss_weight(sigma, sigma * 0.99, "edm", cc))  # gap-free
    # the published weight explodes as the gap closes; edm does not
    assert loss_weight(sigma, sigma * 0.999, "inverse_gap", cc).max() > 1e5


def test_unknown_weighting_is_refused():
    import pytest

    with pytest.raises(ValueError, match="weighting"):
        consistency_loss(
            torch.zeros(1, 1, 2),
            torch.zeros(1, 1, 2),
            torch.ones(1, 1),
            torch.zeros(1, 1),
            0.1,
            weighting="nope",
        )
