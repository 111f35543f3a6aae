"""A labelled set of multi-instrument music excerpts (key, tempo, meter) rendered from General MIDI.

No open score collection is available offline, so the music is composed here, procedurally and
deterministically (every random choice comes from a `random.Random` seeded by `SEED`, the piece
and the section), written as standard MIDI files (format 1: a conductor track with the tempo and
time signature, then one track per part) and rendered with the notes' renderer
(`m2l.datasets.notes.Renderer`: tinysoundfont, FluidR3_GM, mono 44.1 kHz).

A piece has a key (12 tonics x major/minor: 24 classes), a tempo class (`TEMPO_CLASSES`, beats per
minute of the counted beat, jittered by up to `TEMPO_JITTER` per piece), a meter (3/4, 4/4 or 6/8;
the 6/8 beat is the dotted quarter), and instruments: a bass, a chord instrument, a melody and, in
about two pieces of three, drums on channel 10. Its `EXCERPTS_PER_PIECE` excerpts (sections) share
all that and differ in their chord progression and melody; each is `EXCERPT_SECONDS` long.

What makes the labels audible (and relative keys, e.g. C major / A minor, distinguishable):

- harmony: one diatonic triad per chord slot (a bar, or half a 4/4 bar when a bar is longer than
  `MAX_SLOT_SECONDS`); the first slot is the tonic chord, the last slot that starts at least half a
  slot before the end is the tonic chord again, preceded by the dominant (major in minor keys:
  the raised leading tone is the only chromatic note), and the slots between follow functional
  harmony (`MAJOR_NEXT`, `MINOR_NEXT`). The bass plays the chord root on every slot's downbeat;
- melody: scale notes (the leading tone raised over the dominant in minor), chord tones on
  downbeats, mostly stepwise, ending on the tonic;
- meter and tempo: velocities follow the metrical accents (`accent`: downbeat strongest), the bass
  and chords articulate the beats, and the drums play a pattern of the meter.

Splits are by piece (every excerpt of a piece is in the piece's split). Within a split the pieces
cycle through the 24 keys and through the 15 (tempo class, meter) pairs, each cycle shuffled with
its own seeded generator, so every label of every task is in every split with balanced counts
once a split holds 24 or more pieces. The default plan: 144 / 48 / 48 pieces x 4 excerpts =
576 / 192 / 192 excerpts of 8 s (2.1 h).
"""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from m2l.datasets.notes import DRUM_CHANNEL, vlq
from m2l.errors import M2LError
from m2l.files import write_bytes

SEED = 2025
SAMPLE_RATE = 44100
EXCERPT_SECONDS = 8.0
EXCERPTS_PER_PIECE = 4
PIECES_PER_SPLIT = {"train": 144, "val": 48, "test": 48}
COMPOSER_VERSION = 1
"""Bump when the composition changes: it is part of the fetch recipe."""

TICKS_PER_QUARTER = 480
SUBDIVISION_TICKS = 240  # an eighth note: 2 per beat in 3/4 and 4/4, 3 per beat in 6/8
TONICS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
MODES = ("major", "minor")
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
TEMPO_CLASSES = (64, 84, 108, 136, 172)
TEMPO_JITTER = 0.04
MAX_SLOT_SECONDS = 2.5

KICK, SNARE, HAT, CRASH = 36, 38, 42, 49

# scale degree (0 = tonic) -> degrees that may follow (no diminished triads)
MAJOR_NEXT = {0: (3, 4, 5, 1, 2), 1: (4, 3), 2: (5, 3), 3: (4, 1, 0), 4: (0, 5), 5: (1, 3, 4)}
MINOR_NEXT = {0: (3, 5, 6, 2), 2: (5, 3), 3: (4, 0), 4: (0, 5), 5: (3, 4, 6), 6: (2, 0)}

BASSES = (33, 34, 35, 39, 44, 59)  # GM programs (1-128)
CHORD_INSTRUMENTS = (1, 5, 7, 17, 20, 25, 47, 49, 53, 62, 89, 90)
MELODIES = (12, 13, 27, 41, 57, 66, 69, 72, 74, 81)
CHORD_STYLES = ("block", "beats", "arpeggio")


@dataclass(frozen=True)
class Meter:
    """A time signature: beats per bar, eighth notes per beat, and its MIDI meta event data."""

    name: str
    beats: int
    division: int
    numerator: int
    denominator_power: int

    @property
    def beat_ticks(self) -> int:
        """Ticks of one counted beat (a quarter, or a dotted quarter in 6/8)."""
        return self.division * SUBDIVISION_TICKS

    @property
    def bar_ticks(self) -> int:
        """Ticks of one bar."""
        return self.beats * self.beat_ticks


