"""The codec interface `m2l.Codec`, shared by the v1 and v2 siblings `Codec1` and `Codec2`."""

import warnings

import numpy as np
import pytest
import torch
from m2l_testing import MICRO, MICRO2, random_model, record_pass_sizes

import m2l
from m2l.audio.io import checked_stereo_mode, from_mid_side, to_mid_side
from m2l.codec import Codec
from m2l.codec_v1 import Codec1
from m2l.codec_v2 import Codec2
from m2l.errors import M2LError
from m2l.loading import make_codec

CHUNK = 32768


@pytest.fixture(scope="module")
def codecs() -> dict[str, Codec]:
    return {
        "v1": make_codec(random_model(MICRO), model_id="v1@test", device="cpu", window_seconds=1.0),
        "v2": make_codec(random_model(MICRO2), model_id="v2@test", device="cpu"),
    }


def test_make_codec_picks_the_sibling_of_the_config_kind(codecs):
    assert type(codecs["v1"]) is Codec1 and type(codecs["v2"]) is Codec2
    for version, codec in codecs.items():
        assert isinstance(codec, m2l.Codec) and m2l.Codec is Codec
        assert codec.version == version == codec.cfg.kind
    assert codecs["v1"].default_sigma_cond is None and codecs["v2"].default_sigma_cond == 0.4


def test_the_interface_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Codec(random_model(MICRO), model_id="x", device="cpu")  # type: ignore[abstract]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_latent_layout_attributes_describe_encode_output(codecs, version):
    codec = codecs[version]
    n = CHUNK + 4000
    z = codec.encode(torch.randn(2, n) * 0.1)
    assert z.shape[codec.latent_channel_axis] == codec.latent_dim == 64
    assert z.shape[codec.latent_time_axis] == codec.num_units(n)
    assert z.shape[0] == 2  # one row per channel (mono models)
    batched = codec.encode(torch.randn(2, 2, n) * 0.1)
    assert batched.shape == (2, *z.shape)
    assert codec.decode(batched, seed=0, length=n).shape == (2, 2, n)


