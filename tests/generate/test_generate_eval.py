"""`m2l gen eval` with a tiny generator and the micro codec on short synthetic audio: the results'
sections, seeded numbers, crops that are the test audio, generated clips that are `m2l generate`'s,
the reference latents doing what they claim, one-line refusals, and the listening page in
headless Chromium (skipped without Chromium)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import torch
from browser_testing import page_state
from cli_testing import run
from eval_testing import write_items
from generate_testing import codec_checkpoint, generator_file
from m2l_testing import assert_one_line_error

from m2l.evaluate.items import ItemSource
from m2l.generate.evaluate import (
    CONTINUATIONS,
    SETS,
    closed_gap,
    gaussian_latents,
    repeat_tail,
    shuffle_frames,
    take_crops,
    targets,
)

RATE = 44100
OPTIONS = ("--clips", "3", "--seconds", "2", "--prompt-seconds", "1", "--steps", "2", "--audio-items", "2")


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Any:
    """One torch thread for the module: several tests compare numbers of two runs exactly, and
    with two threads this micro codec's sums may be added in another order from run to run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A generator file with its micro codec checkpoint, and a folder of two 3 s items."""
    folder = tmp_path_factory.mktemp("geneval")
    model = generator_file(folder / "g.safetensors", codec_checkpoint(folder))
    write_items(folder / "data", seconds=3.0)
    return {"model": model, "data": folder / "data", "root": folder}


def _gen_eval(capsys, setup: dict[str, Path], out: Path, *options: str) -> tuple[int, str, str]:
    args = ("gen", "eval", setup["data"], "-o", out, "--model", setup["model"], "-q")
    return run(capsys, *args, *(options or OPTIONS))


@pytest.fixture(scope="module")
def report(setup: dict[str, Path]) -> Path:
    """One evaluation's folder (made once for the tests that only read it)."""
    from m2l.cli import main

    out = setup["root"] / "made"
    model, data = str(setup["model"]), str(setup["data"])
    assert main(["gen", "eval", data, "-o", str(out), "--model", model, "-q", *OPTIONS]) == 0
    return out


def _numbers(results: dict[str, Any]) -> dict[str, Any]:
    return {k: results[k] for k in ("fad", "continuation", "clips", "targets")}


def test_results_hold_every_section_with_finite_numbers(report):
    results = json.loads((report / "results.json").read_text())
    assert results["format"] == "m2l-gen-eval" and results["version"] == 1
    assert results["command"].startswith("m2l gen eval ") and "--clips 3" in results["command"]
    assert results["generator"]["config"] == "gen-tiny"
    assert results["codec"]["version"] == "v1" and results["codec"]["sample_rate"] == RATE
    assert set(results["fad"]) == {*SETS, "closed_gap"}
    for name in SETS:
        assert math.isfinite(results["fad"][name]) and results["fad"][name] >= 0
    means = results["continuation"]["mel_distance"]
    assert set(means) == set(CONTINUATIONS) and all(math.isfinite(v) for v in means.values())
    assert len(results["clips"]) == 3
    for clip in results["clips"]:
        assert set(clip["mel_distance"]) == set(CONTINUATIONS)
        assert 0 <= clip["start_seconds"] <= 1.0  # a 2 s crop of a 3 s file
    mean_repeat = sum(c["mel_distance"]["repeat"] for c in results["clips"]) / 3
    assert means["repeat"] == pytest.approx(mean_repeat)
    assert set(results["targets"]) == {
        "fad_halfway",
        "fad_within_10_percent_of_floor",
        "continuation_beats_repeat",
    }
    assert results["targets"] == targets(results["fad"], means)


def test_audio_files_are_the_crops_and_the_generators_clips(capsys, setup, report, tmp_path):
    results = json.loads((report / "results.json").read_text())
    media = results["media"]
    assert set(media) == {*SETS, "real", "prompt", "continued"}
    assert all(len(paths) == 2 for paths in media.values())
    for name in ("real", "floor", "baseline", "shuffled", "generated", "continued"):
        assert sf.info(report / media[name][0]).frames == 2 * RATE
    assert sf.info(report / media["prompt"][0]).frames == RATE
    clip = results["clips"][1]  # the real clip is the test audio at the recorded start
    source, _ = sf.read(setup["data"] / clip["name"], dtype="float32", always_2d=True)
    start = round(clip["start_seconds"] * RATE)
    real, _ = sf.read(report / media["real"][1], dtype="float32")
    assert real == pytest.approx(source[start : start + 2 * RATE].mean(axis=1), abs=1e-4)
    code, _, err = run(  # generated clip i is `m2l generate --seed i`
        capsys,
        "generate",
        "-o",
        tmp_path / "g.wav",
        "--model",
        setup["model"],
        "--steps",
        "2",
        "--seconds",
        "2",
    )
    assert code == 0, err
    made, _ = sf.read(report / media["generated"][0], dtype="float32")
    alone, _ = sf.read(tmp_path / "g.wav", dtype="float32")
    assert made == pytest.approx(alone, abs=1e-4) and abs(made).max() > 0