METERS = {
    "3/4": Meter("3/4", 3, 2, 3, 2),
    "4/4": Meter("4/4", 4, 2, 4, 2),
    "6/8": Meter("6/8", 2, 3, 6, 3),
}


@dataclass(frozen=True)
class Piece:
    """The labels and instrumentation shared by the excerpts of one piece."""

    index: int
    split: str
    tonic: int
    mode: str
    tempo_class: int
    tempo_bpm: int
    meter: str
    programs: tuple[int, int, int]
    drums: bool
    style: str

    @property
    def key(self) -> str:
        """E.g. "Eb major"."""
        return f"{TONICS[self.tonic]} {self.mode}"

    @property
    def name(self) -> str:
        """E.g. "piece007"."""
        return f"piece{self.index:03d}"

    @property
    def quarter_us(self) -> int:
        """Microseconds per quarter note (the MIDI tempo)."""
        return round(60_000_000 * 2 / (self.tempo_bpm * METERS[self.meter].division))


@dataclass(frozen=True)
class Excerpt:
    """One section of a piece: what is rendered into one file."""

    piece: Piece
    section: int
    seconds: float = EXCERPT_SECONDS

    @property
    def relpath(self) -> str:
        """Path under DATA_DIR, e.g. excerpts/train/piece007/s1.wav."""
        return f"excerpts/{self.piece.split}/{self.piece.name}/s{self.section}.wav"

    def labels(self) -> dict[str, Any]:
        """The label fields of an excerpts/manifest.jsonl line."""
        p = self.piece
        return {
            "piece": p.name,
            "section": self.section,
            "split": p.split,
            "key": p.key,
            "key_mode": p.mode,
            "tonic": p.tonic,
            "tempo_bpm": p.tempo_bpm,
            "tempo_class": p.tempo_class,
            "meter": p.meter,
            "programs": list(p.programs),
            "drums": p.drums,
            "seconds": self.seconds,
        }


