"""`m2l.config`: presets, JSON round trips, and the field checks that bound untrusted configs."""

from __future__ import annotations

import json
import math

import pytest

from m2l.config import PRESETS, config_from_dict, config_hash, config_to_dict, preset
from m2l.errors import M2LError


def _as_json(name: str) -> dict:
    return json.loads(json.dumps(config_to_dict(preset(name))))


def test_every_preset_round_trips_through_json():
    for name in PRESETS:
        back = config_from_dict(_as_json(name))
        assert back == preset(name) and config_hash(back) == config_hash(preset(name))


def test_a_whole_number_for_a_float_field_is_the_same_config():
    data = _as_json("m2l-v2-tiny")
    data["latent_scale"], data["spectral"]["alpha"] = 1, data["spectral"]["alpha"]
    data["consistency"]["rho"] = 7
    back = config_from_dict(data)
    assert back == preset("m2l-v2-tiny") and config_hash(back) == config_hash(preset("m2l-v2-tiny"))
    assert isinstance(back.latent_scale, float) and isinstance(back.consistency.rho, float)


V1_BAD = [
    ("heads", 0),
    ("heads", 3),  # does not divide the channels of the attention levels
    ("base_channels", 10**9),
    ("base_channels", -8),
    ("base_channels", 8.0),
    ("base_channels", "8"),
    ("base_channels", True),
    ("base_channels", None),
    ("unet_blocks", 0),
    ("cond_channels", 63),
    ("bottleneck_channels", 10**12),
    ("latent_dim", 0),
    ("latent_scale", 0),
    ("latent_scale", -0.06),
    ("latent_scale", math.nan),
    ("latent_scale", math.inf),
    ("latent_scale", "0.06"),
    ("multipliers", [1, 2, 2, 2, 10**6]),
    ("multipliers", [1] * 10_000),
    ("multipliers", [1, 2, 2, 2, True]),
    ("attention", [0, 0, 1, 1, 1]),
    ("freq_only_down", [True]),
    ("name", "two\nlines"),
    ("name", ""),
    ("name", 7),
]


V2_BAD = [
    ("heads", 0),
    ("dim", 10**9),
    ("depth", 10**6),
    ("mlp_ratio", 0),
    ("audio_channels", 3),
    ("chunk_frames", 0),
    ("num_latents", -1),
    ("summary", 1),
    ("channels", [8, 16, 32, 32, 64, 0]),
    ("layers", [1, 1, 1, 1, 1, 10**9]),
    ("latent_scale", math.nan),
]


@pytest.mark.parametrize(
    ("preset_name", "key", "value"),
    [("m2l-v1-tiny", *bad) for bad in V1_BAD] + [("m2l-v2-tiny", *bad) for bad in V2_BAD],
)
def test_model_config_fields_are_checked_in_one_line(preset_name, key, value):
    data = _as_json(preset_name)
    data[key] = value
    with pytest.raises(M2LError) as exc:
        config_from_dict(data)
    message = str(exc.value)
    assert key in message and "\n" not in message and len(message) < 300, message


@pytest.mark.parametrize(
    ("part", "key", "value"),
    [
        ("spectral", "hop_length", 0),
        ("spectral", "n_fft", 2000),  # not a multiple of the hop
        ("spectral", "n_fft", 1 << 30),
        ("spectral", "freq_bins", 5000),  # more than an n_fft of 2048 has
        ("spectral", "sample_rate", 1),
        ("spectral", "alpha", 0),
        ("consistency", "sigma_min", -1.0),
        ("consistency", "sigma_max", 0.001),  # below sigma_min
        ("consistency", "rho", math.nan),
    ],
)
def test_nested_fields_are_checked_in_one_line(part, key, value):
    data = _as_json("m2l-v1-tiny")
    data[part][key] = value
    with pytest.raises(M2LError) as exc:
        config_from_dict(data)
    assert key in str(exc.value) and part in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("data", [[1, 2], None, "m2l-v1", {"kind": "v3"}, {"kind": "v1"}])
def test_what_is_not_a_config_object_is_one_line(data):
    with pytest.raises(M2LError, match="model config|model kind"):
        config_from_dict(data)
