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


def spectrogram_peak(audio: torch.Tensor, *, n_fft: int = 2048, hop: int = 512) -> float:
    """The loudest STFT bin's magnitude of `audio` (mixed to mono), as `spectrogram_png` measures
    it: pass it as `reference_peak` to draw other audio on the same dB scale.

    Args:
        audio: [samples] or [channels, samples] waveform.
    """
    return float(stft_magnitude(_mono(audio), int(n_fft), int(hop)).max())


def _spectrogram_levels(
    wave: torch.Tensor, n_fft: int, hop: int, db_range: float, peak: float | None
) -> np.ndarray:
    """Magnitude in dB relative to `peak` (the loudest bin of `wave` if None), mapped from
    [-db_range, 0] to [0, 1] (louder than `peak` is 1).

    Args:
        wave: [samples] float64 waveform.

    Returns:
        [n_fft // 2 + 1, frames] levels, row 0 = lowest frequency; all 0 for silence.
    """
    mag = stft_magnitude(wave, n_fft, hop).cpu().numpy()
    peak = float(mag.max()) if peak is None else float(peak)
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


def _resize_columns(levels: np.ndarray, width: int) -> np.ndarray:
    """Linearly resample [rows, columns] to [rows, width] along the second axis (ends kept)."""
    return _resize_rows(levels.T, width).T


def _is_int(v: object) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v: object, *, zero_ok: bool = False) -> bool:
    """A finite real number > 0 (or >= 0 with `zero_ok`)."""
    ok = isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    return ok and (v >= 0 if zero_ok else v > 0)


def _check_spectrogram_args(
    sample_rate: float, n_fft: int, hop: int, db_range: float, size: tuple[int | None, int | None]
) -> None:
    """Raise `M2LError` for a bad option of `spectrogram_png` (`size` is its height and width)."""
    if not _is_number(sample_rate):
        raise M2LError(f"spectrogram_png: sample rate must be a positive number, got {sample_rate!r}")
    if not (_is_int(n_fft) and n_fft >= 2 and _is_int(hop) and hop >= 1):
        raise M2LError(f"spectrogram_png: need n_fft >= 2 and hop >= 1, got n_fft={n_fft!r}, hop={hop!r}")
    if not _is_number(db_range):
        raise M2LError(f"spectrogram_png: db_range must be a positive number, got {db_range!r}")
    for name, value in zip(("height", "width"), size, strict=True):
        if value is not None and not (_is_int(value) and value >= 1):
            raise M2LError(f"spectrogram_png: {name} must be a positive int or None, got {value!r}")


def _mono(audio: object) -> torch.Tensor:
    """[samples] or [channels, samples] audio -> float64 mono [samples], or a one-line error."""
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
    return wave


def colour_bar(height: int, width: int = 12) -> np.ndarray:
    """[height, width, 3] uint8 colour scale of `spectrogram_png`: the colour of 0 dB in the top
    row, of -db_range dB in the last (row r is r / (height - 1) of the way down)."""
    levels = np.linspace(1.0, 0.0, height) if height > 1 else np.ones(1)
    return np.repeat(apply_colormap(levels)[:, None, :], width, axis=1)


def spectrogram_png(
    audio: torch.Tensor,
    path: str | os.PathLike[str],
    *,
    sample_rate: float,
    n_fft: int = 2048,
    hop: int = 512,
    db_range: float = 80.0,
    height: int | None = None,
    width: int | None = None,
    reference_peak: float | None = None,
    axes: bool = False,
) -> np.ndarray:
    """Write a log-magnitude spectrogram picture of `audio` as a PNG.

    Columns are STFT frames (uncentred periodic-Hann frames, end zero-padded, so audio shorter
    than n_fft gives one column). Rows span 0 .. sample_rate / 2 linearly, lowest frequency at the
    bottom. Levels are dB relative to `reference_peak` (by default the loudest bin of `audio`
    itself), clipped to the top `db_range` dB and coloured with `apply_colormap`; silence is drawn
    in the darkest colour. Pictures of several signals share one scale when they share a
    `reference_peak` (`spectrogram_peak` of one of them): quieter audio then looks darker.

    Args:
        audio: [samples] waveform; [channels, samples] is averaged to mono first.
        path: destination .png file (written atomically).
        sample_rate: sample rate in Hz (sets the frequency and time axes).
        n_fft: FFT length; the plot has n_fft // 2 + 1 rows unless `height` is given.
        hop: frame step in samples (one plot column per frame unless `width` is given).
        db_range: dynamic range shown, in dB.
        height: rows of the plot; the frequency axis is linearly resampled to it.
        width: columns of the plot; the time axis is linearly resampled to it.
        reference_peak: the STFT magnitude drawn as 0 dB (see `spectrogram_peak`).
        axes: draw time (s) and frequency (kHz) ticks and labels and a colour bar in dB around
            the plot (`m2l.evaluate.chart.framed_spectrogram`).

    Returns:
        The uint8 RGB image that was written: [height, frames, 3] (row 0 = highest frequency),
        or the larger framed picture with `axes`.
    """
    _check_spectrogram_args(sample_rate, n_fft, hop, db_range, (height, width))
    if reference_peak is not None and not _is_number(reference_peak, zero_ok=True):
        raise M2LError(f"spectrogram_png: reference_peak must be a number >= 0, got {reference_peak!r}")
    wave = _mono(audio)
    levels = _spectrogram_levels(wave, int(n_fft), int(hop), float(db_range), reference_peak)
    levels = _resize_rows(levels, levels.shape[0] if height is None else int(height))
    levels = levels if width is None else _resize_columns(levels, int(width))
    rgb = apply_colormap(levels[::-1])
    if axes:
        from m2l.evaluate.chart import framed_spectrogram

        seconds = max(wave.numel(), int(n_fft)) / float(sample_rate)
        bar = colour_bar(rgb.shape[0])
        rgb = framed_spectrogram(rgb, bar, seconds=seconds, top_hz=sample_rate / 2, db_range=db_range)
    write_png(path, rgb)
    return rgb