def test_the_same_seed_gives_the_same_numbers(capsys, setup, report, tmp_path):
    first = _numbers(json.loads((report / "results.json").read_text()))
    code, stdout, err = _gen_eval(capsys, setup, tmp_path / "again")
    assert code == 0, err
    assert "FAD generated" in stdout and "report.html" in stdout
    assert _numbers(json.loads((tmp_path / "again" / "results.json").read_text())) == first
    code, _, err = _gen_eval(capsys, setup, tmp_path / "other", *OPTIONS, "--seed", "1")
    assert code == 0, err
    other = _numbers(json.loads((tmp_path / "other" / "results.json").read_text()))
    assert other["fad"] != first["fad"] and other["clips"] != first["clips"]


def test_shuffled_latents_keep_every_frame_vector():
    latents = torch.randn(3, 8, 20, generator=torch.Generator().manual_seed(0))  # [N, D, T]
    shuffled = shuffle_frames(latents, torch.Generator().manual_seed(1))
    assert shuffled.shape == latents.shape and not torch.equal(shuffled, latents)
    for before, after in zip(latents, shuffled, strict=True):  # the same frames, in another order
        key = lambda frames: sorted(map(tuple, frames.T.tolist()))  # noqa: E731
        assert key(before) == key(after)
        assert torch.equal(before.sort(dim=-1).values, after.sort(dim=-1).values)


def test_gaussian_latents_have_the_given_mean_and_std():
    mean, std = torch.linspace(-2.0, 2.0, 16), torch.linspace(0.1, 3.0, 16)
    z = gaussian_latents(mean, std, (40, 16, 250), torch.Generator().manual_seed(0))  # [N, D, T]
    values = z.transpose(0, 1).reshape(16, -1)  # [D, N * T]
    assert values.mean(dim=1) == pytest.approx(mean.tolist(), abs=0.05)
    assert values.std(dim=1) / std == pytest.approx([1.0] * 16, abs=0.02)


def test_repeating_the_prompt_takes_its_tail_or_tiles_it():
    prompt = torch.arange(1.0, 6.0)  # [5]
    assert repeat_tail(prompt, 3).tolist() == [3.0, 4.0, 5.0]
    assert repeat_tail(prompt, 12).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0] * 2 + [1.0, 2.0]


def test_closed_gap_and_targets():
    fads = {"floor": 1.0, "baseline": 5.0, "generated": 3.0}
    assert closed_gap(fads) == pytest.approx(0.5)
    assert closed_gap({**fads, "baseline": 1.0}) is None  # no gap to close
    assert targets(fads, {"continuation": 0.4, "repeat": 0.5}) == {
        "fad_halfway": True,
        "fad_within_10_percent_of_floor": False,
        "continuation_beats_repeat": True,
    }
    met = targets({**fads, "generated": 1.05}, {"continuation": 0.6, "repeat": 0.5})
    assert met["fad_within_10_percent_of_floor"] is True and met["continuation_beats_repeat"] is False
    assert targets({}, {})["fad_halfway"] is None


