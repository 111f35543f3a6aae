"""`m2l.EncoderDecoder` (`m2l.authors_api`): the drop-in for the authors' inference class and its
documented differences (layouts, end padding, seeded decoding, any m2l model, v2 options)."""

import numpy as np
import pytest
import torch
from m2l_testing import MICRO2, random_model

import m2l
from m2l import authors_api
from m2l.codec_v2 import Codec2
from m2l.errors import M2LError
from m2l.formats import save_checkpoint
from m2l.loading import AUTHORS_NAME

CHUNK = 32768
HOP = 4096  # samples per v1 latent frame
ALIGN = 1536  # the authors' alignment: 4 frames of v1 latents span 4 * HOP + ALIGN samples


@pytest.fixture(scope="module")
def tiny_ed(tmp_path_factory) -> m2l.EncoderDecoder:
    path = tmp_path_factory.mktemp("authors-api") / "t.safetensors"
    model = random_model("m2l-v1-tiny")
    save_checkpoint(path, model.state_dict(), model.cfg)
    return m2l.EncoderDecoder(str(path), device="cpu")


def test_encoder_decoder_drop_in(tmp_path):
    model = random_model("m2l-v1-tiny")
    save_checkpoint(tmp_path / "t.safetensors", model.state_dict(), model.cfg)
    ed = m2l.EncoderDecoder(str(tmp_path / "t.safetensors"), device="cpu")
    n = 4096 * 4 + 1536
    stereo = (np.random.RandomState(0).randn(n, 2) * 0.1).astype(np.float32)  # authors' layout
    z = ed.encode(stereo)
    assert isinstance(z, np.ndarray) and z.shape == (2, 64, 4)
    assert np.allclose(ed.encode(stereo.T), z)
    y = ed.decode(z, seed=0)
    assert isinstance(y, np.ndarray) and y.shape == (2, n)
    assert ed.encode(stereo, extract_features=True).shape[:2] == (2, 16 * 32)


def test_mono_audio_and_two_dimensional_latents(tiny_ed):
    x = (np.random.RandomState(1).randn(4 * HOP + ALIGN) * 0.1).astype(np.float32)
    z = tiny_ed.encode(x)
    assert z.shape == (1, 64, 4)
    np.testing.assert_array_equal(tiny_ed.encode(x[None]), z)  # [1, samples] is the same clip
    np.testing.assert_array_equal(tiny_ed.encode(torch.from_numpy(x)), z)
    y = tiny_ed.decode(z[0], seed=0)  # [64, frames] decodes as one channel
    assert isinstance(y, np.ndarray) and y.shape == (1, x.size)
    np.testing.assert_array_equal(tiny_ed.decode(torch.from_numpy(z), seed=0), tiny_ed.decode(z, seed=0))


def test_clips_are_padded_at_the_end_not_cropped(tiny_ed):
    whole = 4 * HOP + ALIGN
    for length, frames in ((whole - 1, 4), (whole, 4), (whole + 1, 5)):
        x = (np.random.RandomState(length).randn(length) * 0.1).astype(np.float32)
        z = tiny_ed.encode(x)
        assert z.shape[-1] == frames, length
        y = tiny_ed.decode(z, seed=0)
        assert length <= y.shape[-1] < length + HOP, length  # the whole clip comes back, padded


def test_decoding_is_reproducible_with_a_seed(tiny_ed):
    z = tiny_ed.encode((np.random.RandomState(2).randn(2, 3 * HOP + ALIGN) * 0.1).astype(np.float32))
    a, b, c = (tiny_ed.decode(z, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    steps = [tiny_ed.decode(z, denoising_steps=3, seed=7) for _ in range(2)]
    np.testing.assert_array_equal(steps[0], steps[1])
    assert not np.array_equal(steps[0], a)  # more denoising steps: another estimate


def test_audio_with_more_than_two_dimensions_is_refused(tiny_ed):
    with pytest.raises(M2LError, match=r"expected \[samples\] or \[channels, samples\]"):
        tiny_ed.encode(np.zeros((2, 2, 8000), np.float32))


def test_no_path_loads_the_authors_checkpoint(monkeypatch, tiny_ed):
    asked = []

    def fake_load(source, device=None, **options):
        asked.append((source, device, options))
        return tiny_ed.codec

    monkeypatch.setattr(authors_api, "load", fake_load)
    ed = m2l.EncoderDecoder(device="cpu")
    assert (
        asked == [(AUTHORS_NAME, "cpu", {"stereo": "lr"})]
        and ed.codec is tiny_ed.codec
        and ed.device == tiny_ed.device
    )


def test_encoder_decoder_options_work_on_a_v2_model(tmp_path):
    model = random_model(MICRO2)
    save_checkpoint(tmp_path / "v2.safetensors", model.state_dict(), model.cfg)
    ed = m2l.EncoderDecoder(str(tmp_path / "v2.safetensors"), device="cpu")
    assert isinstance(ed.codec, Codec2)
    n = 2 * CHUNK + 1536  # two whole chunks at the authors' alignment (no left pad)
    stereo = (np.random.RandomState(0).randn(n, 2) * 0.1).astype(np.float32)  # authors' layout
    z = ed.encode(stereo, max_waveform_length=CHUNK, max_batch_size=1)
    assert ed.codec.chunk_batch == 1 and ed.codec.batch_size == 1
    assert isinstance(z, np.ndarray) and z.shape == (2, 2, 8, 64)
    np.testing.assert_allclose(ed.encode(stereo, max_waveform_length=3 * CHUNK), z, rtol=1e-5, atol=1e-5)
    assert ed.codec.chunk_batch == 3
    y = ed.decode(z, max_waveform_length=2 * CHUNK, max_batch_size=2, seed=0)
    assert isinstance(y, np.ndarray) and y.shape == (2, n)
    assert np.array_equal(y, ed.decode(z, seed=0))  # decoding does not depend on the options


def test_bad_options_are_one_line_errors(tiny_ed):
    audio = np.zeros(8192, np.float32)
    for kwargs, message in (
        ({"max_batch_size": 0}, "max_batch_size must be >= 1"),
        ({"max_batch_size": "4"}, "max_batch_size must be an integer"),
        ({"max_waveform_length": 2.5}, "window samples must be an integer"),
        ({"extract_features": "no"}, "features must be True or False"),
    ):
        with pytest.raises(M2LError, match=message):
            tiny_ed.encode(audio, **kwargs)
    with pytest.raises(M2LError, match="seed must be an integer"):
        tiny_ed.decode(tiny_ed.encode(audio), seed="1")
