"""Tests for m2l.evaluate.latents.latent_stats on constructed latents with known statistics."""

from __future__ import annotations

import math

import pytest
import torch

from m2l.errors import M2LError
from m2l.evaluate.latents import latent_stats


def test_v1_layout_constant_per_dimension() -> None:
    # [channels, 64, frames]: latent dimension d holds the value d everywhere.
    z = torch.arange(64, dtype=torch.float32)[None, :, None].expand(2, 64, 10)
    s = latent_stats(z, dim=-2)
    assert s["dim"] == 64 and s["count"] == 20
    assert s["per_dim_mean"] == pytest.approx(list(range(64)))
    assert s["per_dim_std"] == pytest.approx([0.0] * 64)
    assert s["mean"] == pytest.approx(31.5)
    assert s["std"] == pytest.approx(math.sqrt((64**2 - 1) / 12))  # uniform over 0..63
    assert s["abs_max"] == 63.0


def test_v2_layout_alternating_signs() -> None:
    # [rows, chunks, K, 64]: dimension d alternates +a_d / -a_d along K, so mean 0, std a_d.
    amp = torch.linspace(0.1, 0.8, 64)
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0])[:, None]
    z = (sign * amp)[None, None].expand(3, 2, 4, 64)
    s = latent_stats(z, dim=-1)
    assert s["dim"] == 64 and s["count"] == 24
    assert s["per_dim_mean"] == pytest.approx([0.0] * 64, abs=1e-12)
    assert s["per_dim_std"] == pytest.approx(amp.tolist(), rel=1e-6)
    assert s["mean"] == pytest.approx(0.0, abs=1e-12)
    assert s["std"] == pytest.approx(math.sqrt(float((amp.double() ** 2).mean())), rel=1e-6)
    assert s["saturation"] == 0.0


def test_saturation_uses_the_latent_scale() -> None:
    # Raw tanh outputs: a quarter at +-0.995 (saturated), the rest at 0.5; the codec divides by 0.06.
    raw = torch.full((1, 4, 8), 0.5, dtype=torch.float64)
    raw[0, 0, :] = 0.995  # all of dimension 0
    raw[0, 1, :4] = -0.995  # half of dimension 1
    raw[0, 2, :2] = 0.98  # close, but below the threshold
    z = raw / 0.06
    s = latent_stats(z, dim=1, latent_scale=0.06)
    assert s["saturation"] == pytest.approx((8 + 4) / 32)
    assert s["per_dim_saturation"] == pytest.approx([1.0, 0.5, 0.0, 0.0])
    assert s["latent_scale"] == 0.06 and s["threshold"] == 0.99
    # Read as v2 latents (scale 1.0) every value is far above 0.99.
    assert latent_stats(z, dim=1)["saturation"] == 1.0
    # A lower threshold counts the 0.98 entries (and not the 0.5 ones).
    assert latent_stats(z, dim=1, latent_scale=0.06, threshold=0.9)["saturation"] == pytest.approx(14 / 32)


def test_threshold_is_strict() -> None:
    z = torch.tensor([[0.99, -0.99, 0.995, 0.0]], dtype=torch.float64)
    assert latent_stats(z, dim=0)["saturation"] == 0.25


def test_single_value_per_dimension_has_zero_std() -> None:
    s = latent_stats(torch.tensor([1.0, -2.0, 3.0]), dim=0)
    assert s["per_dim_std"] == [0.0, 0.0, 0.0] and s["count"] == 1
    assert s["std"] == pytest.approx(math.sqrt(((1 - 2 / 3) ** 2 + (-2 - 2 / 3) ** 2 + (3 - 2 / 3) ** 2) / 3))


@pytest.mark.parametrize(
    ("z", "kwargs", "message"),
    [
        (torch.zeros(0, 64), {"dim": -1}, "non-empty"),
        (torch.tensor(1.0), {"dim": 0}, "non-empty"),
        (torch.zeros(2, 64, 3), {"dim": 3}, "out of range"),
        (torch.zeros(2, 64, 3), {"dim": True}, "out of range"),
        (torch.full((2, 64), float("nan")), {"dim": -1}, "NaN"),
        (torch.zeros(2, 64), {"dim": -1, "latent_scale": 0.0}, "latent_scale"),
        (torch.zeros(2, 64), {"dim": -1, "threshold": 1.0}, "threshold"),
        (torch.zeros(2, 64, dtype=torch.bool), {"dim": -1}, "real latents"),
    ],
)
def test_bad_input(z: torch.Tensor, kwargs: dict, message: str) -> None:
    with pytest.raises(M2LError, match=message) as err:
        latent_stats(z, **kwargs)
    assert "\n" not in str(err.value)
