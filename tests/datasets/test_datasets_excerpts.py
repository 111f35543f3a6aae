"""The excerpt set: deterministic composition, valid MIDI with its labels audible, splits by piece."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from m2l.datasets import check_entry
from m2l.datasets.excerpts import (
    BASSES,
    CHORD_INSTRUMENTS,
    MELODIES,
    METERS,
    SCALES,
    TEMPO_CLASSES,
    TICKS_PER_QUARTER,
    Excerpt,
    accent,
    compose,
    key_pitch_classes,
    multitrack_midi,
    plan_excerpts,
    plan_pieces,
    render_excerpts,
    triad,
)
from m2l.datasets.notes import DRUM_CHANNEL, read_midi
from m2l.errors import M2LError

SMALL = {"train": 30, "val": 24, "test": 24}


def _meta(data: bytes) -> dict[int, bytes]:
    """The meta events (type -> payload) of the first track of a MIDI file (the conductor)."""
    assert data[:4] == b"MThd"
    pos = 14 + 8
    end = pos + int.from_bytes(data[18:22], "big")
    found = {}
    while pos < end:
        while data[pos] & 0x80:  # delta time (all 0 in the conductor except the end)
            pos += 1
        pos += 1
        assert data[pos] == 0xFF
        kind, size = data[pos + 1], data[pos + 2]
        found[kind] = data[pos + 3 : pos + 3 + size]
        pos += 3 + size
    return found


def _notes(data: bytes) -> list[tuple[float, int, int, int]]:
    """(seconds, channel, pitch, velocity) of every note-on."""
    events, _ = read_midi(data)
    return [(t, m[0] & 0x0F, m[1], m[2]) for t, m in events if m[0] >> 4 == 0x9 and m[2] > 0]


@pytest.fixture(scope="module")
def plan() -> list[Excerpt]:
    return plan_excerpts()


def test_default_plan_sizes_and_labels(plan: list[Excerpt]) -> None:
    assert Counter(e.piece.split for e in plan) == {"train": 576, "val": 192, "test": 192}
    for task in ("key", "tempo_class", "meter"):
        classes = {e.labels()[task] for e in plan}
        assert len(classes) == {"key": 24, "tempo_class": len(TEMPO_CLASSES), "meter": 3}[task]
        for split in ("train", "val", "test"):
            assert {e.labels()[task] for e in plan if e.piece.split == split} == classes, (task, split)
    keys = Counter(e.labels()["key"] for e in plan if e.piece.split == "test")
    assert set(keys.values()) == {8}  # balanced: 2 pieces x 4 excerpts per key


def test_splits_are_by_piece(plan: list[Excerpt]) -> None:
    splits: dict[str, set[str]] = {}
    for e in plan:
        splits.setdefault(e.piece.name, set()).add(e.piece.split)
        assert e.relpath.startswith(f"excerpts/{e.piece.split}/{e.piece.name}/")
    assert all(len(s) == 1 for s in splits.values())
    assert len(splits) == 240 and len({e.relpath for e in plan}) == len(plan)


def test_plan_is_fixed_by_the_seed() -> None:
    assert plan_pieces(SMALL) == plan_pieces(SMALL)
    assert plan_pieces(SMALL) != plan_pieces(SMALL, seed=1)


def test_composition_is_deterministic(plan: list[Excerpt]) -> None:
    for excerpt in plan[:40:7]:
        assert compose(excerpt) == compose(excerpt)
    assert compose(plan[0]) != compose(plan[1])  # sections of a piece differ
    assert compose(plan[0]) != compose(plan[0], seed=7)


@pytest.mark.parametrize("index", range(0, 960, 37))
def test_midi_tempo_meter_length_and_instruments(plan: list[Excerpt], index: int) -> None:
    excerpt = plan[index]
    piece, meter = excerpt.piece, METERS[excerpt.piece.meter]
    data = compose(excerpt)
    assert data[8:10] == b"\x00\x01" and int.from_bytes(data[10:12], "big") == 4 + piece.drums
    meta = _meta(data)
    quarter_bpm = 60e6 / int.from_bytes(meta[0x51], "big")
    assert quarter_bpm / (meter.division / 2) == pytest.approx(piece.tempo_bpm, rel=1e-4)
    assert (meta[0x58][0], 2 ** meta[0x58][1]) == tuple(map(int, piece.meter.split("/")))
    events, length = read_midi(data)
    assert length == pytest.approx(excerpt.seconds, abs=2e-3)
    programs = {m[0] & 0x0F: m[1] + 1 for _, m in events if m[0] >> 4 == 0xC}
    assert programs == {0: piece.programs[0], 1: piece.programs[1], 2: piece.programs[2]} | (
        {DRUM_CHANNEL: 1} if piece.drums else {}
    )
    assert piece.programs[0] in BASSES and piece.programs[1] in CHORD_INSTRUMENTS
    assert piece.programs[2] in MELODIES


@pytest.mark.parametrize("index", range(0, 960, 23))
def test_pitches_are_in_the_key_and_tonic_frames_it(plan: list[Excerpt], index: int) -> None:
    excerpt = plan[index]
    piece = excerpt.piece
    notes = _notes(compose(excerpt))
    pitched = [n for n in notes if n[1] != DRUM_CHANNEL]
    assert {p % 12 for _, _, p, _ in pitched} <= key_pitch_classes(piece.tonic, piece.mode)
    tonic_triad = set(triad(piece.tonic, piece.mode, 0))
    first = {p % 12 for t, c, p, _ in pitched if t == 0 and c == 1}
    assert first and first <= tonic_triad  # the first chord is the tonic triad
    last_start = max(t for t, c, _, _ in pitched if c == 1)
    last_chord = {p % 12 for t, c, p, _ in pitched if c == 1 and t == last_start}
    assert last_chord and last_chord <= tonic_triad  # ... and so is the last
    last_melody = [p for t, c, p, _ in pitched if c == 2][-1]
    assert last_melody % 12 == piece.tonic
    bass_first = [p for t, c, p, _ in pitched if c == 0][0]
    assert bass_first % 12 == piece.tonic


def test_minor_keys_raise_the_leading_tone_only_over_the_dominant() -> None:
    assert triad(9, "minor", 4) == (4, 8, 11)  # E major in A minor
    assert triad(0, "major", 5) == (9, 0, 4)  # A minor in C major: same notes, other harmony
    assert key_pitch_classes(9, "minor") == set(SCALES["major"]) | {8}
    pieces = [p for p in plan_pieces(SMALL) if p.mode == "minor"]
    raised = 0
    for piece in pieces[:6]:
        notes = _notes(compose(Excerpt(piece, 0)))
        raised += any(p % 12 == (piece.tonic + 11) % 12 for _, c, p, _ in notes if c != DRUM_CHANNEL)
    assert raised == 6  # every minor excerpt cadences through V with its leading tone


def test_downbeats_are_accented(plan: list[Excerpt]) -> None:
    for meter in METERS.values():
        assert accent(meter, 0) == max(accent(meter, t) for t in range(0, meter.bar_ticks, 240))
    excerpt = next(e for e in plan if e.piece.drums and e.piece.meter == "3/4")
    piece = excerpt.piece
    bar = 3 * 60 / piece.tempo_bpm
    hats = [(t, v) for t, c, p, v in _notes(compose(excerpt)) if c == DRUM_CHANNEL and p == 42]
    on = [v for t, v in hats if abs(t / bar - round(t / bar)) < 1e-3]
    off = [v for t, v in hats if abs(t / bar - round(t / bar)) >= 1e-3]
    assert np.mean(on) > np.mean(off) + 15


def test_multitrack_midi_orders_and_refuses() -> None:
    data = multitrack_midi(
        [[(0, 0, b"\xff\x51\x03\x07\xa1\x20")], [(5, 2, b"\x90\x3c\x40"), (5, 1, b"\x80\x3c\x40")]], 10
    )
    events, length = read_midi(data)
    assert [m[0] for _, m in events] == [0x80, 0x90] and length == pytest.approx(10 / TICKS_PER_QUARTER / 2)
    with pytest.raises(M2LError, match="outside"):
        multitrack_midi([[(11, 0, b"\x90\x3c\x40")]], 10)
    with pytest.raises(M2LError):
        plan_excerpts(per_piece=0)
    with pytest.raises(M2LError, match="3-60 s"):
        plan_excerpts(seconds=2.0)


class FakeRenderer:
    """Renders a MIDI file as a sum of sines (one per note-on, 0.1 s long): no soundfont needed."""

    sample_rate = 8000

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent

    def render(self, midi: bytes) -> np.ndarray:
        events, length = read_midi(midi)
        out = np.zeros(round(length * self.sample_rate) - 5, dtype=np.float32)  # short: padded back
        if self.silent:
            return out
        t = np.arange(800) / self.sample_rate
        for at, message in events:
            if message[0] >> 4 == 0x9 and message[2]:
                start = round(at * self.sample_rate)
                tone = 0.5 * np.sin(2 * np.pi * 440 * 2 ** ((message[1] - 69) / 12) * t)
                out[start : start + tone.size] += tone[: max(0, out.size - start)]
        return out


def test_render_excerpts_writes_files_and_entries(tmp_path: Path) -> None:
    plan = plan_excerpts({"train": 2, "val": 1, "test": 1}, per_piece=2, seconds=3.0)
    entries, counts = render_excerpts(tmp_path, FakeRenderer(), plan, "MIT", "fake")
    assert len(entries) == 8 and counts == {"silent": 0, "scaled": 8}  # sums of sines clip
    for entry, excerpt in zip(entries, plan, strict=True):
        check_entry(entry, "test")
        assert entry["path"] == excerpt.relpath and entry["key"] == excerpt.piece.key
        audio, rate = sf.read(tmp_path / entry["path"])
        assert rate == 8000 and audio.shape == (24000,) and 0.5 < np.abs(audio).max() < 0.9901
        assert entry["duration"] == 3.0 and entry["split"] == excerpt.piece.split
    entries, counts = render_excerpts(tmp_path / "q", FakeRenderer(silent=True), plan[:2], "MIT", "fake")
    assert entries == [] and counts["silent"] == 2 and not (tmp_path / "q").exists()