@pytest.mark.parametrize(("version", "per_unit"), [("v1", 4096), ("v2", CHUNK)])
def test_former_unit_names_still_work_and_warn_with_the_new_name(codecs, version, per_unit):
    """`num_latents` and `hop_length` were the names of `num_units` and `samples_per_unit`."""
    codec = codecs[version]
    assert codec.samples_per_unit == per_unit != codec.cfg.spectral.hop_length
    for samples, left_pad in [(1, None), (CHUNK + 4000, None), (3 * CHUNK, 0)]:
        with pytest.warns(DeprecationWarning, match="use Codec.num_units") as record:
            units = codec.num_latents(samples, left_pad)
        assert units == codec.num_units(samples, left_pad)
        assert record[0].filename == __file__  # the warning points at the caller
    with pytest.warns(DeprecationWarning, match="use Codec.samples_per_unit") as record:
        assert codec.hop_length == codec.samples_per_unit
    assert record[0].filename == __file__
    with pytest.warns(DeprecationWarning, match="use Codec.samples_per_unit"):
        codec.hop_length = per_unit  # setting the former name sets the new one
    assert codec.samples_per_unit == per_unit


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_the_codec_itself_uses_no_former_unit_name(codecs, version):
    codec = codecs[version]
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="Codec\\.", category=DeprecationWarning)
        x = torch.randn(1, CHUNK + 4000) * 0.1
        codec.decode(codec.encode(x), seed=0, length=x.shape[-1])
        codec.seam_positions(3 * CHUNK)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_public_methods_run_without_autograd(codecs, version):
    codec = codecs[version]
    x = torch.randn(1, 20000) * 0.1
    z = codec.encode(x)
    lf = codec.encode_file(x)
    y = codec.decode(z, seed=0)
    assert torch.is_inference(z) and torch.is_inference(lf.latents) and torch.is_inference(y)
    assert not any(p.requires_grad for p in codec.model.parameters())


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_latent_files_carry_the_codec_version_and_round_trip(codecs, version):
    codec = codecs[version]
    x = torch.randn(1, 30000) * 0.1
    lf = codec.encode_file(x)
    assert lf.kind == version and lf.length == 30000 and lf.model_id == f"{version}@test"
    assert torch.equal(lf.latents, codec.encode(x))
    assert torch.equal(codec.decode(lf, seed=3), codec.decode(lf.latents, seed=3, length=30000))
    with pytest.raises(M2LError, match="not a batch"):
        codec.encode_file(torch.zeros(2, 1, 1000))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_latent_file_at_another_rate_than_its_model_is_refused(codecs, version):
    from dataclasses import replace

    codec = codecs[version]
    lf = codec.encode_file(torch.randn(1, 9000) * 0.1)
    with pytest.raises(M2LError, match="latent file says 48000 Hz, but its model .* works at 44100 Hz"):
        codec.decode(replace(lf, sample_rate=48000), seed=0)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_other_weights_are_refused_in_one_wording_for_the_api_and_the_cli(codecs, version):
    codec = codecs[version]
    lf = codec.encode_file(torch.randn(1, 9000) * 0.1)
    other = make_codec(codec.model, model_id=f"{version}@other", device="cpu")
    with pytest.raises(M2LError) as info:
        other.decode(lf, seed=0)
    assert str(info.value) == (
        f"latents were made by {version}@test, not {version}@other; to decode them anyway pass "
        "allow_model_mismatch=True (on the command line: --allow-model-mismatch)"
    )
    with pytest.raises(M2LError) as again:
        other.check_latent_file(lf)
    assert str(again.value) == str(info.value)
    assert other.decode(lf, seed=0, allow_model_mismatch=True).shape == (1, 9000)


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_progress_is_reported_once_per_window_or_chunk_and_silent_by_default(version):
    model = random_model(MICRO if version == "v1" else MICRO2)
    codec = make_codec(model, model_id="p@test", device="cpu", window_seconds=1.0)
    assert codec.progress is None  # the Python API stays silent
    heard: list[tuple[str, int, int]] = []
    codec.progress = lambda task, done, total: heard.append((task, done, total))
    x = torch.randn(1, 3 * CHUNK + 5000 if version == "v2" else 4 * 44100) * 0.1
    units = codec.num_units(x.shape[-1])
    expected = len(codec.windows(units)) if version == "v1" else units  # windows / chunks
    if version == "v2":
        codec.chunk_batch = 1  # one chunk per encoder pass: one report per chunk
    lf = codec.encode_file(x)
    assert heard[0] == ("encoding", 0, expected) and expected >= 3
    assert heard[1:] == [("encoding", k, expected) for k in range(1, expected + 1)]
    heard.clear()
    codec.decode(lf, seed=0)
    assert heard == [("decoding", k, expected) for k in range(expected + 1)]
    if version == "v2":  # several chunks per encoder pass: fewer reports, the same total
        heard.clear()
        codec.chunk_batch = 3
        codec.encode(x)
        assert [done for _, done, _ in heard] == [0, 3, 4]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_a_latent_file_records_the_rate_of_the_audio_it_was_made_from(codecs, version, tmp_path):
    import soundfile as sf

    codec = codecs[version]
    x = (torch.randn(2, 24000) * 0.1).numpy()
    sf.write(tmp_path / "a.wav", x.T, 48000, subtype="FLOAT")
    from_file = codec.encode_file(tmp_path / "a.wav")
    from_array = codec.encode_file(x, 48000)
    assert from_file.source_sample_rate == from_array.source_sample_rate == 48000
    assert torch.allclose(from_file.latents, from_array.latents, atol=1e-4)  # the same audio
    assert from_file.length == round(24000 * 44100 / 48000)
    assert codec.encode_file(x).source_sample_rate == codec.sample_rate  # no rate: the model's


def test_sigma_cond_is_v2_only(codecs):
    v1, v2 = codecs["v1"], codecs["v2"]
    assert v1.check_sigma_cond(None) is None and v2.check_sigma_cond(None) == 0.4
    with pytest.raises(M2LError, match="v2"):
        v1.decode(v1.encode(torch.randn(1, 8000)), sigma_cond=0.4)
    with pytest.raises(M2LError, match="sigma_cond"):
        v2.check_sigma_cond(-1.0)


def test_seams_follow_the_seam_spacing(codecs):
    v1, v2 = codecs["v1"], codecs["v2"]
    n = 5 * CHUNK
    for codec in (v1, v2):
        seams = codec.seam_positions(n)
        assert seams and all(0 < s < n for s in seams)
        assert all(b - a == codec.seam_spacing for a, b in zip(seams, seams[1:], strict=False))
    assert v1.seam_spacing == v1.window * v1.samples_per_unit and v2.seam_spacing == CHUNK
    assert v2.seam_positions(CHUNK - v2.default_left_pad) == []  # one chunk, no seam


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_clip_vectors_of_real_encodings(codecs, version):
    codec = codecs[version]
    x = torch.randn(2, 40000) * 0.1
    lat = codec.clip_vector(codec.encode(x), features=False)
    feat = codec.clip_vector(codec.encode(x, features=True), features=True)
    k = 1 if version == "v1" else codec.cfg.num_latents
    assert lat.shape == (k * 64,) and feat.dim() == 1


