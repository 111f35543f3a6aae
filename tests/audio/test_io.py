"""Tests for m2l.audio.io: reading, checking, resampling and atomic writing of audio, and the
frame counts that WAV and AIFF containers declare."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from m2l_testing import assert_one_line_error, sine

from m2l.audio.io import (
    AUDIO_EXTENSIONS,
    WRITE_EXTENSIONS,
    check_subtype,
    declared_frames,
    load_audio,
    resample,
    save_audio,
    to_waveform,
)
from m2l.errors import M2LError

PCM24_STEP = 1.0 / 2**23


def peak_hz(x: np.ndarray, rate: int) -> float:
    """Frequency of the largest FFT bin of a 1-D signal."""
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


def test_extension_sets():
    assert WRITE_EXTENSIONS <= AUDIO_EXTENSIONS
    assert all(e == e.lower() and e.startswith(".") for e in AUDIO_EXTENSIONS)
    assert {".wav", ".flac", ".mp3", ".ogg", ".opus", ".aiff"} <= AUDIO_EXTENSIONS


@pytest.mark.parametrize("ext", [".wav", ".flac"])
@pytest.mark.parametrize("channels", [1, 2])
def test_round_trip(tmp_path: Path, ext: str, channels: int):
    rng = np.random.default_rng(0)
    x = sine(
        440, 0.5, rate=22050, channels=channels, phase=range(channels), dtype=np.float32
    ) + 0.1 * rng.standard_normal((channels, 11025))
    x = x.astype(np.float32)
    path = tmp_path / f"a{ext}"
    save_audio(path, x, 22050)
    wave, rate = load_audio(path)
    assert rate == 22050
    assert wave.dtype == torch.float32 and wave.device.type == "cpu"
    assert tuple(wave.shape) == (channels, 11025)
    assert np.abs(wave.numpy() - x).max() <= PCM24_STEP
    assert sf.info(str(path)).subtype == "PCM_24"


def test_round_trip_mono_1d_and_tensor(tmp_path: Path):
    x = torch.from_numpy(sine(300, 0.25, rate=16000, dtype=np.float32))
    save_audio(tmp_path / "m.wav", x, 16000)
    wave, _ = load_audio(tmp_path / "m.wav")
    assert tuple(wave.shape) == (1, 4000)
    assert torch.allclose(wave[0], x, atol=PCM24_STEP)


def test_save_clips(tmp_path: Path):
    x = np.array([[0.0, 2.0, -3.0, 0.5] * 10], dtype=np.float32)
    save_audio(tmp_path / "c.flac", x, 8000)
    wave, _ = load_audio(tmp_path / "c.flac")
    assert wave.max() <= 1.0 and wave.min() >= -1.0
    assert abs(float(wave[0, 1]) - 1.0) < 1e-6 and abs(float(wave[0, 2]) + 1.0) < 1e-6


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype", "rate"),
    [
        (".ogg", "OGG", "VORBIS", 44100),
        (".oga", "OGG", "VORBIS", 44100),
        (".opus", "OGG", "OPUS", 48000),
        (".AIFF", "AIFF", "PCM_16", 44100),
    ],
)
def test_read_other_formats(tmp_path: Path, ext: str, fmt: str, subtype: str, rate: int):
    x = sine(1000, 0.5, rate=rate, channels=2, phase=(0, 1), dtype=np.float32)
    path = tmp_path / f"v{ext}"
    try:
        sf.write(str(path), x.T, rate, format=fmt, subtype=subtype)
    except (sf.LibsndfileError, sf.SoundFileError, RuntimeError, TypeError, ValueError):
        pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
    wave, rate = load_audio(path)
    assert wave.dtype == torch.float32 and wave.shape[0] == 2
    assert abs(wave.shape[1] - x.shape[1]) < 2048
    assert abs(peak_hz(wave[0].numpy(), rate) - 1000) < 10


def test_read_mp3(tmp_path: Path):
    path = tmp_path / "m.mp3"
    try:
        sf.write(str(path), sine(1000, 0.5, rate=44100, dtype=np.float32), 44100, format="MP3")
    except (sf.LibsndfileError, sf.SoundFileError, RuntimeError, TypeError, ValueError):
        pytest.skip("this libsndfile cannot write MP3")
    wave, rate = load_audio(path, downmix=True)
    assert rate == 44100 and wave.shape[0] == 1
    assert abs(peak_hz(wave[0].numpy(), rate) - 1000) < 10


def test_resample_keeps_frequency_and_length():
    x = torch.from_numpy(sine(1000, 1.0, rate=48000, channels=2, phase=(0, 1), dtype=np.float32))
    y = resample(x, 48000, 44100)
    assert y.dtype == torch.float32 and tuple(y.shape[:-1]) == (2,)
    assert abs(y.shape[-1] - 48000 * 44100 / 48000) <= 2
    assert abs(peak_hz(y[0].numpy(), 44100) - 1000) < 2
    assert abs(peak_hz(y[1].numpy(), 44100) - 1000) < 2
    # Away from the edges the waveform is the same sine sampled at the new rate.
    ref = sine(1000, samples=y.shape[-1], rate=44100)
    assert np.abs(y[0, 1000:-1000].numpy() - ref[1000:-1000]).max() < 1e-3


def test_resample_identity_and_float64():
    x = torch.randn(2, 100)
    assert resample(x, 44100, 44100) is x
    y = resample(x.double(), 16000, 8000)
    assert y.dtype == torch.float32 and tuple(y.shape) == (2, 50)


def test_load_with_target_rate(tmp_path: Path):
    path = tmp_path / "s.wav"
    save_audio(path, sine(1000, 0.5, rate=48000, channels=2, phase=(0, 1), dtype=np.float32), 48000)
    wave, rate = load_audio(path, target_rate=44100)
    assert rate == 44100
    assert tuple(wave.shape) == (2, 22050)
    assert abs(peak_hz(wave[0].numpy(), rate) - 1000) < 5


def test_save_refuses_overwrite_then_force(tmp_path: Path):
    path = tmp_path / "o.wav"
    save_audio(path, np.zeros((1, 100), np.float32), 8000)
    with pytest.raises(M2LError) as exc:
        save_audio(path, np.ones((1, 50), np.float32) * 0.5, 8000)
    assert_one_line_error(exc, "o.wav", "exists")
    assert sf.info(str(path)).frames == 100
    save_audio(path, np.ones((1, 50), np.float32) * 0.5, 8000, force=True)
    wave, _ = load_audio(path)
    assert wave.shape[1] == 50 and abs(float(wave.mean()) - 0.5) < 1e-6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.wav"]


def test_save_creates_parents_and_leaves_no_temp(tmp_path: Path):
    path = tmp_path / "deep" / "er" / "x.flac"
    save_audio(path, sine(220, 0.1, rate=16000, channels=1, dtype=np.float32), 16000)
    assert [p.name for p in path.parent.iterdir()] == ["x.flac"]


def test_failed_save_writes_nothing(tmp_path: Path):
    x = sine(220, 0.1, rate=16000, channels=1, dtype=np.float32)
    with pytest.raises(M2LError) as exc:
        save_audio(tmp_path / "bad.mp3", x, 16000)
    assert_one_line_error(exc, "bad.mp3", ".mp3")
    with pytest.raises(M2LError) as exc:
        save_audio(tmp_path / "nan.wav", np.full((1, 10), np.nan, np.float32), 16000)
    assert_one_line_error(exc, "nan.wav", "NaN or Inf")
    with pytest.raises(M2LError) as exc:
        save_audio(tmp_path / "r.wav", x, 0)
    assert_one_line_error(exc, "r.wav", "sample rate")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_removes_temp(tmp_path: Path):
    # FLAC cannot hold this rate: libsndfile fails after the temp file was opened.
    with pytest.raises(M2LError) as exc:
        save_audio(tmp_path / "hi.flac", sine(220, 0.1, rate=16000, channels=1, dtype=np.float32), 10_000_000)
    assert_one_line_error(exc, "hi.flac", "cannot write audio")
    assert list(tmp_path.iterdir()) == []


def test_load_file_errors(tmp_path: Path):
    with pytest.raises(M2LError) as exc:
        load_audio(tmp_path / "missing.wav")
    assert_one_line_error(exc, "missing.wav", "not found")

    (tmp_path / "dir.wav").mkdir()
    with pytest.raises(M2LError) as exc:
        load_audio(tmp_path / "dir.wav")
    assert_one_line_error(exc, "dir.wav", "directory")

    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(M2LError) as exc:
        load_audio(tmp_path / "notes.txt")
    assert_one_line_error(exc, "notes.txt", "unsupported extension")

    (tmp_path / "corrupt.wav").write_bytes(b"RIFF not really a wave file" * 4)
    with pytest.raises(M2LError) as exc:
        load_audio(tmp_path / "corrupt.wav")
    assert_one_line_error(exc, "corrupt.wav", "cannot read audio")

    sf.write(str(tmp_path / "empty.wav"), np.zeros((0, 1), np.float32), 8000)
    with pytest.raises(M2LError) as exc:
        load_audio(tmp_path / "empty.wav")
    assert_one_line_error(exc, "empty.wav", "empty audio")

    bad = np.zeros((100, 1), np.float32)
    bad[10, 0] = np.inf
    sf.write(str(tmp_path / "inf.wav"), bad, 8000, subtype="FLOAT")
    with pytest.raises(M2LError) as exc:
        load_audio(tmp_path / "inf.wav")
    assert_one_line_error(exc, "inf.wav", "NaN or Inf")

    sf.write(str(tmp_path / "ok.wav"), np.zeros((100, 1), np.float32), 8000)
    with pytest.raises(M2LError) as exc:
        load_audio(tmp_path / "ok.wav", target_rate=-5)
    assert_one_line_error(exc, "ok.wav", "target rate")


def test_load_multichannel_needs_downmix(tmp_path: Path):
    x = sine(500, 0.2, rate=8000, channels=4, phase=range(4), dtype=np.float32)
    path = tmp_path / "quad.wav"
    sf.write(str(path), x.T, 8000, subtype="FLOAT")
    with pytest.raises(M2LError) as exc:
        load_audio(path)
    assert_one_line_error(exc, "quad.wav", "4 channels", "downmix=True", "--downmix")
    wave, _ = load_audio(path, downmix=True)
    assert tuple(wave.shape) == (1, x.shape[1])
    assert np.allclose(wave[0].numpy(), x.mean(axis=0), atol=1e-6)


def test_to_waveform_layouts():
    x = sine(440, 0.1, rate=16000, channels=2, phase=(0, 1), dtype=np.float32)
    assert tuple(to_waveform(x[0], 16000, 16000).shape) == (1, 1600)
    assert tuple(to_waveform(x, None, 16000).shape) == (2, 1600)
    batch = np.stack([x, x * 0.5, x * 0.25])
    out = to_waveform(batch, 16000, 8000)
    assert tuple(out.shape) == (3, 2, 800)
    assert torch.allclose(out[1], resample(torch.from_numpy(x * 0.5), 16000, 8000), atol=1e-6)
    assert tuple(to_waveform(batch, 16000, 16000, downmix=True).shape) == (3, 1, 1600)


def test_to_waveform_keeps_device_and_dtype():
    t = torch.randn(2, 500, dtype=torch.float64)
    out = to_waveform(t, 8000, 16000)
    assert out.dtype == torch.float32 and out.device == t.device and out.shape[-1] == 1000
    assert isinstance(to_waveform(np.zeros(10, np.float64), None, 8000), torch.Tensor)
    frozen = np.frombuffer(np.ones(8, np.float32).tobytes(), np.float32)  # read-only
    assert tuple(to_waveform(frozen[::-2], None, 8000).shape) == (1, 4)


def test_to_waveform_integer_dtypes():
    i16 = np.array([[0, 16384, -32768, 32767]], dtype=np.int16)
    assert np.allclose(to_waveform(i16, None, 8000).numpy(), [[0, 0.5, -1, 32767 / 32768]])
    i32 = np.array([[2**30, -(2**31)]], dtype=np.int32)
    assert np.allclose(to_waveform(i32, None, 8000).numpy(), [[0.5, -1.0]])
    u8 = np.array([[128, 0, 255]], dtype=np.uint8)
    assert np.allclose(to_waveform(u8, None, 8000).numpy(), [[0.0, -1.0, 127 / 128]])
    t16 = torch.tensor([[16384, -16384]], dtype=torch.int16)
    assert torch.allclose(to_waveform(t16, None, 8000), torch.tensor([[0.5, -0.5]]))


def test_to_waveform_samples_channels_detected():
    x = sine(440, 0.1, rate=16000, channels=2, phase=(0, 1), dtype=np.float32).T  # [samples, 2]
    with pytest.raises(M2LError) as exc:
        to_waveform(x, 16000, 16000, name="my_array")
    assert_one_line_error(exc, "my_array", "looks like [samples, channels]", "transpose")
    with pytest.raises(M2LError) as exc:
        to_waveform(np.zeros((2, 100, 2), np.float32), 16000, 16000)
    assert_one_line_error(exc, "array", "looks like [batch, samples, channels]")


@pytest.mark.parametrize(
    ("audio", "rate", "fragment"),
    [
        (np.zeros((1, 0), np.float32), 8000, "empty audio"),
        (np.zeros(0, np.float32), 8000, "empty audio"),
        (np.array(0.5, np.float32), 8000, "0 dims"),
        (np.float64(0.5), 8000, "0 dims"),
        (torch.tensor(0.5), 8000, "0 dims"),
        (np.zeros((1, 1, 2, 100), np.float32), 8000, "4 dims"),
        (np.array([[0.0, np.nan, 0.1]]), 8000, "NaN or Inf"),
        (torch.tensor([[0.0, float("inf")]]), 8000, "NaN or Inf"),
        (np.array([["a", "b"]]), 8000, "dtype"),
        (np.array([[True, False]]), 8000, "dtype"),
        (torch.zeros(1, 4, dtype=torch.complex64), 8000, "dtype"),
        ([0.1, 0.2], 8000, "numpy array or torch tensor"),
        (np.zeros((1, 10), np.float32), 0, "sample rate"),
        (np.zeros((1, 10), np.float32), -8000, "sample rate"),
        (np.zeros((1, 10), np.float32), 8000.5, "sample rate"),
        (np.zeros((1, 10), np.float32), "8000", "sample rate"),
        (np.zeros((3, 100), np.float32), 8000, "downmix=True"),
    ],
)
def test_to_waveform_errors(audio, rate, fragment):
    with pytest.raises(M2LError) as exc:
        to_waveform(audio, rate, 8000, name="clip_7")
    assert_one_line_error(exc, "clip_7", fragment)


def test_to_waveform_downmix_and_integral_float_rate():
    x = np.stack([np.full(50, 0.1), np.full(50, 0.2), np.full(50, 0.6)]).astype(np.float32)
    out = to_waveform(x, 8000.0, 8000, downmix=True)
    assert tuple(out.shape) == (1, 50) and torch.allclose(out, torch.full((1, 50), 0.3))


def test_save_rejects_bad_shapes(tmp_path: Path):
    with pytest.raises(M2LError) as exc:
        save_audio(tmp_path / "b.wav", np.zeros((1, 2, 100), np.float32), 8000)
    assert_one_line_error(exc, "b.wav", "3 dims")
    with pytest.raises(M2LError) as exc:
        save_audio(tmp_path / "t.wav", np.zeros((100, 2), np.float32), 8000)
    assert_one_line_error(exc, "t.wav", "[samples, channels]")
    (tmp_path / "d.wav").mkdir()
    with pytest.raises(M2LError) as exc:
        save_audio(tmp_path / "d.wav", np.zeros((1, 100), np.float32), 8000, force=True)
    assert_one_line_error(exc, "d.wav", "directory")
    assert [p.name for p in tmp_path.iterdir()] == ["d.wav"]


def test_load_refuses_a_fifo_without_blocking(tmp_path: Path):
    import signal

    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    previous = signal.signal(signal.SIGALRM, signal.default_int_handler)
    signal.alarm(20)  # opening the FIFO would block: fail by KeyboardInterrupt, not hang
    try:
        with pytest.raises(M2LError) as exc:
            load_audio(fifo)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert_one_line_error(exc, "pipe.wav", "named pipe")


@pytest.mark.parametrize("rate", [1, 999, 800_000])
def test_an_absurd_sample_rate_in_a_header_is_refused_before_resampling(tmp_path: Path, rate: int):
    path = tmp_path / f"r{rate}.wav"
    sf.write(str(path), np.zeros((100, 1), np.float32), rate)
    for target in (None, 44100):
        with pytest.raises(M2LError) as exc:
            load_audio(path, target)
        assert_one_line_error(exc, path.name, f"sample rate {rate} Hz is outside 1000..768000 Hz")


@pytest.mark.parametrize("rate", [1000, 768_000])
def test_the_extreme_sane_sample_rates_still_load(tmp_path: Path, rate: int):
    sf.write(str(tmp_path / "a.wav"), sine(300, 0.05, rate=rate, channels=1, dtype=np.float32).T, rate)
    wave, got = load_audio(tmp_path / "a.wav")
    assert got == rate and wave.shape == (1, int(rate * 0.05))


def claim_frames(flac: Path, frames: int) -> None:
    """Make a FLAC file's STREAMINFO promise `frames` frames (its low 36 bits of bytes 18..25)."""
    data = bytearray(flac.read_bytes())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO is the first metadata block
    fields = int.from_bytes(data[18:26], "big")
    fields = (fields >> 36 << 36) | frames
    data[18:26] = fields.to_bytes(8, "big")
    flac.write_bytes(bytes(data))


