"""The generator shipped inside the package: package data (float16, small), made from the latents
of the shipped codec (this fails when the default codec changes and the generator is not
retrained on its latents), and `m2l generate` makes audible, non-noise audio, reproducibly."""

from __future__ import annotations

import numpy as np
import soundfile as sf
from cli_testing import run
from safetensors import safe_open

import m2l
from m2l.generate.checkpoint import SHIPPED_GENERATOR, load_generator


def test_the_shipped_generator_is_float16_package_data_under_15_mb():
    assert SHIPPED_GENERATOR.stat().st_size <= 15_000_000  # the issue: at most 15 MB
    with safe_open(str(SHIPPED_GENERATOR), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 (not iterable)
    assert dtypes == {"F16"}


def test_the_shipped_generator_learned_the_latents_of_the_shipped_codec():
    gen, codec = load_generator(), m2l.load(device="cpu")
    assert gen.codec_source == "default"
    assert gen.codec_id == codec.model_id, "the default codec changed: retrain the shipped generator"
    assert gen.stats.model_id == codec.model_id


def spectral_flatness(audio: np.ndarray) -> float:
    """The mean over 2048-sample frames of geometric / arithmetic mean of the power spectrum
    (white noise about 0.56, music far lower)."""
    frames = audio[: len(audio) // 2048 * 2048].reshape(-1, 2048) * np.hanning(2048)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2 + 1e-12
    return float(np.mean(np.exp(np.log(power).mean(-1)) / power.mean(-1)))


def test_generate_writes_audible_music_not_noise_and_the_same_seed_the_same_file(tmp_path, capsys):
    paths = [tmp_path / name for name in ("a.wav", "b.wav", "c.wav")]
    for path, seed, seconds in zip(paths, (0, 0, 1), (20, 20, 3), strict=True):
        code, _, err = run(
            capsys, "generate", "-o", path, "--seconds", seconds, "--seed", seed, "--device", "cpu"
        )
        assert code == 0, err
    assert paths[0].read_bytes() == paths[1].read_bytes()
    audio, rate = sf.read(paths[0])
    assert audio.ndim == 1 and abs(len(audio) / rate - 20) < 0.01
    rms = float(np.sqrt(np.mean(audio**2)))
    assert 10 ** (-40 / 20) < rms < 0.5, rms  # not silence, not clipping noise
    noise = np.random.default_rng(0).standard_normal(len(audio)) * rms
    assert spectral_flatness(audio) < 0.2 * spectral_flatness(noise)
    other, _ = sf.read(paths[2])
    assert not np.allclose(other, audio[: len(other)], atol=1e-3)
