"""`m2l.models.layers`: the building blocks, each checked against a hand computation or its
documented promise (shapes, zero initialisation, in-place inference that never touches inputs)."""

import math

import pytest
import torch
import torch.nn.functional as F
from m2l_testing import randomize
from torch import nn

from m2l.models.layers import (
    Downsample,
    FreqAttention,
    ResBlock,
    Upsample,
    add,
    frame_attention,
    group_norm,
    inference_inplace,
    mlp,
    mul,
    silu,
    zero_,
)


def _naive_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v, written out."""
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    weights = scores.exp() / scores.exp().sum(dim=-1, keepdim=True)
    return weights @ v


def _qkv(seed: int, shape=(3, 2, 5, 8), dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen).to(dtype) for _ in range(3)]


def test_frame_attention_is_softmax_of_scaled_dot_products():
    q, k, v = _qkv(0)
    torch.testing.assert_close(frame_attention(q, k, v), _naive_attention(q, k, v))


def test_frame_attention_in_reduced_precision_attends_in_float32_and_keeps_the_dtype():
    q, k, v = _qkv(1, dtype=torch.bfloat16)
    out = frame_attention(q, k, v)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, _naive_attention(q.float(), k.float(), v.float()).bfloat16())
    q32, k32, v32 = _qkv(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = frame_attention(q32, k32, v32)
    assert out.dtype == torch.float32  # autocast did not cast it down
    torch.testing.assert_close(out, _naive_attention(q32, k32, v32))


def test_group_norm_uses_a_quarter_of_the_channels_as_groups_within_1_to_32():
    assert [group_norm(c).num_groups for c in (2, 4, 8, 64, 128, 256, 512)] == [1, 1, 2, 16, 32, 32, 32]
    assert group_norm(12).num_channels == 12


def test_zero_zeroes_every_parameter_and_returns_the_module():
    layer = nn.Conv2d(3, 4, 3)
    assert layer.weight.abs().sum() > 0
    assert zero_(layer) is layer
    assert all(not p.any() for p in layer.parameters())


def test_the_in_place_helpers_write_into_their_first_operand_only_when_autograd_is_off():
    a, b = torch.randn(4, 5), torch.randn(5)
    for helper, expected in ((add, a + b), (mul, a * b), (lambda x, _: silu(x), F.silu(a))):
        fresh = a.clone()
        out = helper(fresh, b)
        assert torch.equal(out, expected) and torch.equal(fresh, a)  # training: fresh untouched
        with torch.no_grad():
            out = helper(fresh, b)
        assert torch.equal(out, expected) and out.data_ptr() == fresh.data_ptr()  # written into it
        assert torch.equal(fresh, expected)


def test_inference_inplace_follows_autograd():
    assert torch.is_grad_enabled() and not inference_inplace()
    with torch.no_grad():
        assert inference_inplace()
    with torch.inference_mode():
        assert inference_inplace()


def _freq_attention_by_hand(att: FreqAttention, x: torch.Tensor) -> torch.Tensor:
    """Per batch item, time frame and head: attention between the frequency rows."""
    b, c, f, t = x.shape
    d = c // att.heads
    h = att.norm(x)
    out = torch.empty_like(x)
    for i in range(b):
        for j in range(t):
            tokens = h[i, :, :, j].T  # [F, C]
            q, k, v = att.qkv(tokens).split(c, dim=-1)
            heads = [
                _naive_attention(*parts)
                for parts in zip(q.split(d, -1), k.split(d, -1), v.split(d, -1), strict=True)
            ]
            out[i, :, :, j] = att.proj(torch.cat(heads, dim=-1)).T
    return out + x


def test_freq_attention_is_the_identity_at_init_then_attends_over_frequency_per_frame():
    x = torch.randn(2, 8, 6, 3)
    att = FreqAttention(8, heads=2)
    assert torch.equal(att(x), x)  # zero-initialised output projection
    randomize(att, seed=1)
    with torch.no_grad():
        expected = _freq_attention_by_hand(att, x)
        got = att(x)
        channels_last = att(x.contiguous(memory_format=torch.channels_last))
    assert got.shape == x.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(channels_last, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("in_ch,out_ch", [(8, 8), (8, 16)])
def test_res_block_is_its_shortcut_at_init(in_ch, out_ch):
    x = torch.randn(2, in_ch, 4, 5)
    block = ResBlock(in_ch, out_ch, emb_ch=6, attention=True, heads=2)
    shortcut = x if block.res_conv is None else block.res_conv(x)
    assert (block.res_conv is None) == (in_ch == out_ch)
    torch.testing.assert_close(block(x, torch.randn(2, 6)), shortcut)


@pytest.mark.parametrize("dims,shape", [(2, (2, 8, 4, 5)), (1, (2, 8, 5))])
def test_res_block_shapes_and_noise_embedding(dims, shape):
    block = randomize(ResBlock(8, 12, dims=dims, emb_ch=6), seed=2)
    x, emb = torch.randn(shape), torch.randn(2, 6)
    out = block(x, emb)
    assert out.shape == (2, 12, *shape[2:])
    assert not torch.allclose(block(x, emb + 1.0), out)  # the embedding is added
    plain = randomize(ResBlock(8, 12, dims=dims), seed=2)
    assert plain.proj_emb is None and plain(x).shape == out.shape


def test_inference_in_place_gives_the_same_numbers_and_never_overwrites_inputs():
    block = randomize(ResBlock(8, 8, emb_ch=6, attention=True, heads=2), seed=3)
    x, emb = torch.randn(2, 8, 4, 5), torch.randn(2, 6)
    x_before, emb_before = x.clone(), emb.clone()
    with_grad = block(x, emb)
    with torch.no_grad():
        in_place = block(x, emb)
    assert torch.equal(x, x_before) and torch.equal(emb, emb_before)
    torch.testing.assert_close(in_place, with_grad.detach())


@pytest.mark.parametrize("freq_only,factor", [(True, (4, 1)), (False, (2, 2))])
def test_downsample_and_upsample_scale_the_documented_axes(freq_only, factor):
    x = torch.randn(2, 4, 16, 6)
    down = Downsample(4, 8, freq_only=freq_only, norm=True)
    assert isinstance(down.norm, nn.GroupNorm)
    assert down(x).shape == (2, 8, 16 // factor[0], 6 // factor[1])
    up = Upsample(4, 3, freq_only=freq_only)
    assert up(x).shape == (2, 3, 16 * factor[0], 6 * factor[1])
    assert Downsample(4, 8, freq_only=freq_only).norm is None


@pytest.mark.parametrize("layer", [Downsample(4, 4, freq_only=True), Upsample(4, 4, freq_only=True)])
def test_frequency_only_resampling_keeps_time_frames_apart(layer):
    x = torch.randn(1, 4, 16, 5)
    y = x.clone()
    y[..., 2] += 1.0  # change one time frame
    with torch.no_grad():
        diff = (layer(y) - layer(x)).abs().amax(dim=(0, 1, 2))
    assert diff[2] > 0 and torch.all(diff[[0, 1, 3, 4]] == 0)


@pytest.mark.parametrize("final_act", [False, True])
def test_mlp_layers_and_zero_last(final_act):
    net = mlp([4, 8, 3], final_act=final_act)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.SiLU, nn.Linear] + ([nn.SiLU] if final_act else [])
    x = torch.randn(5, 4)
    assert net(x).shape == (5, 3) and net(x).abs().sum() > 0
    zeroed = mlp([4, 8, 3], zero_last=True, final_act=final_act)
    assert torch.equal(zeroed(x), torch.zeros(5, 3))
    assert zeroed[0].weight.abs().sum() > 0  # only the last linear layer is zeroed
