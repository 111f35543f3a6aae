"""The v2 codec: chunked encoding, autoregressive decoding, stereo, sigma_cond, latent files."""

import dataclasses
import warnings

import pytest
import torch
from m2l_testing import MICRO2, random_model, record_pass_sizes

from m2l.codec_v1 import Codec1
from m2l.codec_v2 import Codec2
from m2l.errors import M2LError
from m2l.formats import load_latents, save_latents
from m2l.loading import make_codec

CHUNK = 32768


@pytest.fixture(scope="module")
def codec():
    return Codec2(random_model("m2l-v2-tiny"), model_id="m2l-v2-tiny@test", device="cpu")


@pytest.fixture(scope="module")
def micro():
    return Codec2(random_model(MICRO2), model_id="m2l-v2-micro@test", device="cpu")


def test_attributes_and_latent_layout(codec):
    assert codec.samples_per_unit == CHUNK and abs(codec.latent_rate - 8 * 44100 / CHUNK) < 1e-9
    x = torch.randn(2, 3 * CHUNK) * 0.1
    z = codec.encode(x)
    assert z.shape == (2, codec.num_units(x.shape[-1]), 8, 64)
    assert codec.num_units(x.shape[-1]) == 3  # left pad 1536 + frame tail 1536 cancel


@pytest.mark.parametrize("length", [1, 100, 2047, CHUNK - 1536, CHUNK - 1535, 2 * CHUNK + 7])
def test_any_length_decodes_to_exact_length(micro, length):
    x = torch.randn(1, length) * 0.1
    z = micro.encode(x)
    assert z.shape == (1, micro.num_units(length), 8, 64)
    y = micro.decode(z, seed=0, length=length)
    assert y.shape == (1, length) and torch.isfinite(y).all()