def test_a_header_promising_far_more_frames_than_the_file_holds_allocates_nothing_large(tmp_path: Path):
    import tracemalloc

    path = tmp_path / "liar.flac"
    sf.write(str(path), sine(440, 0.5, rate=8000, channels=1, dtype=np.float32).T, 8000)
    claim_frames(path, 1 << 35)  # 128 GiB of float32 if believed
    tracemalloc.start()
    try:
        with pytest.raises(M2LError) as exc:
            load_audio(path, 44100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_one_line_error(exc, "liar.flac")
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB traced"


def cut(path: Path, keep: int) -> None:
    """Truncate the file at `path` to its first `keep` bytes, as a copy that stopped would."""
    with open(path, "r+b") as f:
        f.truncate(keep)


@pytest.mark.parametrize(
    ("ext", "fmt", "subtype", "frame_bytes"),
    [(".wav", "WAV", "PCM_16", 4), (".wav", "WAV", "FLOAT", 8), (".aiff", "AIFF", "PCM_24", 6)],
)
def test_a_truncated_file_is_reported_not_read_short(
    tmp_path: Path, ext: str, fmt: str, subtype: str, frame_bytes: int
):
    path = tmp_path / f"cut{ext}"
    sf.write(
        str(path),
        sine(440, 1.0, rate=8000, channels=2, phase=(0, 1), dtype=np.float32).T,
        8000,
        format=fmt,
        subtype=subtype,
    )
    assert load_audio(path)[0].shape == (2, 8000)  # whole, it loads
    header = path.stat().st_size - 8000 * frame_bytes  # the samples come last
    cut(path, header + 3000 * frame_bytes + 1)  # in the middle of frame 3000
    for target in (None, 44100):
        with pytest.raises(M2LError) as exc:
            load_audio(path, target)
        assert_one_line_error(exc, path.name, "truncated: header says 8000 frames, file holds 3000")


def test_a_truncated_mp3_or_flac_is_reported(tmp_path: Path):
    flac = tmp_path / "cut.flac"
    sf.write(str(flac), sine(440, 2.0, rate=44100, channels=1, dtype=np.float32).T, 44100)
    cut(flac, flac.stat().st_size * 6 // 10)
    with pytest.raises(M2LError) as exc:
        load_audio(flac)
    assert_one_line_error(exc, "cut.flac", "truncated")
    mp3 = tmp_path / "cut.mp3"
    try:
        sf.write(str(mp3), sine(440, 2.0, rate=44100, channels=1, dtype=np.float32).T, 44100, format="MP3")
    except (sf.LibsndfileError, sf.SoundFileError, RuntimeError, TypeError, ValueError):
        pytest.skip("this libsndfile cannot write MP3")
    assert load_audio(mp3)[0].shape == (1, 88200)
    cut(mp3, mp3.stat().st_size * 6 // 10)
    with pytest.raises(M2LError) as exc:
        load_audio(mp3)
    assert_one_line_error(exc, "cut.mp3", "truncated: header says 88200 frames, file holds")


@pytest.mark.parametrize(
    "name,subtype",
    [
        ("a.wav", "PCM_16"),
        ("a.wav", "PCM_24"),
        ("a.wav", "FLOAT"),
        ("a.flac", "PCM_16"),
        ("a.flac", "PCM_24"),
    ],
)
def test_save_writes_the_asked_sample_format(tmp_path: Path, name: str, subtype: str):
    x = sine(440.0, samples=4000, amplitude=0.5, dtype=np.float32)
    save_audio(tmp_path / name, x, 44100, subtype=subtype)
    assert sf.info(tmp_path / name).subtype == subtype
    back, _ = load_audio(tmp_path / name)
    step = {"PCM_16": 2.0**-15, "PCM_24": 2.0**-23, "FLOAT": 1e-7}[subtype]
    assert float((back[0] - torch.from_numpy(x)).abs().max()) <= step


def test_a_sample_format_the_file_cannot_hold_is_one_line(tmp_path: Path):
    with pytest.raises(M2LError) as info:
        save_audio(tmp_path / "a.flac", np.zeros(100, dtype=np.float32), 44100, subtype="FLOAT")
    assert (
        str(info.value)
        == f"{tmp_path / 'a.flac'}: FLAC cannot hold FLOAT samples (use PCM_16 or PCM_24, or a .wav output)"
    )
    assert not (tmp_path / "a.flac").exists()
    with pytest.raises(M2LError, match="WAV cannot hold PCM_8 samples"):
        check_subtype("x.wav", "PCM_8")
    assert check_subtype("x.WAV", "FLOAT") == "FLOAT"


# ----------------------------------------------------------------------------- declared_frames
@pytest.mark.parametrize(
    ("fmt", "subtype", "channels"),
    [("WAV", "PCM_16", 1), ("WAV", "PCM_24", 2), ("WAV", "FLOAT", 2), ("AIFF", "PCM_16", 2)],
)
def test_whole_and_cut_files_declare_what_was_written(tmp_path: Path, fmt: str, subtype: str, channels: int):
    path = tmp_path / f"a.{fmt.lower()}"
    sf.write(str(path), np.zeros((1234, channels), np.float32), 8000, format=fmt, subtype=subtype)
    assert declared_frames(path) == 1234
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)
    assert declared_frames(path) == 1234  # the header still says so; libsndfile would not
    assert sf.info(str(path)).frames < 1234


def test_chunks_around_the_data_are_walked(tmp_path: Path):
    path = tmp_path / "a.wav"
    sf.write(str(path), np.zeros((500, 2), np.float32), 8000, subtype="PCM_16")
    data = path.read_bytes()
    odd = b"LIST" + struct.pack("<I", 5) + b"abcde" + b"\0"  # an odd-sized chunk and its pad byte
    data = data[:12] + odd + data[12:] + b"junk" + struct.pack("<I", 4) + b"1234"
    path.write_bytes(data[:4] + struct.pack("<I", len(data) - 8) + data[8:])
    assert declared_frames(path) == 500
    assert sf.info(str(path)).frames == 500


def test_unknown_counts_are_none(tmp_path: Path):
    stream = tmp_path / "stream.wav"
    sf.write(str(stream), np.zeros((100, 1), np.float32), 8000, subtype="PCM_16")
    data = bytearray(stream.read_bytes())
    at = data.index(b"data") + 4
    data[at : at + 4] = b"\xff\xff\xff\xff"  # a streaming writer's placeholder size
    stream.write_bytes(bytes(data))
    assert declared_frames(stream) is None
    adpcm = tmp_path / "adpcm.wav"
    sf.write(str(adpcm), np.zeros((4000, 1), np.float32), 8000, subtype="IMA_ADPCM")
    assert declared_frames(adpcm) is None  # no fixed bytes per frame
    flac = tmp_path / "a.flac"
    sf.write(str(flac), np.zeros((100, 1), np.float32), 8000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF\0\0\0\0WAVE" + b"junk\0\0\0\0" * 100_000)  # endless empty chunks
    short = tmp_path / "short.wav"
    short.write_bytes(b"RIFF")
    assert [declared_frames(p) for p in (flac, junk, short)] == [None, None, None]
