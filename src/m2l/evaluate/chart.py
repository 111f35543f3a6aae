"""Axes for pictures: tick marks, labels and a colour bar drawn into RGB pixel arrays.

Text is drawn with a built-in 3x5 pixel font (digits, ".", "-" and the letters of "kHz", "s",
"dB") at `SCALE` pixels per font pixel, so that a picture explains itself wherever it is opened
(the `m2l eval` report, a training run's val/ folder, an image viewer) without a plotting library.

Canvases are numpy arrays [height, width, 3] of uint8, row 0 at the top, as in
`m2l.evaluate.images`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SCALE = 2
"""Pixels per font pixel: glyphs are 6 x 10 pixels."""
INK = (40, 40, 40)
"""The colour of text and tick marks."""
PAPER = (255, 255, 255)
"""The colour around the plot."""
TICK = 4
"""Length of a tick mark in pixels."""

_GLYPHS = {
    "0": ("111", "101", "101", "101", "111"),
    "1": ("010", "110", "010", "010", "111"),
    "2": ("111", "001", "111", "100", "111"),
    "3": ("111", "001", "111", "001", "111"),
    "4": ("101", "101", "111", "001", "001"),
    "5": ("111", "100", "111", "001", "111"),
    "6": ("111", "100", "111", "101", "111"),
    "7": ("111", "001", "010", "010", "010"),
    "8": ("111", "101", "111", "101", "111"),
    "9": ("111", "101", "111", "001", "111"),
    ".": ("000", "000", "000", "000", "010"),
    "-": ("000", "000", "111", "000", "000"),
    "k": ("100", "101", "110", "101", "101"),
    "H": ("101", "101", "111", "101", "101"),
    "z": ("000", "111", "010", "100", "111"),
    "s": ("011", "100", "010", "001", "110"),
    "d": ("001", "001", "111", "101", "111"),
    "B": ("110", "101", "110", "101", "110"),
    " ": ("000", "000", "000", "000", "000"),
}
GLYPH_HEIGHT = 5 * SCALE
"""Height of a line of text in pixels."""
_ADVANCE = 4 * SCALE  # glyph width plus one font pixel of spacing
_BAR_GAP = 20  # pixels between the plot and the colour bar (room for the time unit)
_TIME_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 3600)
_FREQ_STEPS_KHZ = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
_DB_STEPS = (5, 10, 20, 30, 40, 50, 100)


def text_width(text: str) -> int:
    """Width in pixels of `text` drawn by `draw_text` (0 for an empty string)."""
    return max(0, len(text) * _ADVANCE - SCALE)


def draw_text(canvas: np.ndarray, x: int, y: int, text: str, colour: Sequence[int] = INK) -> None:
    """Draw `text` with its top-left corner at column `x`, row `y`; what falls outside is cut.

    Args:
        canvas: [height, width, 3] uint8 image, changed in place.
        x, y: the top-left corner of the first glyph.
        text: characters of the built-in font (others are drawn as spaces).
        colour: RGB of the text.
    """
    height, width = canvas.shape[:2]
    for i, char in enumerate(text):
        rows = _GLYPHS.get(char, _GLYPHS[" "])
        for r, row in enumerate(rows):
            for c, bit in enumerate(row):
                if bit != "1":
                    continue
                top, left = y + r * SCALE, x + i * _ADVANCE + c * SCALE
                y0, y1 = max(top, 0), min(top + SCALE, height)
                x0, x1 = max(left, 0), min(left + SCALE, width)
                if y0 < y1 and x0 < x1:
                    canvas[y0:y1, x0:x1] = colour


def tick_values(span: float, max_ticks: int, steps: Sequence[float]) -> list[float]:
    """Round values 0, step, 2 * step, ... <= `span`: the smallest step of `steps` that gives at
    most `max_ticks` of them (the largest step if none does)."""
    if span <= 0:
        return [0.0]
    step = next((s for s in steps if math.floor(span / s + 1e-9) + 1 <= max(max_ticks, 1)), steps[-1])
    return [k * step for k in range(math.floor(span / step + 1e-9) + 1)]


def number_label(value: float) -> str:
    """A short label: integers without a decimal point, others with as few digits as needed."""
    return f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:g}"


def _hline(canvas: np.ndarray, y: int, x0: int, x1: int) -> None:
    canvas[y, max(x0, 0) : max(x1, 0)] = INK


def _vline(canvas: np.ndarray, x: int, y0: int, y1: int) -> None:
    canvas[max(y0, 0) : max(y1, 0), x] = INK


def framed_spectrogram(
    plot: np.ndarray, bar: np.ndarray, *, seconds: float, top_hz: float, db_range: float
) -> np.ndarray:
    """A spectrogram picture with its axes: the plot, time ticks (s) below it, frequency ticks
    (kHz) on its left, and on its right the colour bar with dB ticks (0 dB at its top).

    Args:
        plot: [height, width, 3] uint8 spectrogram, row 0 = `top_hz`, the last row = 0 Hz.
        bar: [height, bar_width, 3] uint8 colour bar, its top row the colour of 0 dB, its last
            row the colour of -`db_range` dB.
        seconds: the time the plot's width spans (column x starts at x / width * seconds).
        top_hz: the frequency of the plot's first row.
        db_range: the dB the colour bar spans.

    Returns:
        [height + top + bottom margins, left margin + width + colour bar + labels, 3] uint8.
    """
    height, width = plot.shape[:2]
    freqs = tick_values(top_hz / 1000.0, max(2, height // 40), _FREQ_STEPS_KHZ)
    times = tick_values(seconds, max(2, width // 64), _TIME_STEPS)
    levels = tick_values(db_range, max(2, height // 40), _DB_STEPS)
    freq_labels = [number_label(f) for f in freqs]
    db_labels = [number_label(-d) for d in levels]
    left = max(text_width("kHz"), *(text_width(t) for t in freq_labels)) + TICK + 6
    top, bottom = GLYPH_HEIGHT + 6, TICK + GLYPH_HEIGHT + 6
    bar_x = left + width + _BAR_GAP
    db_width = max(text_width("dB"), *(text_width(t) for t in db_labels))
    right = _BAR_GAP + bar.shape[1] + TICK + 3 + db_width + 4
    canvas = np.full((top + height + bottom, left + width + right, 3), PAPER, dtype=np.uint8)
    canvas[top : top + height, left : left + width] = plot
    canvas[top : top + height, bar_x : bar_x + bar.shape[1]] = bar
    draw_text(canvas, left - TICK - 3 - text_width("kHz"), 2, "kHz")
    for khz, label in zip(freqs, freq_labels, strict=True):
        y = top + round((height - 1) * (1.0 - khz * 1000.0 / top_hz)) if top_hz > 0 else top + height - 1
        _hline(canvas, y, left - TICK, left)
        draw_text(canvas, left - TICK - 3 - text_width(label), y - GLYPH_HEIGHT // 2, label)
    label_y, label_end = top + height + TICK + 2, left
    for t in times:
        x = left + min(round(t / seconds * width), width - 1) if seconds > 0 else left
        _vline(canvas, x, top + height, top + height + TICK)
        label = number_label(t)
        draw_text(canvas, x - text_width(label) // 2, label_y, label)
        label_end = x - text_width(label) // 2 + text_width(label)
    draw_text(canvas, label_end + _ADVANCE, label_y, "s")  # the unit after the last label
    draw_text(canvas, bar_x, 2, "dB")
    tick_x = bar_x + bar.shape[1]
    for db, label in zip(levels, db_labels, strict=True):
        y = top + round((height - 1) * db / db_range)
        _hline(canvas, y, tick_x, tick_x + TICK)
        draw_text(canvas, tick_x + TICK + 3, y - GLYPH_HEIGHT // 2, label)
    return canvas
