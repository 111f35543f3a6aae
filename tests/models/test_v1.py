from pathlib import Path

import pytest
import torch
from m2l_testing import MICRO, random_model

from m2l.config import config_from_dict, config_hash, config_to_dict, preset
from m2l.errors import M2LError
from m2l.models.v1 import Music2Latent
from m2l.models.v1_authors import authors_key_map, convert_authors_state_dict

AUTHORS_STATE = Path(__file__).parents[1] / "data" / "authors-music2latent-state-dict.txt"


def _authors_shapes() -> dict[str, tuple[int, ...]]:
    out = {}
    for line in AUTHORS_STATE.read_text().splitlines():
        name, shape = line.split(" ", 1)
        out[name] = tuple(int(v) for v in shape.strip("()").split(",") if v.strip())
    return out


def test_released_size_parameter_count():
    model = Music2Latent(preset("m2l-v1"))
    count = sum(p.numel() for p in model.parameters())
    # 58,185,026 in the release, of which 4 x (512 x 256 + 512) decoder proj_emb are never used
    assert count == 58_185_026 - 4 * (512 * 256 + 512)


def test_authors_key_map_covers_the_release_exactly():
    model = Music2Latent(preset("m2l-v1"))
    ours = model.state_dict()
    shapes = _authors_shapes()
    assert len(shapes) == 583
    key_map = authors_key_map(model.cfg, set(ours))
    assert set(key_map.values()) == set(ours)
    unused = {k for k in shapes if k.startswith("decoder.") and ".proj_emb." in k}
    assert set(key_map) == set(shapes) - unused
    for theirs, mine in key_map.items():
        assert shapes[theirs] == tuple(ours[mine].shape), theirs


def _authors_state(model: Music2Latent) -> dict[str, torch.Tensor]:
    ours = model.state_dict()
    state = {theirs: ours[mine] for theirs, mine in authors_key_map(model.cfg, set(ours)).items()}
    for j in range(model.cfg.bottleneck_blocks):
        state[f"decoder.bottleneck_layers.{j}.proj_emb.weight"] = torch.zeros(1)
    return state


def test_conversion_round_trip_and_strictness():
    model = random_model("m2l-v1-tiny")
    state = _authors_state(model)
    fresh = Music2Latent(model.cfg)
    converted = convert_authors_state_dict(state, model.cfg, fresh.state_dict(), "x.pt")
    fresh.load_state_dict(converted)
    for k, v in model.state_dict().items():
        assert torch.equal(v, fresh.state_dict()[k])
    missing = dict(state)
    missing.pop("conv_out.weight")
    with pytest.raises(M2LError, match="missing"):
        convert_authors_state_dict(missing, model.cfg, fresh.state_dict(), "x.pt")
    extra = dict(state, **{"foo.weight": torch.zeros(1)})
    with pytest.raises(M2LError, match="unexpected"):
        convert_authors_state_dict(extra, model.cfg, fresh.state_dict(), "x.pt")
    wrong = dict(state, **{"conv_out.weight": torch.zeros(3)})
    with pytest.raises(M2LError, match="shape"):
        convert_authors_state_dict(wrong, model.cfg, fresh.state_dict(), "x.pt")


@pytest.mark.parametrize("name", ["m2l-v1-tiny", "m2l-v1-small", MICRO])
@pytest.mark.parametrize("frames", [8, 64])
def test_shapes(name, frames):
    model = random_model(name)
    cfg = model.cfg
    spec = torch.randn(2, 2, cfg.spectral.freq_bins, frames)
    with torch.no_grad():
        z = model.encode(spec)
        assert z.shape == (2, cfg.latent_dim, frames // cfg.frames_per_latent)
        assert z.abs().max() < 1
        feats = model.encode(spec, features=True)
        assert feats.shape == (2, cfg.channels[-1] * cfg.bottom_freq, frames // 8)
        pyramid = model.decode_features(z)
        assert [p.shape[1] for p in pyramid] == list(cfg.channels)
        assert pyramid[0].shape[-2:] == (cfg.spectral.freq_bins, frames)
        out = model.denoise(spec, torch.tensor([80.0, 0.5]), pyramid)
    assert out.shape == spec.shape and torch.isfinite(out).all()


def test_batch_items_are_independent():
    model = random_model("m2l-v1-tiny")
    spec = torch.randn(3, 2, 1024, 16)
    with torch.no_grad():
        z = model.encode(spec)
        z1 = model.encode(spec[1:2])
    assert torch.allclose(z[1:2], z1, atol=1e-5)


def test_config_round_trip_and_hash():
    cfg = preset("m2l-v1-small")
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert config_hash(cfg) != config_hash(preset("m2l-v1"))
    with pytest.raises(M2LError):
        config_from_dict({"kind": "v9"})


def test_fast_inference_path_matches_autograd_path_and_keeps_inputs():
    """No-grad passes reuse buffers in place and run channels_last; the result must equal the
    plain training-mode computation, and the caller's tensors must be left untouched."""
    model = random_model(MICRO)
    spec = torch.randn(2, 2, MICRO.spectral.freq_bins, 16)
    x = torch.randn_like(spec)
    sigma = torch.tensor([0.5, 3.0])
    reference = model.denoise(x, sigma, model.decode_features(model.encode(spec)))
    fast = random_model(MICRO).to(memory_format=torch.channels_last)
    fast.load_state_dict(model.state_dict())
    spec_copy, x_copy = spec.clone(), x.clone()
    with torch.no_grad():
        latents = fast.encode(spec)
        pyramid = fast.decode_features(latents)
        kept = [p.clone() for p in pyramid]
        out = fast.denoise(x, sigma, pyramid)
    torch.testing.assert_close(out, reference.detach(), rtol=1e-4, atol=1e-5)
    assert torch.equal(spec, spec_copy) and torch.equal(x, x_copy)
    assert all(torch.equal(a, b) for a, b in zip(pyramid, kept, strict=True))
