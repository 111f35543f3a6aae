"""Spectrogram pictures as 8-bit RGB PNG files, encoded here with zlib and struct only.

Images are numpy arrays [height, width, 3] of uint8, row 0 at the top. Files are written through a
temporary file in the destination folder and an atomic rename, so a reader never sees half a PNG.
"""

from __future__ import annotations

import math
import numbers
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from m2l.errors import M2LError
from m2l.evaluate.metrics import stft_magnitude
from m2l.files import write_bytes

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
"""The eight bytes every PNG file starts with."""

# Colormap anchors (position in [0, 1], R, G, B): deep indigo through blue, teal and green to a
# warm yellow. Luminance rises monotonically along the table, so brighter always means louder.
_COLOUR_ANCHORS = np.array(
    [
        [0.00, 20, 8, 40],
        [0.15, 60, 20, 100],
        [0.30, 55, 70, 140],
        [0.45, 40, 115, 145],
        [0.60, 35, 155, 130],
        [0.75, 90, 195, 95],
        [0.88, 180, 220, 60],
        [1.00, 250, 235, 40],
    ],
    dtype=np.float64,
)


def apply_colormap(levels: np.ndarray) -> np.ndarray:
    """Map levels to colours by linear interpolation between the anchor colours.

    Args:
        levels: [...] values; clipped to [0, 1], NaN treated as 0.

    Returns:
        [..., 3] uint8 RGB.
    """
    lv = np.clip(np.nan_to_num(np.asarray(levels, dtype=np.float64), nan=0.0), 0.0, 1.0)
    pos = _COLOUR_ANCHORS[:, 0]
    channels = [np.interp(lv, pos, _COLOUR_ANCHORS[:, c]) for c in (1, 2, 3)]
    return np.rint(np.stack(channels, axis=-1)).astype(np.uint8)


