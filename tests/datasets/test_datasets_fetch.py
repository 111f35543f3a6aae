"""`m2l data fetch` on fake package trees: splits, manifests, licences, resuming and errors."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from datasets_testing import KLETTRES_LANGUAGES, FakePackages

from m2l.datasets import read_manifest
from m2l.datasets.debian import DebianPackages
from m2l.datasets.excerpts import Excerpt, plan_pieces
from m2l.datasets.fetch import Fetcher
from m2l.datasets.notes import INSTRUMENTS, plan_notes
from m2l.datasets.sources import dep5_file_licences, split_by_language
from m2l.errors import M2LError

MUSIC = {
    "train": {"ufoai-music", "wesnoth-1.16-music", "hedgewars-data"},
    "val": {"supertux-data"},
    "test": {"nexuiz-music"},
}


def _fetcher(data: Path, packages: FakePackages, **options: object) -> Fetcher:
    """A fetcher on fake packages; notes: GM programs 1 and 41 (those of the fake soundfont) x 4 pitches."""
    small = [n for n in plan_notes(instruments=[INSTRUMENTS[0], INSTRUMENTS[10]]) if 60 <= n.pitch <= 63]
    return Fetcher(data, packages=packages, quiet=True, soundfonts=(), note_plan=small, **options)


def _manifests(data: Path, name: str) -> dict[str, list[dict]]:
    return {
        split: read_manifest(data / name / split / "manifest.jsonl") for split in ("train", "val", "test")
    }


def test_music_is_split_by_package_with_manifests(tmp_path: Path, fake_packages: FakePackages) -> None:
    data = tmp_path / "data"
    with pytest.warns(UserWarning) as record:
        summary = _fetcher(data, fake_packages).run(["music"])
    assert sorted(str(w.message) for w in record) == [
        "nexuiz-music: 1 file(s) that soundfile cannot read were left out: zz.wav",  # a corrupt member
        "wesnoth-1.16-music: 1 file(s) that soundfile cannot read were left out: broken.ogg",
    ]
    manifests = _manifests(data, "music")
    for split, packages in MUSIC.items():
        assert {e["source"] for e in manifests[split]} == packages
        assert summary["music"][split]["files"] == len(manifests[split])
    paths = sorted(e["path"] for m in manifests.values() for e in m)
    assert paths == [
        "music/test/nexuiz-music/track1.ogg",
        "music/train/hedgewars-data/alias.ogg",
        "music/train/hedgewars-data/theme.ogg",
        "music/train/ufoai-music/a.ogg",
        "music/train/ufoai-music/b.ogg",
        "music/train/wesnoth-1.16-music/battle.ogg",
        "music/train/wesnoth-1.16-music/calm.flac",
        "music/val/supertux-data/forest/woods.ogg",
    ]
    on_disk = sorted(
        p.relative_to(data).as_posix()
        for p in (data / "music").rglob("*")
        if p.is_file() and p.name != "manifest.jsonl"
    )
    assert on_disk == paths  # the unreadable file and non-music files were not copied
    assert not any(p.is_symlink() for p in (data / "music").rglob("*"))  # a symlink's target is copied
    by_path = {e["path"]: e for m in manifests.values() for e in m}
    calm = by_path["music/train/wesnoth-1.16-music/calm.flac"]
    assert (calm["sample_rate"], calm["channels"]) == (22050, 2) and calm["duration"] == pytest.approx(0.2)
    assert by_path["music/val/supertux-data/forest/woods.ogg"]["sample_rate"] == 44100
    assert by_path["music/train/ufoai-music/b.ogg"]["licence"] == "CC-BY-3.0"  # per-file debian/copyright
    assert by_path["music/train/ufoai-music/a.ogg"]["licence"] == "GPL-2+"
    assert by_path["music/train/hedgewars-data/theme.ogg"]["licence"] == "GPL-2"
    for entry in by_path.values():
        assert sf.info(str(data / entry["path"])).frames > 0
    assert not list((data / ".m2l" / "cache" / "work").iterdir())  # unpacked trees are removed


def test_speech_is_split_by_language(tmp_path: Path, fake_packages: FakePackages) -> None:
    data = tmp_path / "data"
    _fetcher(data, fake_packages).run(["speech"])
    manifests = _manifests(data, "speech")
    language = {}
    for split, entries in manifests.items():
        for e in entries:
            if e["source"] == "klettres-data":
                lang = e["path"].split("/")[3].split("_")[0]
                assert language.setdefault(lang, split) == split  # one language, one split
    assert set(language) == {lang.split("_")[0] for lang in KLETTRES_LANGUAGES}
    assert set(language.values()) == {"train", "val", "test"}
    assert [e["path"] for e in manifests["test"] if e["source"] == "alsa-utils"] == [
        "speech/test/alsa-utils/Front_Center.wav"
    ]
    assert not (data / "music").exists() and not (data / "notes").exists()


def test_split_by_language_rule() -> None:
    paths = [
        f"{lang}/alpha/{i}.ogg"
        for n, lang in enumerate(["de", "en", "en_GB", "fr", "it", "ml", "nl", "ru", "uk", "es", "cs", "da"])
        for i in range(3 + 7 * n % 11)
    ]
    splits = split_by_language(paths)
    assert splits == split_by_language(list(reversed(paths)))
    assert splits["en/alpha/0.ogg"] == splits["en_GB/alpha/0.ogg"]
    shares = Counter(splits.values())
    for held in ("val", "test"):
        assert 0 < shares[held] <= 0.15 * len(paths)
    assert shares["train"] >= 0.7 * len(paths)


def test_dep5_explicit_files_only() -> None:
    text = (
        "Files: *\nLicense: GPL-2+\n\nFiles: data/music/*\nLicense: GPL-3\n\n"
        "Files: base/music/x.ogg\n base/music/y.ogg\nCopyright: a\nLicense: CC-BY-SA-3.0\n Text.\n\n"
        "Files: other/y.ogg\nLicense: MIT\n"
    )
    assert dep5_file_licences(text) == {
        ("music", "x.ogg"): "CC-BY-SA-3.0",
        ("music", "y.ogg"): "CC-BY-SA-3.0",
        ("other", "y.ogg"): "MIT",
    }


def test_second_run_does_nothing_and_force_redoes(tmp_path: Path, fake_packages: FakePackages) -> None:
    data = tmp_path / "data"
    with pytest.warns(UserWarning):
        first = _fetcher(data, fake_packages).run(["music", "speech"])
    music = sorted(MUSIC["train"] | MUSIC["val"] | MUSIC["test"])
    assert fake_packages.extracted == Counter(music + ["klettres-data", "alsa-utils"])
    markers = sorted(p.name for p in (data / ".m2l" / "parts").iterdir())
    assert markers == sorted(
        [f"music.{p}.json" for p in music] + ["speech.klettres-data.json", "speech.alsa-utils.json"]
    )
    stamps = {p: p.stat().st_mtime_ns for p in data.rglob("*") if p.is_file() and p.name != "lock"}
    again = _fetcher(data, fake_packages).run(["music", "speech"])
    assert again == first
    assert sum(fake_packages.extracted.values()) == 7  # nothing fetched again
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rewritten

    with pytest.warns(UserWarning):
        _fetcher(data, fake_packages, force=True).run(["music"])
    assert fake_packages.extracted["ufoai-music"] == 2 and fake_packages.extracted["klettres-data"] == 1


def test_interrupted_part_is_rebuilt_from_scratch(tmp_path: Path, fake_packages: FakePackages) -> None:
    data = tmp_path / "data"
    _fetcher(data, fake_packages).run(["speech"])
    (data / ".m2l" / "parts" / "speech.alsa-utils.json").unlink()  # as if killed before the marker
    stale = data / "speech" / "test" / "alsa-utils" / "half-written.wav"
    stale.write_bytes(b"junk")
    (data / ".m2l" / "cache" / "work" / "tmpleftover").mkdir()
    _fetcher(data, fake_packages).run(["speech"])
    assert fake_packages.extracted == Counter({"klettres-data": 1, "alsa-utils": 2})
    assert not stale.exists() and not (data / ".m2l" / "cache" / "work" / "tmpleftover").exists()
    assert (data / ".m2l" / "parts" / "speech.alsa-utils.json").is_file()


def test_changed_recipe_rebuilds_the_part(tmp_path: Path, fake_packages: FakePackages) -> None:
    data = tmp_path / "data"
    _fetcher(data, fake_packages).run(["speech"])
    marker = data / ".m2l" / "parts" / "speech.alsa-utils.json"
    content = json.loads(marker.read_text())
    content["recipe"]["version"] = -1
    marker.write_text(json.dumps(content))
    _fetcher(data, fake_packages).run(["speech"])
    assert fake_packages.extracted["alsa-utils"] == 2 and fake_packages.extracted["klettres-data"] == 1


@pytest.mark.parametrize("tamper", ["no entries", "entry without path", "path outside a split"])
def test_tampered_marker_rebuilds_the_part(tmp_path: Path, fake_packages: FakePackages, tamper: str) -> None:
    data = tmp_path / "data"
    first = _fetcher(data, fake_packages).run(["speech"])
    marker = data / ".m2l" / "parts" / "speech.alsa-utils.json"
    content = json.loads(marker.read_text())
    if tamper == "no entries":
        del content["entries"]
    elif tamper == "entry without path":
        del content["entries"][0]["path"]
    else:
        content["entries"][0]["path"] = "speech"
    marker.write_text(json.dumps(content))
    assert _fetcher(data, fake_packages).run(["speech"]) == first
    assert fake_packages.extracted["alsa-utils"] == 2 and fake_packages.extracted["klettres-data"] == 1


def test_disk_full_and_busy_are_one_line(tmp_path: Path, fake_packages: FakePackages) -> None:
    data = tmp_path / "data"
    fake_packages.fail["klettres-data"] = OSError(errno.ENOSPC, "No space left on device", str(data / "x"))
    with pytest.raises(M2LError, match=r"x: disk full \(no space left on device\)"):
        _fetcher(data, fake_packages).run(["speech"])
    import fcntl

    with open(data / ".m2l" / "lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with pytest.raises(M2LError, match="another `m2l data fetch` is writing here"):
            _fetcher(data, fake_packages).run(["speech"])


def _tool(folder: Path, name: str, script: str) -> None:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.mark.parametrize(
    "apt_cache, apt_get, message",
    [
        (
            "echo 'N: Unable to locate package nope' >&2; echo 'E: No packages found' >&2; exit 100",
            "exit 0",
            "package nope is not available from apt",
        ),
        (
            "echo 'Package: nope'; echo 'Size: 10'",
            "echo 'E: Unable to locate package nope' >&2; exit 100",
            "package nope is not available from apt",
        ),
        (
            "echo 'Package: nope'; echo 'Size: 10'",
            "echo 'E: Write error - write (28: No space left on device)' >&2; exit 100",
            "disk full",
        ),
        ("echo 'Package: nope'; echo 'Size: 1000000000000000'", "exit 0", "not enough disk space for nope"),
    ],
)
def test_debian_package_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, apt_cache: str, apt_get: str, message: str
) -> None:
    bin_dir = tmp_path / "bin"
    _tool(bin_dir, "apt-cache", apt_cache)
    _tool(bin_dir, "apt-get", apt_get)
    _tool(bin_dir, "dpkg-deb", "exit 0")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/bin{os.pathsep}/usr/bin")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(M2LError, match=message) as info:
        DebianPackages().extract("nope", work)
    assert "\n" not in str(info.value)


def test_notes_part_renders_labelled_notes(tmp_path: Path, fake_packages: FakePackages) -> None:
    pytest.importorskip("tinysoundfont", reason="tinysoundfont (optional extra m2l[data]) is not installed")
    data = tmp_path / "data"
    fetcher = _fetcher(data, fake_packages)
    summary = fetcher.run(["notes"])
    entries = read_manifest(data / "notes" / "manifest.jsonl")
    assert len(entries) == len(fetcher.note_plan) == 24
    assert {e["split"] for e in entries} == {"train", "val", "test"}
    assert summary["notes"]["train"]["files"] == 16
    for e in entries:
        assert e["path"].startswith(f"notes/{e['split']}/")
        assert (e["duration"], e["sample_rate"], e["channels"]) == (2.0, 44100, 1)
        assert e["source"] == "fluid-soundfont-gm" and e["licence"] == "MIT"
        audio, rate = sf.read(data / e["path"])
        assert audio.shape == (88200,) and abs(audio).max() > 0.01
    assert (data / ".m2l" / "cache" / "FluidR3_GM.sf2").is_file()  # the soundfont is kept for reruns
    fetcher.run(["notes"])
    assert fake_packages.extracted == Counter({"fluid-soundfont-gm": 1})


def test_notes_without_renderer_is_one_line(
    tmp_path: Path, fake_packages: FakePackages, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tinysoundfont", None)
    with pytest.raises(M2LError, match="rendering notes needs tinysoundfont"):
        _fetcher(tmp_path / "data", fake_packages).run(["notes"])
    assert not fake_packages.extracted  # refused before fetching the soundfont


def _small_excerpts() -> list[Excerpt]:
    """2 + 1 + 1 pieces x 2 excerpts of 3 s, played by the fake soundfont's programs 1 and 41."""
    pieces = plan_pieces({"train": 2, "val": 1, "test": 1})
    return [Excerpt(replace(p, programs=(1, 41, 1), drums=True), k, 3.0) for p in pieces for k in range(2)]


