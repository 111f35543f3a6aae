"""`m2l.audio.headers`: the frame counts that WAV and AIFF containers declare."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from m2l.audio.headers import declared_frames


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