def test_window_samples_bound_one_pass():
    v1 = make_codec(random_model(MICRO), model_id="v1", device="cpu")
    v2 = make_codec(random_model(MICRO2), model_id="v2", device="cpu")
    v1.set_window_samples(20 * v1.samples_per_unit)
    assert v1.window == 20
    v1.set_window_samples(1)
    assert v1.window == 2 * v1.context + 1
    v2.set_window_samples(3 * CHUNK + 5)
    assert v2.chunk_batch == 3
    v2.set_window_samples(1)
    assert v2.chunk_batch == 1


def test_stereo_takes_the_memory_of_mono_one_window_of_units_per_pass(monkeypatch):
    v1 = make_codec(random_model(MICRO), model_id="v1", device="cpu", window_seconds=1.0)
    sizes = record_pass_sizes(v1, "encode", monkeypatch)
    long_stereo = torch.randn(2, 5 * v1.seam_spacing) * 0.1  # several full windows
    v1.encode(long_stereo)
    assert sizes and set(sizes) == {1}  # one row (channel) per pass
    sizes.clear()
    v1.encode(torch.randn(4, 2, v1.samples_per_unit * 2) * 0.1)  # a batch of short clips shares a pass
    assert sizes == [4, 4]  # 8 rows, batch_size 4
    decoded = record_pass_sizes(v1, "decode_features", monkeypatch)
    v1.decode(v1.encode(long_stereo), seed=0)
    assert decoded and set(decoded) == {1}
    v2 = make_codec(random_model(MICRO2), model_id="v2", device="cpu")
    v2.chunk_batch = 4
    chunks = record_pass_sizes(v2, "encode", monkeypatch)
    v2.encode(torch.randn(2, 8 * CHUNK) * 0.1)
    assert chunks and max(chunks) <= 4  # rows x chunks of one pass stay within chunk_batch


BAD_DECODE = [
    ({"steps": 1.5}, "steps must be an integer"),
    ({"steps": "2"}, "steps must be an integer"),
    ({"steps": True}, "steps must be an integer"),
    ({"steps": 0}, "steps must be >= 1"),
    ({"seed": "a"}, "seed must be an integer"),
    ({"seed": 1.5}, "seed must be an integer"),
    ({"seed": -1}, "seed must be in"),
    ({"length": 100.5}, "length must be an integer"),
    ({"length": -5}, "outside what"),
    ({"left_pad": -3}, "left_pad must be in"),
]
BAD_ENCODE = [
    ({"left_pad": -3}, "left_pad must be in"),
    ({"left_pad": 1.5}, "left_pad must be an integer"),
    ({"left_pad": 10**9}, "left_pad must be in"),  # would allocate gigabytes of padding
    ({"features": "no"}, "features must be True or False"),
    ({"downmix": "yes"}, "downmix must be True or False"),
]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_bad_arguments_are_one_line_errors_not_type_errors_or_silent_results(codecs, version):
    codec = codecs[version]
    x = torch.randn(1, 20000) * 0.1
    z = codec.encode(x)
    for kwargs, message in BAD_DECODE:
        with pytest.raises(M2LError, match=message):
            codec.decode(z, **kwargs)
    for kwargs, message in BAD_ENCODE:
        with pytest.raises(M2LError, match=message):
            codec.encode(x, **kwargs)
    with pytest.raises(M2LError, match="window samples must be >= 1"):
        codec.set_window_samples(0)
    assert codec.decode(z, seed=np.int64(3), length=np.int32(100)).shape == (1, 100)  # numpy ints are ints


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_finite_latents_never_decode_to_non_finite_audio(codecs, version):
    codec = codecs[version]
    z = codec.encode(torch.randn(1, 20000) * 0.1)
    with pytest.raises(M2LError, match="non-finite audio.*far outside"):
        codec.decode(torch.full_like(z, 1e30), seed=0)
    assert torch.isfinite(codec.decode(z * 10, seed=0)).all()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_decode_stream_pieces_join_to_exactly_decode(codecs, version):
    codec = codecs[version]
    x = torch.randn(2, 3 * codec.seam_spacing + 1234) * 0.1  # several windows / chunks, stereo
    lf = codec.encode_file(x)
    whole = codec.decode(lf, seed=3)
    pieces = list(codec.decode_stream(lf, seed=3))
    assert len(pieces) > 2  # audio arrives while decoding goes on
    assert all(p.shape[:-1] == whole.shape[:-1] and p.shape[-1] > 0 for p in pieces)
    assert torch.equal(torch.cat(pieces, dim=-1), whole)
    with pytest.raises(M2LError, match="steps must be >= 1"):
        next(codec.decode_stream(lf, steps=0))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_bf16_autocast_runs_the_encoder_in_bf16_and_returns_float32_latents(codecs, version, monkeypatch):
    codec = codecs[version]
    wave = torch.randn(1, 50000) * 0.1
    ref = codec.encode(wave)
    monkeypatch.setattr(codec, "precision", torch.bfloat16)
    z = codec.encode(wave)
    assert z.dtype == torch.float32 and z.shape == ref.shape
    assert not torch.equal(z, ref)  # bf16 arithmetic really ran
    assert (z - ref).norm() / ref.norm() < 0.05


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_bf16_autocast_decodes_close_to_fp32(codecs, version, monkeypatch):
    codec = codecs[version]
    z = codec.encode(torch.randn(1, 50000) * 0.1)
    ref = codec.decode(z, seed=3)
    monkeypatch.setattr(codec, "precision", torch.bfloat16)
    out = codec.decode(z, seed=3)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert not torch.equal(out, ref)  # bf16 arithmetic really ran
    assert (out - ref).norm() / ref.norm() < 0.05


