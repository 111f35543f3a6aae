"""The note set: MIDI writer/reader, the instance-holding-out splits, labels and rendering."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from m2l.datasets.notes import (
    INSTRUMENTS,
    VELOCITIES,
    Instrument,
    Note,
    Renderer,
    assign_splits,
    midi_file,
    note_midi,
    plan_notes,
    read_midi,
    render_notes,
    vlq,
)
from m2l.errors import M2LError

HAS_RENDERER = True
try:
    import tinysoundfont  # noqa: F401
except ImportError:
    HAS_RENDERER = False
needs_renderer = pytest.mark.skipif(
    not HAS_RENDERER,
    reason="tinysoundfont is not installed (optional extra m2l[data]); rendering is not tested",
)


# ----------------------------------------------------------------------------- MIDI
@pytest.mark.parametrize(
    "value, encoded",
    [
        (0, "00"),
        (0x40, "40"),
        (0x7F, "7f"),
        (0x80, "8100"),
        (0x2000, "c000"),
        (0x3FFF, "ff7f"),
        (0x4000, "818000"),
        (0x1FFFFF, "ffff7f"),
        (0x200000, "81808000"),
        (0x0FFFFFFF, "ffffff7f"),
    ],
)
def test_variable_length_quantities_match_the_midi_specification(value: int, encoded: str) -> None:
    assert vlq(value).hex() == encoded


def test_note_midi_is_a_standard_format_0_file() -> None:
    data = note_midi(program=41, pitch=60, velocity=80)
    assert data[:14] == b"MThd" + bytes([0, 0, 0, 6, 0, 0, 0, 1, 0x01, 0xE0])  # format 0, 1 track, 480
    assert data[14:18] == b"MTrk"
    assert int.from_bytes(data[18:22], "big") == len(data) - 22
    body = data[22:]
    assert body[:7] == bytes([0, 0xFF, 0x51, 3, 0x07, 0xA1, 0x20])  # tempo 500000 us per beat
    assert body[7:10] == bytes([0, 0xC0, 40])  # GM program 41 is program change 40
    assert body[10:14] == bytes([0, 0x90, 60, 80])
    assert body[14:19] == bytes([0x8B, 0x20, 0x80, 60, 64])  # 1440 ticks = 1.5 s later
    assert body[19:] == bytes([0x83, 0x60, 0xFF, 0x2F, 0])  # 480 ticks later: end of track at 2 s


def test_note_midi_reads_back() -> None:
    events, length = read_midi(note_midi(1, 64, 120, hold=0.75, length=1.25))
    assert events == [(0.0, bytes([0xC0, 0])), (0.0, bytes([0x90, 64, 120])), (0.75, bytes([0x80, 64, 64]))]
    assert length == 1.25


@pytest.mark.skipif(not HAS_RENDERER, reason="tinysoundfont (an independent MIDI parser) is not installed")
def test_note_midi_is_read_the_same_by_another_parser() -> None:
    import tinysoundfont.midi

    events = tinysoundfont.midi.load_memory(note_midi(41, 60, 80))
    kinds = [type(e.action).__name__ for e in events]
    assert kinds == ["ProgramChange", "NoteOn", "NoteOff"]
    assert events[0].action.program == 40 and events[1].action.velocity == 80
    assert abs(events[2].t - 1.5) < 1e-6


def test_read_midi_handles_format_1_running_status_and_tempo_changes() -> None:
    def track(body: bytes) -> bytes:
        return b"MTrk" + len(body).to_bytes(4, "big") + body

    conductor = track(
        bytes(
            [
                0,
                0xFF,
                0x51,
                3,
                0x0F,
                0x42,
                0x40,  # 1 s per beat
                0x60,
                0xFF,
                0x51,
                3,
                0x07,
                0xA1,
                0x20,  # 96 ticks later: 0.5 s per beat
                0,
                0xFF,
                0x2F,
                0,
            ]
        )
    )
    notes = track(
        bytes(
            [
                0,
                0xF0,
                2,
                0x7E,
                0xF7,  # a sysex event, skipped
                0x30,
                0x91,
                60,
                100,  # tick 48: 0.5 s
                0x60,
                62,
                100,  # running status, tick 144: 1 s + 48 ticks at 0.5 s = 1.25 s
                0x60,
                0x81,
                60,
                0,  # tick 240
                0,
                0xFF,
                0x2F,
                0,
            ]
        )
    )
    data = b"MThd" + bytes([0, 0, 0, 6, 0, 1, 0, 2, 0, 96]) + conductor + notes
    events, length = read_midi(data)
    assert events == [
        (0.5, bytes([0x91, 60, 100])),
        (1.25, bytes([0x91, 62, 100])),
        (1.75, bytes([0x81, 60, 0])),
    ]
    assert length == 1.75


@pytest.mark.parametrize(
    "data", [b"", b"RIFF....", note_midi(1, 60, 80)[:-3], b"MThd" + bytes([0, 0, 0, 6, 0, 2, 0, 1, 1, 0xE0])]
)
def test_read_midi_refuses_broken_files(data: bytes) -> None:
    with pytest.raises(M2LError, match="MIDI"):
        read_midi(data)


@pytest.mark.parametrize(
    "events, end",
    [
        ([(0, bytes([0x90, 60]))], 10),
        ([(0, bytes([0x90, 200, 1]))], 10),
        ([(20, bytes([0x80, 60, 0]))], 10),
        ([(0, b"")], 10),
    ],
)
def test_midi_file_refuses_bad_events(events: list[tuple[int, bytes]], end: int) -> None:
    with pytest.raises(M2LError, match="MIDI"):
        midi_file(events, end)


# ----------------------------------------------------------------------------- plan and splits
def test_plan_has_a_few_thousand_labelled_notes_over_many_families() -> None:
    plan = plan_notes()
    assert len(plan) == 3 * sum(i.high - i.low + 1 for i in INSTRUMENTS) == 3063
    assert len({n.instrument.program for n in plan}) == 24
    assert len({n.instrument.family for n in plan}) == 12
    assert len({n.relpath for n in plan}) == len(plan)
    note = next(n for n in plan if n.instrument.program == 41 and n.pitch == 62 and n.velocity == 80)
    labels = note.labels()
    assert labels["instrument"] == "Violin" and labels["family"] == "Strings"
    assert labels["pitch_class"] == 2 and labels["split"] in ("train", "val", "test")
    assert note.relpath == f"notes/{note.split}/p041-violin/n062-v080.wav"


def test_gm_families_come_in_groups_of_eight() -> None:
    assert Instrument(1, "x", 0, 1).family == "Piano"
    assert Instrument(8, "x", 0, 1).family == "Piano"
    assert Instrument(9, "x", 0, 1).family == "Chromatic Percussion"
    assert Instrument(128, "x", 0, 1).family == "Sound Effects"


def test_splits_hold_out_instances_not_labels() -> None:
    plan = plan_notes()
    by_split = {
        s: {(n.instrument.program, n.pitch, n.velocity) for n in plan if n.split == s}
        for s in ("train", "val", "test")
    }
    labels = {(p, pitch) for p, pitch, _ in by_split["train"]}
    assert labels == {(n.instrument.program, n.pitch) for n in plan}  # every label is in train
    held_out = by_split["val"] | by_split["test"]
    assert not by_split["val"] & by_split["test"] and not by_split["train"] & held_out
    per_label = Counter((p, pitch) for p, pitch, _ in by_split["val"] | by_split["test"])
    assert set(per_label.values()) == {1} and set(per_label) == labels  # exactly one held out per label
    for p, pitch, velocity in by_split["val"] | by_split["test"]:
        assert (p, pitch, velocity) not in by_split["train"]
        assert sum((p, pitch, v) in by_split["train"] for v in VELOCITIES) == 2
    assert len(by_split["train"]) == 2 * len(labels)
    for program in {p for p, _ in labels}:  # balanced per program and over velocities
        val = sum(p == program for p, _, _ in by_split["val"])
        test = sum(p == program for p, _, _ in by_split["test"])
        assert abs(val - test) <= 1
    held_velocities = Counter(v for _, _, v in by_split["val"] | by_split["test"])
    assert set(held_velocities) == set(VELOCITIES)
    assert max(held_velocities.values()) - min(held_velocities.values()) <= 2 * len(INSTRUMENTS)


def test_splits_are_fixed_by_the_seed() -> None:
    labels = [(p, pitch) for p in (1, 2) for pitch in range(40, 60)]
    assert assign_splits(labels, seed=7) == assign_splits(list(reversed(labels)), seed=7)
    assert assign_splits(labels, seed=7) != assign_splits(labels, seed=8)
    with pytest.raises(M2LError, match="3 distinct velocities"):
        assign_splits(labels, velocities=(40, 80))


# ----------------------------------------------------------------------------- rendering
def _peak_hz(x: np.ndarray, rate: int = 44100) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum) * rate / len(x))


@needs_renderer
def test_renderer_plays_pitch_velocity_and_release(sine_sf2: Path) -> None:
    renderer = Renderer(sine_sf2)
    a4 = renderer.render(note_midi(1, 69, 80))
    assert a4.dtype == np.float32 and a4.shape == (88200,)
    assert abs(_peak_hz(a4[4410:66150]) - 440.0) < 1.0  # the sample's root key is 69
    assert abs(_peak_hz(renderer.render(note_midi(1, 81, 80))[4410:66150]) - 880.0) < 1.0
    rms = [float(np.sqrt(np.mean(renderer.render(note_midi(1, 69, v))[4410:66150] ** 2))) for v in (40, 120)]
    assert rms[1] > 2 * rms[0] > 0.01
    assert np.abs(a4[66150 : 66150 + 441]).max() > 0.05  # still sounding just after note off (release)
    assert np.abs(a4[-4410:]).max() < 1e-3  # the 0.2 s release is over before 2 s


@needs_renderer
def test_silent_notes_are_left_out(tmp_path: Path, sine_sf2: Path) -> None:
    piano = Instrument(1, "Acoustic Grand Piano", 99, 101)  # the test soundfont stops at key 100
    plan = [Note(piano, pitch, 80, "train") for pitch in (99, 100, 101)]
    entries, counts = render_notes(tmp_path, sine_sf2, plan, "MIT", "test")
    assert [e["pitch"] for e in entries] == [99, 100] and counts == {"silent": 1, "clipped": 0}
    assert sorted(p.name for p in tmp_path.rglob("*.wav")) == ["n099-v080.wav", "n100-v080.wav"]
    assert entries[0]["path"] == "notes/train/p001-acoustic-grand-piano/n099-v080.wav"


@needs_renderer
def test_rendering_does_not_depend_on_what_came_before(sine_sf2: Path) -> None:
    fresh = Renderer(sine_sf2).render(note_midi(2, 64, 100))
    used = Renderer(sine_sf2)
    used.render(note_midi(1, 50, 127, hold=1.9, length=2.0))  # cut off mid-release
    assert np.array_equal(used.render(note_midi(2, 64, 100)), fresh)


@needs_renderer
def test_renderer_errors_are_one_line(tmp_path: Path, sine_sf2: Path) -> None:
    bad = tmp_path / "bad.sf2"
    bad.write_bytes(b"RIFF\0\0\0\0nope")
    with pytest.raises(M2LError, match="bad.sf2"):
        Renderer(bad)
    with pytest.raises(M2LError, match="no preset for GM program 3"):
        Renderer(sine_sf2).render(note_midi(3, 60, 80))


def test_renderer_missing_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "tinysoundfont", None)
    with pytest.raises(M2LError, match="pip install --no-deps tinysoundfont"):
        Renderer(tmp_path / "x.sf2")