# ----------------------------------------------------------------------------- the plan
def _piece(index: int, split: str, key: int, tempo_class: int, meter: str, seed: int) -> Piece:
    rng = random.Random(f"{seed}:piece:{index}")
    jitter = 1 + rng.uniform(-TEMPO_JITTER, TEMPO_JITTER)
    return Piece(
        index=index,
        split=split,
        tonic=key % 12,
        mode=MODES[key // 12],
        tempo_class=tempo_class,
        tempo_bpm=round(TEMPO_CLASSES[tempo_class] * jitter),
        meter=meter,
        programs=(rng.choice(BASSES), rng.choice(CHORD_INSTRUMENTS), rng.choice(MELODIES)),
        drums=rng.random() < 2 / 3,
        style=rng.choice(CHORD_STYLES),
    )


def plan_pieces(per_split: dict[str, int] | None = None, seed: int = SEED) -> list[Piece]:
    """The pieces of every split, numbered in split order (see the module docstring).

    Args:
        per_split: pieces per split (default `PIECES_PER_SPLIT`).
        seed: fixes every choice.
    """
    per_split = PIECES_PER_SPLIT if per_split is None else per_split
    meters = sorted(METERS)
    pieces: list[Piece] = []
    for split, count in per_split.items():
        if count < 0:
            raise M2LError(f"excerpts: negative piece count {count} for {split}")
        keys_rng, rhythm_rng = random.Random(f"{seed}:{split}:keys"), random.Random(f"{seed}:{split}:rhythm")
        keys = [j % 24 for j in range(count)]
        pairs = [
            (j % len(TEMPO_CLASSES), meters[(j // len(TEMPO_CLASSES)) % len(meters)]) for j in range(count)
        ]
        keys_rng.shuffle(keys)
        rhythm_rng.shuffle(pairs)
        for key, (tempo, meter) in zip(keys, pairs, strict=True):
            pieces.append(_piece(len(pieces), split, key, tempo, meter, seed))
    return pieces


def plan_excerpts(
    per_split: dict[str, int] | None = None,
    per_piece: int = EXCERPTS_PER_PIECE,
    seconds: float = EXCERPT_SECONDS,
    seed: int = SEED,
) -> list[Excerpt]:
    """Every excerpt of the set: `per_piece` sections of each piece of `plan_pieces`."""
    if per_piece < 1 or not 3.0 <= seconds <= 60.0:
        raise M2LError(f"excerpts: need >= 1 excerpt per piece and 3-60 s, got {per_piece}, {seconds}")
    return [Excerpt(p, k, seconds) for p in plan_pieces(per_split, seed) for k in range(per_piece)]


# ----------------------------------------------------------------------------- harmony
def scale_degree_pc(tonic: int, mode: str, degree: int, leading: bool = False) -> int:
    """Pitch class of a scale degree (any integer; 0 = tonic); `leading` raises a minor 7th."""
    pc = tonic + SCALES[mode][degree % 7]
    if leading and mode == "minor" and degree % 7 == 6:
        pc += 1
    return pc % 12


def triad(tonic: int, mode: str, degree: int) -> tuple[int, int, int]:
    """Pitch classes (root, third, fifth) of the diatonic triad on `degree`; V is major in minor."""
    root, third, fifth = (scale_degree_pc(tonic, mode, degree + s, leading=degree == 4) for s in (0, 2, 4))
    return root, third, fifth


def key_pitch_classes(tonic: int, mode: str) -> set[int]:
    """Pitch classes a piece in this key may use: its scale, plus the raised 7th in minor."""
    allowed = {scale_degree_pc(tonic, mode, d) for d in range(7)}
    if mode == "minor":
        allowed.add(scale_degree_pc(tonic, mode, 6, leading=True))
    return allowed


def progression(mode: str, slots: int, last_tonic: int, rng: random.Random) -> list[int]:
    """Scale degrees of the chord slots: I ... V I, then I to the end (see the module doc)."""
    if not 2 <= last_tonic < slots:
        raise M2LError(f"excerpts: cannot end on the tonic at slot {last_tonic} of {slots}")
    table = MAJOR_NEXT if mode == "major" else MINOR_NEXT
    chords = [0]
    for _ in range(1, last_tonic - 1):
        chords.append(rng.choice(table[chords[-1]]))
    return [*chords, 4, *[0] * (slots - last_tonic)]


# ----------------------------------------------------------------------------- composition
@dataclass(frozen=True)
class Slot:
    """A span of one chord: its start and length in ticks, and its scale degree."""

    start: int
    ticks: int
    degree: int


def accent(meter: Meter, tick_in_bar: int) -> float:
    """Velocity factor of an onset: 1 on the downbeat, 0.85 on a secondary strong beat (beat 3 of
    4/4), 0.72 on other beats, 0.6 between beats."""
    if tick_in_bar == 0:
        return 1.0
    if tick_in_bar % meter.beat_ticks:
        return 0.6
    return 0.85 if meter.beats == 4 and tick_in_bar == 2 * meter.beat_ticks else 0.72


def end_tick(piece: Piece, seconds: float) -> int:
    """The tick at `seconds` (the end of an excerpt)."""
    return round(seconds * 1e6 / piece.quarter_us * TICKS_PER_QUARTER)


def chord_slots(piece: Piece, seconds: float, rng: random.Random) -> list[Slot]:
    """The chord slots covering `seconds`, with the progression's degrees.

    A slot is a bar, or half a bar of an even meter when a bar is longer than `MAX_SLOT_SECONDS`,
    or a beat when a shorter excerpt would otherwise hold fewer than three slots (I V I).
    """
    meter = METERS[piece.meter]
    end = end_tick(piece, seconds)
    half = meter.bar_ticks // 2 if meter.beats % 2 == 0 else meter.bar_ticks
    if meter.bar_ticks / end_tick(piece, 1.0) <= MAX_SLOT_SECONDS:
        half = meter.bar_ticks
    for slot in dict.fromkeys((half, meter.beat_ticks)):
        count = math.ceil(end / slot)
        last_tonic = max(k for k in range(count) if k * slot <= end - slot / 2)
        if last_tonic >= 2:
            degrees = progression(piece.mode, count, last_tonic, rng)
            return [Slot(k * slot, slot, degree) for k, degree in enumerate(degrees)]
    raise M2LError(f"excerpts: {seconds} s is too short for three chords at {piece.tempo_bpm} bpm")


class _Track:
    """Notes of one channel, as (tick, priority, message) events."""

    def __init__(self, channel: int, program: int, end: int, rng: random.Random) -> None:
        self.channel, self.end, self.rng = channel, end, rng
        self.events: list[tuple[int, int, bytes]] = [(0, 0, bytes([0xC0 | channel, program - 1]))]

    def note(self, tick: int, length: int, pitch: int, velocity: float) -> None:
        """Add a note; cut at the end, left out when it starts there or later."""
        if tick >= self.end:
            return
        vel = min(127, max(1, round(velocity + self.rng.uniform(-4, 4))))
        self.events.append((tick, 2, bytes([0x90 | self.channel, pitch, vel])))
        self.events.append((min(tick + length, self.end), 1, bytes([0x80 | self.channel, pitch, 64])))


def _place(pc: int, low: int) -> int:
    """The MIDI pitch of pitch class `pc` in the octave starting at `low`."""
    return low + (pc - low) % 12


def _bass(track: _Track, piece: Piece, slots: Sequence[Slot]) -> None:
    meter = METERS[piece.meter]
    for slot in slots:
        root, _, fifth = triad(piece.tonic, piece.mode, slot.degree)
        for n, tick in enumerate(range(slot.start, slot.start + slot.ticks, meter.beat_ticks)):
            pc = root if n % 2 == 0 else fifth
            velocity = 100 * accent(meter, tick % meter.bar_ticks)
            track.note(tick, meter.beat_ticks - 20, _place(pc, 36), velocity)


def _chords(track: _Track, piece: Piece, slots: Sequence[Slot]) -> None:
    meter = METERS[piece.meter]
    for slot in slots:
        pitches = sorted(_place(pc, 55) for pc in triad(piece.tonic, piece.mode, slot.degree))
        if piece.style == "block":
            onsets, length = [slot.start], slot.ticks
        elif piece.style == "beats":
            onsets, length = (
                list(range(slot.start, slot.start + slot.ticks, meter.beat_ticks)),
                meter.beat_ticks,
            )
        else:
            onsets, length = (
                list(range(slot.start, slot.start + slot.ticks, SUBDIVISION_TICKS)),
                SUBDIVISION_TICKS,
            )
        for n, tick in enumerate(onsets):
            velocity = 80 * accent(meter, tick % meter.bar_ticks)
            chosen = [pitches[n % 3]] if piece.style == "arpeggio" else pitches
            for pitch in chosen:
                track.note(tick, length - 10, pitch, velocity)


def _melody(track: _Track, piece: Piece, slots: Sequence[Slot], rng: random.Random) -> None:
    """Chord tones on slot downbeats, steps in between, the tonic from the last tonic slot on."""
    meter = METERS[piece.meter]
    busy = rng.uniform(0.15, 0.6)  # chance that a beat is split into its eighth notes
    degree = 7 + rng.choice((0, 2, 4))  # scale degrees counted from the tonic below middle C + 7
    last_tonic = max(k for k, s in enumerate(slots) if s.degree == 0 and k > 0 and slots[k - 1].degree == 4)
    for k, slot in enumerate(slots):
        if k >= last_tonic:
            degree = 7 * round(degree / 7)
            track.note(slot.start, track.end - slot.start, _melody_pitch(piece, degree, 0), 96)
            return
        for beat in range(slot.start, slot.start + slot.ticks, meter.beat_ticks):
            split = rng.random() < busy
            for tick in range(
                beat, beat + meter.beat_ticks, SUBDIVISION_TICKS if split else meter.beat_ticks
            ):
                if tick == slot.start:
                    tones = [slot.degree + d + 7 * o for d in (0, 2, 4) for o in (0, 1, 2)]
                    degree = min(tones, key=lambda t: (abs(t - degree), t))
                else:
                    degree = min(14, max(4, degree + rng.choice((-2, -1, -1, 1, 1, 2))))
                length = SUBDIVISION_TICKS if split else meter.beat_ticks
                velocity = 96 * accent(meter, tick % meter.bar_ticks)
                track.note(tick, length - 15, _melody_pitch(piece, degree, slot.degree), velocity)


def _melody_pitch(piece: Piece, degree: int, chord: int) -> int:
    """MIDI pitch of a melody degree (0 = the tonic in the octave from 48), leading tone over V."""
    octave, step = divmod(degree, 7)
    pc = scale_degree_pc(piece.tonic, piece.mode, step, leading=chord == 4)
    base = 48 + piece.tonic + 12 * octave
    return base + (pc - piece.tonic) % 12


def _drums(track: _Track, piece: Piece, end: int) -> None:
    meter = METERS[piece.meter]
    for bar in range(0, end, meter.bar_ticks):
        for tick in range(bar, bar + meter.bar_ticks, SUBDIVISION_TICKS):
            at = tick - bar
            velocity = 105 * accent(meter, at)
            track.note(tick, SUBDIVISION_TICKS // 2, HAT, 0.7 * velocity)
            beat, offset = divmod(at, meter.beat_ticks)
            if offset:
                continue
            if beat == 0 or (meter.beats == 4 and beat == 2):
                track.note(tick, SUBDIVISION_TICKS, KICK, velocity)
            else:
                track.note(tick, SUBDIVISION_TICKS, SNARE, velocity)
        if bar == 0:
            track.note(0, meter.bar_ticks, CRASH, 90)


def compose(excerpt: Excerpt, seed: int = SEED) -> bytes:
    """The standard MIDI file (format 1) of an excerpt; the same excerpt gives the same bytes."""
    piece = excerpt.piece
    rng = random.Random(f"{seed}:piece:{piece.index}:section:{excerpt.section}")
    end = end_tick(piece, excerpt.seconds)
    slots = chord_slots(piece, excerpt.seconds, rng)
    bass, chords, melody = (_Track(c, p, end, rng) for c, p in enumerate(piece.programs))
    _bass(bass, piece, slots)
    _chords(chords, piece, slots)
    _melody(melody, piece, slots, rng)
    tracks = [bass, chords, melody]
    if piece.drums:
        drums = _Track(DRUM_CHANNEL, 1, end, rng)
        _drums(drums, piece, end)
        tracks.append(drums)
    meter = METERS[piece.meter]
    conductor = [
        (0, 0, bytes([0xFF, 0x51, 3]) + piece.quarter_us.to_bytes(3, "big")),
        (0, 0, bytes([0xFF, 0x58, 4, meter.numerator, meter.denominator_power, meter.beat_ticks // 20, 8])),
    ]
    return multitrack_midi([conductor, *(t.events for t in tracks)], end)


def multitrack_midi(tracks: Sequence[Sequence[tuple[int, int, bytes]]], end: int) -> bytes:
    """A format-1 standard MIDI file at `TICKS_PER_QUARTER`.

    Args:
        tracks: per track, (tick, priority, event) triples: a channel message or a meta event
            (starting 0xFF). Events are written by tick, then priority (e.g. note-offs before
            note-ons at the same tick), then insertion order.
        end: tick of every track's end-of-track event (>= every event's tick).
    """
    chunks = [b"MThd" + (6).to_bytes(4, "big") + (1).to_bytes(2, "big") + len(tracks).to_bytes(2, "big")]
    chunks[0] += TICKS_PER_QUARTER.to_bytes(2, "big")
    for events in tracks:
        body, now = bytearray(), 0
        for tick, _, event in sorted(events, key=lambda e: (e[0], e[1])):
            if not 0 <= tick <= end:
                raise M2LError(f"MIDI: event tick {tick} outside 0..{end}")
            body += vlq(tick - now) + event
            now = tick
        body += vlq(end - now) + bytes([0xFF, 0x2F, 0])
        chunks.append(b"MTrk" + len(body).to_bytes(4, "big") + body)
    return b"".join(chunks)


# ----------------------------------------------------------------------------- rendering
class MidiRenderer(Protocol):
    """What renders a MIDI file: `notes.Renderer`, or a fake in tests."""

    sample_rate: int

    def render(self, midi: bytes) -> np.ndarray: ...


def render_excerpts(
    data_dir: Path,
    renderer: MidiRenderer,
    plan: Sequence[Excerpt],
    licence: str,
    source: str,
    progress: Callable[[Iterable[Excerpt]], Iterable[Excerpt]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Compose and render `plan` into DATA_DIR (16-bit mono wav, written atomically).

    Each file is exactly `seconds` long (the render is trimmed or zero-padded to it).

    Returns:
        (manifest entries in plan order, counts {"silent": ..., "scaled": ...}): excerpts whose
        peak is below 1e-4 (left out: no file, no entry), and excerpts scaled down to a peak of
        0.99 because they would clip.
    """
    import soundfile as sf

    entries = []
    counts = {"silent": 0, "scaled": 0}
    rate = renderer.sample_rate
    for excerpt in progress(plan) if progress else plan:
        audio = np.asarray(renderer.render(compose(excerpt)), dtype=np.float32)
        samples = round(excerpt.seconds * rate)
        audio = np.pad(audio[:samples], (0, max(0, samples - audio.size)))
        peak = float(np.abs(audio).max())
        if peak < 1e-4:
            counts["silent"] += 1
            continue
        if peak > 0.99:
            counts["scaled"] += 1
            audio *= 0.99 / peak
        encoded = io.BytesIO()
        sf.write(encoded, audio, rate, subtype="PCM_16", format="WAV")
        write_bytes(data_dir / excerpt.relpath, encoded.getvalue(), force=True)
        entries.append(
            {
                "path": excerpt.relpath,
                "duration": samples / rate,
                "sample_rate": rate,
                "channels": 1,
                "licence": licence,
                "source": source,
                **excerpt.labels(),
            }
        )
    return entries, counts