def test_crops_are_seeded_and_skip_short_files(tmp_path):
    short, long = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(short, torch.ones(RATE // 2).numpy(), RATE)
    sf.write(long, torch.linspace(-1, 1, 3 * RATE).numpy(), RATE)
    sources = [ItemSource("a.wav", short), ItemSource("b.wav", long)]
    crops = take_crops(sources, RATE, 1.0, 4, torch.Generator().manual_seed(0))
    again = take_crops(sources, RATE, 1.0, 4, torch.Generator().manual_seed(0))
    assert [c.start for c in crops] == [c.start for c in again]
    assert {c.name for c in crops} == {"b.wav"} and len({c.start for c in crops}) == 4
    whole = torch.from_numpy(sf.read(long, dtype="float32")[0])
    for crop in crops:
        assert crop.wave.shape == (RATE,)
        assert torch.equal(crop.wave, whole[crop.start : crop.start + RATE])


def test_refusals_are_one_line(capsys, setup, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep me")
    code, _, err = _gen_eval(capsys, setup, out)
    assert code == 1
    assert_one_line_error(err, str(out), "not empty", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    code, _, err = _gen_eval(capsys, setup, tmp_path / "x", "--seconds", "2", "--prompt-seconds", "2")
    assert code == 1
    assert_one_line_error(err, "--prompt-seconds 2", "shorter than --seconds 2")
    (tmp_path / "empty").mkdir()
    code, _, err = run(
        capsys, "gen", "eval", tmp_path / "empty", "-o", tmp_path / "x", "--model", setup["model"]
    )
    assert code == 1
    assert_one_line_error(err, str(tmp_path / "empty"), "no audio files found")
    code, _, err = _gen_eval(capsys, setup, tmp_path / "x", *OPTIONS, "--embedding", "nope")
    assert code == 1
    assert_one_line_error(err, "unknown embedding model 'nope'")
    code, _, err = _gen_eval(capsys, setup, tmp_path / "x", "--seconds", "5", "--prompt-seconds", "1")
    assert code == 1
    assert_one_line_error(err, "no audio file", "at least 5 s long")
    assert not (tmp_path / "x").exists()


def test_force_writes_into_a_used_folder(capsys, setup, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    code, _, err = _gen_eval(capsys, setup, out, *OPTIONS, "--clips", "2", "--force")
    assert code == 0, err
    assert json.loads((out / "results.json").read_text())["data"]["clips"] == 2


def test_a_manifest_gives_the_crops_of_the_folder(capsys, setup, report, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    paths = sorted(p.relative_to(setup["data"]).as_posix() for p in setup["data"].rglob("*.*"))
    manifest.write_text("".join(json.dumps({"path": str(setup["data"] / p)}) + "\n" for p in paths))
    code, _, err = run(
        capsys, "gen", "eval", manifest, "-o", tmp_path / "out", "--model", setup["model"], "-q", *OPTIONS
    )
    assert code == 0, err
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["data"]["kind"] == "manifest"
    folder = json.loads((report / "results.json").read_text())
    starts = lambda r: [c["start_seconds"] for c in r["clips"]]  # noqa: E731
    assert starts(results) == starts(folder) and results["fad"] == folder["fad"]


PAGE = """fad: Array.from(document.querySelectorAll('#fad tbody tr.fad-row'), r => r.dataset.set),
  continuation: Array.from(document.querySelectorAll('#continuation tbody tr'), r => r.dataset.estimate),"""


def test_listening_page_in_headless_chromium(report, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(report, moved)  # the links are relative
    state = page_state(moved / "report.html", PAGE, tmp_path / "profile")
    assert state["ready"] == "complete"
    assert state["fad"] == list(SETS) and state["continuation"] == list(CONTINUATIONS)
    assert state["images"] == []
    seconds = {"prompt": 1.0}
    assert len(state["audios"]) == 2 * (1 + 3 + 4)  # generated; prompt, continued, real; references
    for audio in state["audios"]:
        assert audio["error"] is None and audio["state"] >= 1, audio
        kind = audio["src"].split("/")[-1].rsplit("_", 1)[0]
        assert audio["duration"] == pytest.approx(seconds.get(kind, 2.0), abs=0.01), audio


def test_a_reference_adds_the_train_floor_and_changes_nothing_else(capsys, setup, report, tmp_path):
    out = tmp_path / "with-reference"
    code, stdout, err = _gen_eval(capsys, setup, out, *OPTIONS, "--reference-audio", str(setup["data"]))
    assert code == 0, err
    assert "train_floor" in stdout
    results = json.loads((out / "results.json").read_text())
    assert math.isfinite(results["fad"]["train_floor"]) and results["fad"]["train_floor"] >= 0
    assert results["data"]["reference"] == str(setup["data"])
    assert "--reference-audio" in results["command"]
    assert len(results["media"]["train_floor"]) == 2
    without = json.loads((report / "results.json").read_text())
    assert {k: v for k, v in results["fad"].items() if k != "train_floor"} == without["fad"]
    assert "train_floor" in (out / "report.html").read_text()
    assert "train_floor" not in (report / "report.html").read_text()
