"""`m2l.evaluate.chart`: tick values, labels and text drawn into pixel arrays."""

from __future__ import annotations

import numpy as np

from m2l.evaluate.chart import (
    GLYPH_HEIGHT,
    INK,
    SCALE,
    draw_text,
    framed_spectrogram,
    number_label,
    text_width,
    tick_values,
)


def test_ticks_are_round_values_no_more_than_asked():
    assert tick_values(22.05, 6, (1, 2, 5, 10)) == [0, 5, 10, 15, 20]
    assert tick_values(80, 6, (10, 20, 40)) == [0, 20, 40, 60, 80]
    assert tick_values(0.75, 2, (0.1, 0.2, 0.5, 1)) == [0, 0.5]
    assert tick_values(1000, 3, (1, 10)) == [k * 10 for k in range(101)]  # none fits: the largest step
    assert tick_values(0, 5, (1,)) == [0.0]


def test_labels_are_short():
    assert [number_label(v) for v in (0, 5.0, 0.5, -20.0, 1.25)] == ["0", "5", "0.5", "-20", "1.25"]


def test_text_is_drawn_in_the_font_and_cut_at_the_edges():
    canvas = np.zeros((GLYPH_HEIGHT + 4, 40, 3), dtype=np.uint8)
    draw_text(canvas, 2, 2, "1")
    ink = (canvas == INK).all(axis=-1)
    glyph = ink[2 : 2 + GLYPH_HEIGHT : SCALE, 2 : 2 + 3 * SCALE : SCALE].astype(int)
    assert glyph.tolist() == [[0, 1, 0], [1, 1, 0], [0, 1, 0], [0, 1, 0], [1, 1, 1]]
    assert text_width("1") == 3 * SCALE and text_width("-20") == 3 * 4 * SCALE - SCALE
    edge = np.zeros((6, 6, 3), dtype=np.uint8)
    draw_text(edge, -4, -4, "88")  # partly outside: no error, the visible part drawn
    assert (edge == INK).all(axis=-1).any()


def test_the_frame_puts_the_plot_and_the_bar_side_by_side():
    plot = np.full((50, 80, 3), 7, dtype=np.uint8)
    bar = np.full((50, 12, 3), 9, dtype=np.uint8)
    framed = framed_spectrogram(plot, bar, seconds=2.0, top_hz=22050, db_range=80)
    plot_at = np.argwhere((framed == 7).all(axis=-1))
    bar_at = np.argwhere((framed == 9).all(axis=-1))
    assert len(plot_at) == 50 * 80 and len(bar_at) == 50 * 12
    assert plot_at[:, 0].min() == bar_at[:, 0].min()  # same rows
    assert bar_at[:, 1].min() > plot_at[:, 1].max()  # the bar on the right
