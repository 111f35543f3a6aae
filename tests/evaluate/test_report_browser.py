"""The `m2l eval` report in a real browser (headless Chromium, `browser_testing`): the metric rows,
the spectrograms shown unsquashed and every audio player loaded. Skips when no Chromium is
installed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from browser_testing import page_state
from eval_testing import write_items

from m2l.cli import main
from m2l.evaluate.run import SPECTROGRAM_HEIGHT, SPECTROGRAM_WIDTH

ROWS = """rows: Array.from(document.querySelectorAll('#metrics tbody tr.metric-row'),
                 r => [r.dataset.model, r.dataset.setting]),"""


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report of two untrained tiny models on two 1 s items, moved after writing (links are relative)."""
    root = tmp_path_factory.mktemp("browser")
    write_items(root / "data", seconds=1.0)
    code = main(
        [
            "eval",
            "--model",
            "m2l-v1-tiny",
            "--model",
            "v2=m2l-v2-tiny",
            "--data",
            str(root / "data"),
            "--out",
            str(root / "made"),
            "--sigma-cond",
            "0.2,0.4",
            "--audio-items",
            "2",
            "--no-visqol",
            "-q",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    moved = root / "moved" / "report"
    moved.parent.mkdir()
    shutil.move(root / "made", moved)
    return moved / "report.html"


def test_report_in_headless_chromium(report, tmp_path):
    state = page_state(report, ROWS, tmp_path / "profile")
    assert state["ready"] == "complete"
    assert state["rows"] == [
        ["m2l-v1-tiny", "steps=1"],
        ["v2", "steps=1 sigma_cond=0.2"],
        ["v2", "steps=1 sigma_cond=0.4"],
    ]
    expected_media = 2 * (1 + 3)  # two items: the original and three reconstructions each
    assert len(state["images"]) == expected_media and len(state["audios"]) == expected_media
    for image in state["images"]:  # the plot, framed by its axes and colour bar
        assert image["complete"] and image["width"] > SPECTROGRAM_WIDTH, image
        assert image["height"] > SPECTROGRAM_HEIGHT, image
        shown = image["shownWidth"] / image["width"], image["shownHeight"] / image["height"]
        assert shown[0] == pytest.approx(shown[1], rel=0.02), image  # scaled, never squashed
    for audio in state["audios"]:
        assert audio["error"] is None and audio["state"] >= 1, audio
        assert audio["duration"] == pytest.approx(1.0, abs=0.01), audio