# ----------------------------------------------------------------------------- stereo coding
def test_mid_side_is_exactly_invertible_and_puts_what_the_channels_share_in_mid():
    wave = torch.randn(3, 2, 1000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(from_mid_side(to_mid_side(wave)), wave)
    dual_mono = wave[:, :1].expand(3, 2, 1000)
    ms = to_mid_side(dual_mono)
    torch.testing.assert_close(ms[:, 0], wave[:, 0])
    assert ms[:, 1].abs().max() == 0  # no side at all


def test_a_mode_must_be_one_of_the_named_ones():
    assert checked_stereo_mode("ms") == "ms" and checked_stereo_mode("lr") == "lr"
    with pytest.raises(M2LError, match=r"^stereo must be one of ms, lr, got 'xy'$"):
        checked_stereo_mode("xy")


@pytest.fixture(scope="module")
def pair() -> torch.Tensor:
    return 0.1 * torch.randn(2, CHUNK + 3000, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_per_channel_codecs_code_a_stereo_pair_as_mid_side_by_default(codecs, version, pair):
    codec = codecs[version]
    lr = make_codec(codec.model, model_id=codec.model_id, device="cpu", stereo="lr")
    assert codec.stereo == "ms" and lr.stereo == "lr"
    z = codec.encode(pair)
    torch.testing.assert_close(z, lr.encode(to_mid_side(pair)))  # the latents of mid and side
    y = codec.decode(z, seed=3, length=pair.shape[-1])
    torch.testing.assert_close(y, from_mid_side(lr.decode(z, seed=3, length=pair.shape[-1])))
    mono = pair[:1]  # one channel: nothing to recode
    torch.testing.assert_close(codec.encode(mono), lr.encode(mono))
    features = codec.encode(pair, features=True)  # MIR features stay per input channel
    torch.testing.assert_close(features, lr.encode(pair, features=True))


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_latent_files_record_the_stereo_coding_and_older_files_decode_as_left_right(codecs, version, pair):
    import dataclasses

    codec = codecs[version]
    lf = codec.encode_file(pair)
    assert lf.extra["stereo"] == "ms"
    assert "stereo" not in codec.encode_file(pair[:1]).extra  # mono audio
    lr = make_codec(codec.model, model_id=codec.model_id, device="cpu", stereo="lr")
    assert lr.encode_file(pair).extra["stereo"] == "lr"
    older = dataclasses.replace(lf, extra={k: v for k, v in lf.extra.items() if k != "stereo"})
    n = pair.shape[-1]
    torch.testing.assert_close(codec.decode(older, seed=1), lr.decode(lf.latents, seed=1, length=n))
    torch.testing.assert_close(lr.decode(lf, seed=1), codec.decode(lf.latents, seed=1, length=n))  # file wins
    bad = dataclasses.replace(lf, extra={**lf.extra, "stereo": "xy"})
    with pytest.raises(M2LError, match="latent file: stereo must be one of ms, lr, got 'xy'"):
        codec.decode(bad)


def test_a_joint_stereo_model_codes_left_right_itself():
    import dataclasses

    model = random_model(dataclasses.replace(MICRO2, name="m2l-v2-micro-stereo", audio_channels=2))
    codec = make_codec(model, model_id="s@test", device="cpu")
    assert codec.stereo == "lr"
    assert "stereo" not in codec.encode_file(torch.zeros(2, CHUNK)).extra  # one joint row
    with pytest.raises(M2LError, match="a joint-stereo model codes left/right itself"):
        make_codec(model, model_id="s@test", device="cpu", stereo="ms")
