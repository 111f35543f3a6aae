"""The v1 codec: framing, windows, noise tiles, checks, latent files."""

import numpy as np
import pytest
import torch
from m2l_testing import MICRO, assert_one_line_error, random_model, record_pass_sizes, tone_and_noise

from m2l.codec_v1 import Codec1, plan_windows, tile_noise
from m2l.errors import M2LError


@pytest.fixture(scope="module")
def codec():
    return Codec1(random_model("m2l-v1-tiny"), model_id="tiny@test", device="cpu")


@pytest.mark.parametrize("length", [1, 100, 4095, 4096, 4097, 5632, 44100 * 2 + 7])
def test_any_length_round_trips_to_exact_length(codec, length):
    x = torch.randn(2, length) * 0.1
    z = codec.encode(x)
    assert z.shape == (2, 64, codec.num_units(length))
    y = codec.decode(z, seed=0, length=length)
    assert y.shape == (2, length) and torch.isfinite(y).all()
    full = codec.decode(z, seed=0)
    assert full.shape[-1] == z.shape[-1] * codec.samples_per_unit  # default left pad: whole frames
    assert torch.equal(full[:, :length], y)


def test_latent_rate_and_attributes(codec):
    assert codec.sample_rate == 44100 and codec.samples_per_unit == 4096 and codec.latent_dim == 64
    assert abs(codec.latent_rate - 10.7666) < 1e-3
    assert codec.num_units(44100 * 10) == 108


@pytest.mark.slow
def test_ten_minutes_mono_and_stereo_shapes():
    codec = Codec1(random_model(MICRO), model_id="micro@test", device="cpu", window_seconds=60)
    n = 44100 * 600
    x = np.zeros((2, n), dtype=np.float32)
    x[:, ::97] = 0.5
    z = codec.encode(x)
    assert z.shape == (2, 64, -(-n // 4096))
    y = codec.decode(z[:1], seed=0, length=n)
    assert y.shape == (1, n) and torch.isfinite(y).all()


def test_batch_matches_items_and_stereo_is_two_mono_rows(codec):
    x = torch.randn(3, 2, 20000) * 0.1
    z = codec.encode(x)
    assert z.shape == (3, 2, 64, codec.num_units(20000))
    mid, side = (x[1, 0] + x[1, 1]) / 2, (x[1, 0] - x[1, 1]) / 2  # a pair is coded as mid/side
    torch.testing.assert_close(z[1, 0], codec.encode(mid)[0], rtol=1e-5, atol=1e-4)  # scale 1/0.06
    torch.testing.assert_close(z[1, 1], codec.encode(side)[0], rtol=1e-5, atol=1e-4)
    y = codec.decode(z, seed=3, length=20000)
    assert y.shape == (3, 2, 20000)


def test_resampling_input(codec):
    x = torch.randn(1, 48000) * 0.1
    z = codec.encode(x, sample_rate=48000)
    assert z.shape[-1] == codec.num_units(44100)


def test_features(codec):
    f = codec.encode(torch.randn(1, 30000) * 0.1, features=True)
    cfg = codec.cfg
    assert f.shape == (1, cfg.channels[-1] * cfg.bottom_freq, codec.num_units(30000))


def test_seed_reproducible_and_window_independent_noise(codec):
    z = codec.encode(torch.randn(1, 44100) * 0.1)
    a, b = codec.decode(z, seed=7), codec.decode(z, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, codec.decode(z, seed=8))
    whole = tile_noise(5, 0, 0, 200, 0, (2, 3))
    assert torch.equal(
        torch.cat([tile_noise(5, 0, 0, 70, 0, (2, 3)), tile_noise(5, 0, 70, 200, 0, (2, 3))], -1), whole
    )
    assert not torch.equal(tile_noise(5, 1, 0, 200, 0, (2, 3)), whole)


def test_multistep_decoding(codec):
    z = codec.encode(torch.randn(1, 20000) * 0.1)
    y1, y2 = codec.decode(z, steps=1, seed=0), codec.decode(z, steps=2, seed=0)
    assert y1.shape == y2.shape and not torch.equal(y1, y2)


def test_window_plan_covers_everything():
    for total in (1, 5, 50, 333):
        wins = plan_windows(total, 20, 4)
        assert wins[0].start == 0 and wins[-1].stop == total
        assert all(a.stop == b.start for a, b in zip(wins, wins[1:], strict=False))
        assert all(w.lo == max(w.start - 4, 0) and w.hi == min(w.stop + 4, total) for w in wins)


def _boundary_mask(codec, wins, n, scale, radius):
    mask = torch.zeros(n, dtype=torch.bool)
    for w in wins[1:]:
        c = w.start * scale
        mask[max(c - radius, 0) : c + radius] = True
    return mask


def test_windowed_matches_one_shot_without_seams():
    """Windows change GroupNorm statistics slightly everywhere (a property of the architecture);
    the seams themselves must add nothing: error near window boundaries is no larger than in the
    interiors, and the waveform has no click there."""
    model = random_model("m2l-v1-tiny")
    one = Codec1(model, model_id="t", device="cpu", window_seconds=1000)
    win = Codec1(model, model_id="t", device="cpu", window_seconds=3, context=8)
    x = tone_and_noise(14.0)
    z1, z2 = one.encode(x), win.encode(x)
    wins = win.windows(z1.shape[-1])
    assert len(wins) >= 4
    err = ((z1 - z2).norm(dim=1) / z1.norm(dim=1))[0]
    assert err.mean() < 0.15
    near = _boundary_mask(win, wins, err.shape[0], 1, 2)
    assert err[near].mean() < 1.5 * err[~near].mean()

    y1, y2 = one.decode(z1, seed=1)[0], win.decode(z1, seed=1)[0]
    assert ((y1 - y2).norm() / y1.norm()) < 0.25
    d = (y1 - y2).abs()
    near = _boundary_mask(win, wins, d.shape[0] + 1536, win.samples_per_unit, 4096)[1536:]
    assert d[near].mean() < 1.5 * d[~near].mean()
    jump = y2.diff().abs()
    assert jump[near[1:]].max() <= 1.5 * jump[~near[1:]].max()


def test_gpu_batches_of_windows_decode_like_one_window_per_pass(monkeypatch):
    """On a GPU (`batch_units` of several windows) neighbouring windows of one width decode side
    by side; the audio is what one window per pass gives, up to float rounding."""
    codec = Codec1(random_model(MICRO), model_id="micro@test", device="cpu", window_seconds=2, context=2)
    z = codec.encode(tone_and_noise(13.0, channels=2))
    n_windows = len(codec.windows(z.shape[-1]))
    assert n_windows >= 5
    passes = record_pass_sizes(codec, "decode_features", monkeypatch)
    reports: list[tuple[int, int]] = []
    codec.progress = lambda task, done, total: reports.append((done, total))
    alone = codec.decode(z, seed=3)
    assert sum(passes) == 2 * n_windows and len(passes) >= n_windows  # the CPU: a window per pass
    assert reports == [(k, n_windows) for k in range(n_windows + 1)]
    passes.clear(), reports.clear()
    monkeypatch.setattr(Codec1, "batch_units", property(lambda self: 4 * self.pass_units))
    side_by_side = codec.decode(z, seed=3)
    assert max(passes) == 4 and sum(passes) == 2 * n_windows and len(passes) < n_windows
    assert reports[0] == (0, n_windows) and reports[-1] == (n_windows, n_windows)
    assert [d for d, _ in reports] == sorted({d for d, _ in reports})  # each count reported once
    torch.testing.assert_close(side_by_side, alone, atol=1e-5, rtol=1e-4)


def test_silence_encodes_and_decodes_finite(codec):
    z = codec.encode(torch.zeros(1, 30000))
    assert torch.isfinite(z).all()
    assert torch.isfinite(codec.decode(z, seed=0)).all()


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.full((1, 5000), float("nan")), "NaN"),
        (torch.zeros(3, 5000), "channels"),
        (torch.zeros(0), "0 samples|empty"),
        (torch.zeros(1, 1, 1, 10), "dim"),
    ],
)
def test_bad_audio_is_one_line_error(codec, bad, match):
    with pytest.raises(M2LError, match=match) as info:
        codec.encode(bad)
    assert_one_line_error(info)


