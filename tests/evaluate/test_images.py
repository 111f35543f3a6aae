"""Tests for m2l.evaluate.images: hand-made PNG encoding and spectrogram pictures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from eval_testing import luminance, read_png
from m2l_testing import music_like, sine_tensor

from m2l.errors import M2LError
from m2l.evaluate.images import (
    PNG_SIGNATURE,
    apply_colormap,
    colour_bar,
    spectrogram_peak,
    spectrogram_png,
    write_png,
)

RATE = 8000


def test_write_png_round_trips_pixels(tmp_path: Path) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    out = write_png(tmp_path / "sub" / "x.png", rgb)
    assert out == tmp_path / "sub" / "x.png"
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    width, height, pixels = read_png(out)
    assert (width, height) == (7, 5)
    np.testing.assert_array_equal(pixels, rgb)
    assert [p.name for p in out.parent.iterdir()] == ["x.png"]  # no temp file left behind


def test_write_png_overwrites_and_rejects_bad_arrays(tmp_path: Path) -> None:
    path = tmp_path / "y.png"
    write_png(path, np.zeros((2, 2, 3), dtype=np.uint8))
    write_png(path, np.full((3, 1, 3), 9, dtype=np.uint8))
    assert read_png(path)[:2] == (1, 3)
    for bad in (
        np.zeros((2, 2, 3), dtype=np.float32),
        np.zeros((2, 2), dtype=np.uint8),
        np.zeros((0, 2, 3), dtype=np.uint8),
    ):
        with pytest.raises(M2LError):
            write_png(tmp_path / "bad.png", bad)
    assert not (tmp_path / "bad.png").exists()


def test_colormap_is_monotonic_in_luminance() -> None:
    colours = apply_colormap(np.linspace(0.0, 1.0, 257))
    assert colours.shape == (257, 3) and colours.dtype == np.uint8
    assert np.all(np.diff(luminance(colours)) > 0)
    np.testing.assert_array_equal(apply_colormap(np.array([-1.0, np.nan])), apply_colormap(np.zeros(2)))


def test_pure_tone_is_brightest_at_its_frequency_row(tmp_path: Path) -> None:
    n_fft, hop, bin_index = 256, 128, 32  # 32 * 8000 / 256 = 1000 Hz, exactly on a bin
    path = tmp_path / "tone.png"
    returned = spectrogram_png(
        sine_tensor(1000.0, samples=2000, rate=RATE), path, sample_rate=RATE, n_fft=n_fft, hop=hop
    )
    width, height, pixels = read_png(path)
    assert (height, width) == (n_fft // 2 + 1, 1 + math.ceil((2000 - n_fft) / hop))
    np.testing.assert_array_equal(pixels, returned)
    row_brightness = luminance(pixels).mean(axis=1)
    assert int(np.argmax(row_brightness)) == (n_fft // 2) - bin_index  # low frequencies at the bottom


def test_height_resamples_frequency_axis(tmp_path: Path) -> None:
    path = tmp_path / "tall.png"
    spectrogram_png(
        sine_tensor(1000.0, samples=2000, rate=RATE), path, sample_rate=RATE, n_fft=256, hop=128, height=64
    )
    width, height, pixels = read_png(path)
    assert height == 64
    expected = (1 - 1000.0 / (RATE / 2)) * (height - 1)  # 47.25
    assert abs(int(np.argmax(luminance(pixels).mean(axis=1))) - expected) <= 1


def test_short_silent_and_stereo_inputs(tmp_path: Path) -> None:
    spectrogram_png(torch.zeros(10), tmp_path / "s.png", sample_rate=RATE, n_fft=64, hop=16)
    _, height, pixels = read_png(tmp_path / "s.png")
    assert height == 33 and pixels.shape[1] == 1
    assert np.all(pixels == apply_colormap(np.zeros(1))[0])  # silence is the darkest colour
    stereo = sine_tensor(1000.0, samples=300, rate=RATE, channels=2).float()
    rgb = spectrogram_png(stereo, tmp_path / "st.png", sample_rate=RATE, n_fft=256, hop=64)
    assert rgb.shape == (129, 2, 3)


def test_spectrogram_rejects_bad_input(tmp_path: Path) -> None:
    with pytest.raises(M2LError, match="expected real audio"):
        spectrogram_png(torch.zeros(1, 2, 3), tmp_path / "a.png", sample_rate=RATE)
    with pytest.raises(M2LError, match="NaN"):
        spectrogram_png(torch.tensor([0.0, float("nan")]), tmp_path / "a.png", sample_rate=RATE)
    with pytest.raises(M2LError, match="db_range"):
        spectrogram_png(torch.zeros(4), tmp_path / "a.png", sample_rate=RATE, db_range=0)
    assert not (tmp_path / "a.png").exists()


def test_a_shared_reference_draws_quieter_audio_darker(tmp_path: Path) -> None:
    loud = music_like(1.0)
    quiet = loud * 0.01  # 40 dB quieter
    options = {"sample_rate": 44100, "height": 128}
    own = spectrogram_png(loud, tmp_path / "loud.png", **options)
    alone = spectrogram_png(quiet, tmp_path / "alone.png", **options)  # its own loudest bin as 0 dB
    assert abs(luminance(alone).mean() - luminance(own).mean()) < 1.0  # looks as loud: misleading
    peak = spectrogram_peak(loud)
    shared = spectrogram_png(quiet, tmp_path / "shared.png", reference_peak=peak, **options)
    assert luminance(shared).mean() < luminance(own).mean() - 40  # one scale: visibly darker
    again = spectrogram_png(loud, tmp_path / "ref.png", reference_peak=peak, **options)
    np.testing.assert_array_equal(again, own)  # its own peak is the default reference
    # 40 dB down on an 80 dB scale: the quiet picture's brightest level is about half way up
    half_way = luminance(apply_colormap(np.array([0.4, 0.6])))
    assert half_way[0] <= luminance(shared).max() <= half_way[1]


def test_axes_frame_the_same_plot_with_ticks_labels_and_a_colour_bar(tmp_path: Path) -> None:
    x = sine_tensor(1000.0, 2.0, rate=RATE)
    options = {"sample_rate": RATE, "n_fft": 256, "hop": 128, "height": 100, "width": 200}
    plot = spectrogram_png(x, tmp_path / "plot.png", **options)
    framed = spectrogram_png(x, tmp_path / "framed.png", axes=True, **options)
    width, height, pixels = read_png(tmp_path / "framed.png")
    np.testing.assert_array_equal(pixels, framed)
    assert plot.shape == (100, 200, 3) and height > 100 and width > 200 + 12
    rows, cols = np.where((framed == plot[0, 0]).all(axis=-1))  # find the plot in the picture
    matches = [
        (r, c)
        for r, c in zip(rows, cols, strict=True)
        if r + 100 <= height and c + 200 <= width and np.array_equal(framed[r : r + 100, c : c + 200], plot)
    ]
    assert len(matches) == 1
    top, left = matches[0]
    bar = colour_bar(100)
    right = framed[top : top + 100, left + 200 :]
    span = bar.shape[1]
    bar_cols = [c for c in range(right.shape[1] - span) if np.array_equal(right[:, c : c + span], bar)]
    assert bar_cols, "no colour bar right of the plot"
    assert np.all(np.diff(luminance(bar[:, 0])) <= 0)  # 0 dB (brightest) at the top
    ink = (framed == np.array([40, 40, 40], dtype=np.uint8)).all(axis=-1)
    assert ink[top + 100 :, left : left + 200].any()  # time ticks and labels below the plot
    assert ink[top : top + 100, :left].any()  # frequency ticks and labels left of it
    assert ink[:, left + 200 + bar_cols[0] + bar.shape[1] :].any()  # dB labels right of the bar