def _chunk(tag: bytes, data: bytes) -> bytes:
    """One PNG chunk: big-endian length, tag, data, CRC-32 of tag + data."""
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def encode_png(rgb: np.ndarray) -> bytes:
    """Encode an RGB image as PNG bytes (8 bits per channel, no interlace, filter 0 on every row).

    Args:
        rgb: [height, width, 3] uint8 array, height and width >= 1.

    Returns:
        The complete PNG file contents.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = list(getattr(rgb, "shape", ()))
        raise M2LError(
            f"write_png: expected a uint8 array [height, width, 3], got "
            f"{type(rgb).__name__} {getattr(rgb, 'dtype', '')} {shape}"
        )
    height, width = rgb.shape[:2]
    if height < 1 or width < 1 or height >= 2**31 or width >= 2**31:
        raise M2LError(f"write_png: image size {width}x{height} is not a valid PNG size")
    rows = np.zeros((height, 1 + 3 * width), dtype=np.uint8)  # leading 0 = filter type "None"
    rows[:, 1:] = rgb.reshape(height, 3 * width)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # depth 8, colour type 2 = RGB
    return b"".join(
        [
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)),
            _chunk(b"IEND", b""),
        ]
    )


def write_png(path: str | os.PathLike[str], rgb: np.ndarray) -> Path:
    """Write an RGB image to `path` as a PNG, atomically (`m2l.files.write_bytes`); overwrites.

    Args:
        path: destination file; missing parent folders are created.
        rgb: [height, width, 3] uint8 array.

    Returns:
        The destination path.
    """
    data = encode_png(rgb)
    return write_bytes(path, data, force=True)


def _spectrogram_levels(wave: torch.Tensor, n_fft: int, hop: int, db_range: float) -> np.ndarray:
    """Magnitude in dB relative to the loudest bin, mapped from [-db_range, 0] to [0, 1].

    Args:
        wave: [samples] float64 waveform.

    Returns:
        [n_fft // 2 + 1, frames] levels, row 0 = lowest frequency; all 0 for silence.
    """
    mag = stft_magnitude(wave, n_fft, hop).cpu().numpy()
    peak = float(mag.max())
    if peak <= 0.0:
        return np.zeros_like(mag)
    db = 20.0 * np.log10(np.maximum(mag / peak, 1e-300))
    return np.clip(1.0 + db / db_range, 0.0, 1.0)


def _resize_rows(levels: np.ndarray, height: int) -> np.ndarray:
    """Linearly resample [rows, width] to [height, width] along the first axis (ends kept)."""
    rows = levels.shape[0]
    if height == rows:
        return levels
    pos = np.linspace(0.0, rows - 1, height)
    low = np.floor(pos).astype(np.int64)
    high = np.minimum(low + 1, rows - 1)
    frac = (pos - low)[:, None]
    return levels[low] * (1.0 - frac) + levels[high] * frac


def _check_spectrogram_args(
    sample_rate: float, n_fft: int, hop: int, db_range: float, height: int | None
) -> None:
    """Raise `M2LError` for a bad option of `spectrogram_png`."""

    def is_int(v: object) -> bool:
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)

    if not (isinstance(sample_rate, numbers.Real) and math.isfinite(sample_rate) and sample_rate > 0):
        raise M2LError(f"spectrogram_png: sample rate must be a positive number, got {sample_rate!r}")
    if not (is_int(n_fft) and n_fft >= 2 and is_int(hop) and hop >= 1):
        raise M2LError(f"spectrogram_png: need n_fft >= 2 and hop >= 1, got n_fft={n_fft!r}, hop={hop!r}")
    if not (isinstance(db_range, numbers.Real) and math.isfinite(db_range) and db_range > 0):
        raise M2LError(f"spectrogram_png: db_range must be a positive number, got {db_range!r}")
    if height is not None and not (is_int(height) and height >= 1):
        raise M2LError(f"spectrogram_png: height must be a positive int or None, got {height!r}")


def spectrogram_png(
    audio: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    sample_rate: float,
    n_fft: int = 2048,
    hop: int = 512,
    db_range: float = 80.0,
    height: int | None = None,
) -> np.ndarray:
    """Write a log-magnitude spectrogram picture of `audio` as a PNG.

    Columns are STFT frames (uncentred periodic-Hann frames, end zero-padded, so audio shorter
    than n_fft gives one column). Rows span 0 .. sample_rate / 2 linearly, lowest frequency at the
    bottom. Levels are dB relative to the loudest bin, clipped to the top `db_range` dB and coloured
    with `apply_colormap`; silence is drawn in the darkest colour.

    Args:
        audio: [samples] waveform; [channels, samples] is averaged to mono first.
        path: destination .png file (written atomically).
        sample_rate: sample rate in Hz (sets the frequency axis; only checked here).
        n_fft: FFT length; the image has n_fft // 2 + 1 rows unless `height` is given.
        hop: frame step in samples (one image column per frame).
        db_range: dynamic range shown, in dB.
        height: rows of the image; the frequency axis is linearly resampled to it.

    Returns:
        [height, frames, 3] uint8 image that was written, row 0 = highest frequency.
    """
    _check_spectrogram_args(sample_rate, n_fft, hop, db_range, height)
    wave = torch.as_tensor(audio).detach()
    if wave.dim() == 2:
        wave = wave.to(torch.float64).mean(dim=0)
    if wave.dim() != 1 or wave.numel() == 0 or wave.is_complex():
        raise M2LError(
            f"spectrogram_png: expected real audio [samples] or [channels, samples], got "
            f"shape {list(wave.shape)}"
        )
    wave = wave.to(torch.float64)
    if not bool(torch.isfinite(wave).all()):
        raise M2LError("spectrogram_png: audio contains NaN or infinite samples")
    levels = _spectrogram_levels(wave, int(n_fft), int(hop), float(db_range))
    levels = _resize_rows(levels, levels.shape[0] if height is None else int(height))
    rgb = apply_colormap(levels[::-1])
    write_png(path, rgb)
    return rgb