def test_several_minutes_decode(micro):
    n = 44100 * 150
    x = torch.zeros(1, n)
    x[:, ::101] = 0.5
    z = micro.encode(x)
    assert z.shape[1] == -(-n // CHUNK)
    y = micro.decode(z, seed=0, length=n)
    assert y.shape == (1, n) and torch.isfinite(y).all() and y.abs().sum() > 0


def test_encoding_is_chunk_independent_and_batch_invariant(codec):
    x = torch.randn(1, 4 * CHUNK) * 0.1
    z = codec.encode(x)
    y = x.clone()
    y[:, 2 * CHUNK :] = torch.randn(1, 2 * CHUNK) * 0.1  # chunk 1 ends at 2 * CHUNK - 1536 + 2048
    z2 = codec.encode(y)
    torch.testing.assert_close(z2[:, :1], z[:, :1], rtol=0, atol=1e-6)
    assert (z2[:, 2:] - z[:, 2:]).abs().max() > 1e-3
    one_at_a_time = Codec2(codec.model, model_id="x", device="cpu", chunk_batch=1)
    torch.testing.assert_close(one_at_a_time.encode(x), z, rtol=1e-5, atol=1e-5)


def test_decoding_is_deterministic_with_a_seed(codec):
    z = codec.encode(torch.randn(1, 2 * CHUNK) * 0.1)
    a, b = codec.decode(z, seed=5), codec.decode(z, seed=5)
    assert torch.equal(a, b)
    assert not torch.equal(a, codec.decode(z, seed=6))


def test_sigma_cond_is_used_and_checked(codec):
    z = codec.encode(torch.randn(1, 3 * CHUNK) * 0.1)
    outs = [codec.decode(z, seed=0, sigma_cond=s) for s in (0.0, 0.4, 1.0)]
    assert not torch.equal(outs[0], outs[1]) and not torch.equal(outs[1], outs[2])
    assert torch.equal(outs[1], codec.decode(z, seed=0))  # default 0.4
    for bad in (-0.1, 1000.0):
        with pytest.raises(M2LError, match="sigma_cond"):
            codec.decode(z, seed=0, sigma_cond=bad)
    v1 = Codec1(random_model("m2l-v1-tiny"), model_id="v1", device="cpu")
    with pytest.raises(M2LError, match="v2"):
        v1.decode(v1.encode(torch.randn(1, 8000)), sigma_cond=0.4)


def test_decoding_is_autoregressive_with_one_evaluation_per_chunk(micro):
    """Cost is linear: chunks + 1 consistency evaluations for `steps=1`; pairs after the first."""
    calls = []
    net = micro.model.denoiser.net
    handle = net.register_forward_hook(lambda m, args, out: calls.append(args[2].chunks))
    try:
        for chunks in (1, 3, 6):
            calls.clear()
            micro.decode(torch.rand(1, chunks, 8, 64) * 2 - 1, seed=0)
            assert calls == [1] + [2] * (chunks - 1) + [1]
    finally:
        handle.remove()


def test_steps_add_evaluations_per_chunk(micro):
    z = torch.rand(1, 2, 8, 64) * 2 - 1
    assert micro.decode(z, seed=0, steps=3).shape == micro.decode(z, seed=0).shape
    with pytest.raises(M2LError, match="steps"):
        micro.decode(z, steps=0)


def test_stereo_model_encodes_jointly_and_handles_mono():
    stereo = Codec2(random_model(dataclasses.replace(MICRO2, audio_channels=2)), model_id="s@t", device="cpu")
    x = torch.randn(2, CHUNK) * 0.1
    z = stereo.encode(x)
    assert z.shape == (1, stereo.num_units(CHUNK), 8, 64)
    assert stereo.decode(z, seed=0, length=CHUNK).shape == (2, CHUNK)
    assert stereo.encode(torch.randn(3, 2, 5000)).shape[:2] == (3, 1)  # batched
    lf = stereo.encode_file(x[:1])  # mono in: duplicated, and mono out again
    assert lf.latents.shape[0] == 1 and lf.extra["audio_channels"] == 1
    assert stereo.decode(lf, seed=0).shape == (1, CHUNK)
    with pytest.raises(M2LError, match="channels"):
        stereo.encode(torch.randn(3, 1000))


def test_mono_model_encodes_stereo_as_two_rows(micro):
    z = micro.encode(torch.randn(2, 5000) * 0.1)
    assert z.shape[0] == 2 and micro.decode(z, seed=0, length=5000).shape == (2, 5000)


def test_features_are_averaged_summary_embeddings(codec):
    x = torch.randn(2, 2 * CHUNK) * 0.1
    f = codec.encode(x, features=True)
    assert f.shape == (2, 8 * codec.cfg.dim)
    spec = codec.model.spectrogram(torch.nn.functional.pad(x[:1], (1536, 0))[:, None])
    chunks = spec.unflatten(-1, (2, 64)).permute(0, 3, 1, 2, 4).flatten(0, 1)
    torch.testing.assert_close(f[0], codec.model.encode(chunks, features=True).mean(0), rtol=1e-4, atol=1e-5)


def test_latent_file_round_trip_and_shape_checks(codec, tmp_path):
    x = torch.randn(1, 40000) * 0.1
    lf = codec.encode_file(x)
    save_latents(tmp_path / "a.m2l", lf)
    back = load_latents(tmp_path / "a.m2l")
    assert back.kind == "v2" and torch.equal(back.latents, lf.latents)
    assert torch.equal(codec.decode(back, seed=1), codec.decode(lf, seed=1))
    assert codec.decode(back, seed=1).shape == (1, 40000)
    for bad in (torch.zeros(1, 64, 10), torch.zeros(1, 2, 7, 64), torch.full((1, 2, 8, 64), float("nan"))):
        with pytest.raises(M2LError, match="latents"):
            codec.decode(bad)
    v1 = make_codec(random_model("m2l-v1-tiny"), model_id="v1", device="cpu")
    with pytest.raises(M2LError, match="incompatible"):
        v1.decode(back)


@pytest.mark.parametrize("streamed", [True, False])
def test_out_of_memory_decodes_rows_in_halves(streamed, monkeypatch):
    """Rows whose decoder steps do not fit run in halves (the same audio: noise is keyed by row),
    batch_size lowered with a warning, and the rows after them follow it (no size fails twice);
    progress ends at its total; one row that does not fit is a one-line M2LError."""
    codec = Codec2(random_model(MICRO2), model_id="m2l-v2-micro@test", device="cpu")
    z = codec.encode(torch.randn(2, 2, 3 * CHUNK, generator=torch.Generator().manual_seed(5)) * 0.1)  # 4 rows
    expected = codec.decode(z, seed=2)
    codec.batch_size = 4 if streamed else 2  # one slice of 4 rows streams; slices of 2 do not
    seen = record_pass_sizes(codec, "denoise", monkeypatch, fail_above=1)
    heard: list[tuple[int, int]] = []
    codec.progress = lambda task, done, total: heard.append((done, total))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = codec.decode(z, seed=2)
    codec.progress = None
    assert heard[-1] == (4 * 3, 4 * 3) and all(d <= t for d, t in heard)  # rows x chunks, no overshoot
    lowered = [str(w.message).split(": ")[1] for w in caught]
    first = ["batch_size lowered from 4 to 2 (--batch-size sets it)"] if streamed else []
    assert lowered == [*first, "batch_size lowered from 2 to 1 (--batch-size sets it)"]
    assert codec.batch_size == 1 and [n for n in seen if n > 1] == ([4, 2] if streamed else [2]), seen
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    record_pass_sizes(codec, "denoise", monkeypatch, fail_above=0)
    with pytest.raises(
        M2LError, match=r"^out of cpu memory for one row of decoding \(two chunks per step\); "
    ):
        codec.decode(z, seed=2)