@pytest.mark.parametrize(
    "bad, match",
    [
        (torch.zeros(1, 32, 4), "shape"),
        (torch.zeros(64, 4), "shape"),
        (torch.full((1, 64, 4), float("inf")), "NaN or Inf"),
        (torch.zeros(1, 64, 4, dtype=torch.int64), "floating"),
        ("abc", "tensor"),
    ],
)
def test_bad_latents_are_one_line_errors(codec, bad, match):
    with pytest.raises(M2LError, match=match):
        codec.decode(bad, seed=0)


def test_length_and_steps_checked(codec):
    z = torch.zeros(1, 64, 2)
    with pytest.raises(M2LError, match="length"):
        codec.decode(z, length=10**6)
    with pytest.raises(M2LError, match="steps"):
        codec.decode(z, steps=0)


def test_latent_file_checks_model(codec):
    lf = codec.encode_file(torch.randn(1, 10000) * 0.1)
    assert lf.length == 10000 and lf.model_id == "tiny@test"
    assert codec.decode(lf, seed=0).shape == (1, 10000)
    other = Codec1(codec.model, model_id="tiny@other", device="cpu")
    with pytest.raises(M2LError, match="allow-model-mismatch"):
        other.decode(lf, seed=0)
    assert other.decode(lf, seed=0, allow_model_mismatch=True).shape == (1, 10000)
    small = Codec1(random_model("m2l-v1-small"), model_id="s", device="cpu")
    with pytest.raises(M2LError, match="incompatible"):
        small.decode(lf, seed=0)
