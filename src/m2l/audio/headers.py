"""How many frames a WAV or AIFF header promises, read from the container itself.

libsndfile clamps the frame count of a WAV or AIFF file whose data chunk is cut short to the
frames that are there, so a file truncated in the middle (a copy that stopped, a full disk) looks
whole to it. `declared_frames` walks the chunks and returns what the header declared, so that
`m2l.audio.io.load_audio` can tell such a file from a complete one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

_MAX_CHUNKS = 256  # chunks walked before giving up (a file of junk chunks is not worth more)
_PCM_TAGS = frozenset({0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE})  # PCM, float, A-law, mu-law, extensible
_UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF})  # what streaming writers put before the length is known


def declared_frames(path: Path) -> int | None:
    """The frame count the header of a WAV (RIFF) or AIFF/AIFF-C file declares, or None when the
    file is neither, its data size is a streaming placeholder, or its encoding has no fixed
    bytes per frame (ADPCM...). Never reads past the chunk headers.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
            return _wav_frames(f)
        if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
            return _aiff_frames(f)
    return None


def _chunks(f: BinaryIO, endian: str) -> Iterator[tuple[bytes, int, int]]:
    """(id, size, offset of its data) of each chunk from the current position on."""
    for _ in range(_MAX_CHUNKS):
        header = f.read(8)
        if len(header) < 8:
            return
        (size,) = struct.unpack(endian + "I", header[4:])
        start = f.tell()
        yield header[:4], size, start
        f.seek(start + size + (size & 1))  # chunks are padded to an even length


def _wav_frames(f: BinaryIO) -> int | None:
    """Data bytes / block align of the `data` chunk, after a PCM or float `fmt ` chunk."""
    block_align = 0
    for chunk, size, _ in _chunks(f, "<"):
        if chunk == b"fmt ":
            fmt = f.read(14)
            if size < 14 or len(fmt) < 14:
                return None
            tag, _, _, _, block_align = struct.unpack("<HHIIH", fmt)
            if tag not in _PCM_TAGS:
                return None
        elif chunk == b"data":
            if block_align == 0 or size in _UNKNOWN_SIZES:
                return None
            return size // block_align
    return None


def _aiff_frames(f: BinaryIO) -> int | None:
    """numSampleFrames of the `COMM` chunk."""
    for chunk, size, _ in _chunks(f, ">"):
        if chunk == b"COMM":
            comm = f.read(6)
            if size < 6 or len(comm) < 6:
                return None
            (frames,) = struct.unpack(">I", comm[2:6])
            return frames
    return None