def test_excerpts_part_renders_labelled_excerpts(tmp_path: Path, fake_packages: FakePackages) -> None:
    pytest.importorskip("tinysoundfont", reason="tinysoundfont (optional extra m2l[data]) is not installed")
    data = tmp_path / "data"
    fetcher = _fetcher(data, fake_packages, excerpt_plan=_small_excerpts())
    summary = fetcher.run(["excerpts"])
    entries = read_manifest(data / "excerpts" / "manifest.jsonl")
    assert len(entries) == 8 and summary["excerpts"]["train"]["files"] == 4
    for e in entries:
        assert e["path"].startswith(f"excerpts/{e['split']}/{e['piece']}/")
        assert (e["duration"], e["sample_rate"], e["channels"]) == (3.0, 44100, 1)
        audio, rate = sf.read(data / e["path"])
        assert audio.shape == (3 * 44100,) and np.sqrt(np.mean(audio**2)) > 0.01
    assert {e["split"] for e in entries} == {"train", "val", "test"}
    fetcher.run(["excerpts", "notes"])  # excerpts are done; notes reuse the cached soundfont
    assert fake_packages.extracted == Counter({"fluid-soundfont-gm": 1})
    marker = data / ".m2l" / "parts" / "excerpts.json"
    before = marker.stat().st_mtime_ns
    _fetcher(data, fake_packages, excerpt_plan=_small_excerpts()[:6]).run(["excerpts"])  # new recipe
    assert marker.stat().st_mtime_ns != before
    assert len(read_manifest(data / "excerpts" / "manifest.jsonl")) == 6


def test_excerpts_without_renderer_is_one_line(
    tmp_path: Path, fake_packages: FakePackages, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "tinysoundfont", None)
    with pytest.raises(M2LError, match="rendering excerpts needs tinysoundfont"):
        _fetcher(tmp_path / "data", fake_packages).run(["excerpts"])
    assert not fake_packages.extracted
