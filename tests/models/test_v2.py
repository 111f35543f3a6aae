"""Music2Latent2: presets, shapes, chunk-causal masking, the trainer interface."""

import dataclasses

import pytest
import torch
from m2l_testing import MICRO2, random_model

from m2l.config import PRESETS, config_from_dict, config_hash, config_to_dict, preset
from m2l.errors import M2LError
from m2l.models.v2 import Music2Latent2, chunk_causal_mask

# Exact parameter counts, reported in BENCHMARKS.md; a change of architecture must update it.
PARAMS = {
    "m2l-v2": 123_011_650,
    "m2l-v2-stereo": 123_015_108,
    "m2l-v2-small": 8_896_770,
    "m2l-v2-small-stereo": 8_897_636,
    "m2l-v2-tiny": 1_502_626,
    "m2l-v2-ordered": 92_425_346,
    "m2l-v2-ordered-tiny": 1_757_090,
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_presets_build_with_reported_parameter_counts(name):
    model = Music2Latent2(preset(name))
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]
    assert config_from_dict(config_to_dict(model.cfg)) == model.cfg


def test_every_v2_preset_is_covered():
    assert {n for n in PRESETS if n.startswith("m2l-v2")} == set(PARAMS)


def test_mask_is_chunk_causal():
    mask = chunk_causal_mask(3, 2)
    expected = torch.tensor(
        [
            [1, 1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [1, 1, 1, 1, 0, 0],
            [0, 0, 1, 1, 1, 1],
            [0, 0, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected)


def _pair(model, seed):
    gen = torch.Generator().manual_seed(seed)
    audio = torch.randn(2, model.audio_channels, 67072, generator=gen) * 0.1
    x0 = model.prepare(audio)
    noise = torch.randn(x0.shape, generator=gen)
    return x0, noise


@torch.no_grad()
def test_future_chunk_never_changes_past_outputs():
    model = random_model("m2l-v2-tiny").double()
    x0, noise = _pair(model, 0)
    x0, noise = x0.double(), noise.double()
    sigma = torch.tensor([[0.4, 80.0], [1.0, 5.0]], dtype=torch.float64)
    cond = model.conditioning(x0)
    out = model.denoise(model.add_noise(x0, noise, sigma), sigma, cond)
    # perturb the right chunk everywhere: its noisy input, its sigma and its decoder features
    x1 = x0.clone()
    x1[:, 1] += 0.5 * torch.randn_like(x1[:, 1])
    sigma1 = sigma.clone()
    sigma1[:, 1] = 0.01
    cond1 = model.conditioning(x1)
    out1 = model.denoise(model.add_noise(x1, noise, sigma1), sigma1, cond1)
    torch.testing.assert_close(out1[:, 0], out[:, 0], rtol=0, atol=1e-12)
    assert (out1[:, 1] - out[:, 1]).abs().max() > 1e-3
    # and the past does reach the future: perturbing the left chunk changes the right output
    x2 = x0.clone()
    x2[:, 0] += 0.5 * torch.randn_like(x2[:, 0])
    out2 = model.denoise(model.add_noise(x2, noise, sigma), sigma, model.conditioning(x2))
    assert (out2[:, 1] - out[:, 1]).abs().max() > 1e-9  # float64 rounding is ~1e-15


@torch.no_grad()
def test_a_chunk_alone_equals_the_left_chunk_of_a_pair():
    """The autoregressive decoder relies on it: refining the left chunk ignores the right one."""
    model = random_model("m2l-v2-tiny").double()
    x0, noise = (t.double() for t in _pair(model, 1))
    sigma = torch.tensor([[0.4, 80.0], [0.4, 80.0]], dtype=torch.float64)
    cond = model.conditioning(x0)
    pair = model.denoise(model.add_noise(x0, noise, sigma), sigma, cond)
    left_cond = [c.unflatten(0, (2, 2))[:, 0] for c in cond]
    alone = model.denoise(model.add_noise(x0[:, :1], noise[:, :1], sigma[:, :1]), sigma[:, :1], left_cond)
    torch.testing.assert_close(alone[:, 0], pair[:, 0], rtol=1e-9, atol=1e-9)


def test_latent_shapes_summary_and_ordered_are_equal():
    spec = torch.randn(3, 2, 1024, 64)
    for name in ("m2l-v2-tiny", "m2l-v2-ordered-tiny"):
        model = Music2Latent2(preset(name))
        z = model.encode(spec)
        assert z.shape == (3, 8, 64) and z.abs().max() < 1
        assert [f.shape[1:] for f in model.decode_features(z)][0] == (8, 1024, 64)
    assert Music2Latent2(preset("m2l-v2-tiny")).encode(spec, features=True).shape == (3, 8 * 64)


def test_stereo_model_takes_four_input_channels():
    cfg = preset("m2l-v2-stereo")
    assert cfg.audio_channels == 2 and config_hash(cfg) != config_hash(preset("m2l-v2"))
    model = random_model(dataclasses.replace(MICRO2, audio_channels=2))
    x0 = model.prepare(torch.randn(2, 2, 67072) * 0.1)
    assert x0.shape == (2, 2, 4, 1024, 64)
    cond = model.conditioning(x0)
    sigma = torch.full((2, 2), 1.0)
    assert model.denoise(x0, sigma, cond).shape == x0.shape


def test_training_crop_must_be_a_pair_of_chunks():
    model = Music2Latent2(MICRO2)
    with pytest.raises(M2LError, match="crop_frames must be 128"):
        model.prepare(torch.randn(1, 1, 34304))


def test_summary_latents_are_a_set_for_the_decoder():
    """The decoder gives no order to the K latents: permuting them changes nothing."""
    model = random_model("m2l-v2-tiny").double()
    z = torch.rand(2, 8, 64, dtype=torch.float64) * 2 - 1
    a = model.decode_features(z)
    b = model.decode_features(z[:, torch.randperm(8)])
    for fa, fb in zip(a, b, strict=True):
        torch.testing.assert_close(fa, fb)
