"""A labelled isolated-note set (like TinySOL / NSynth) rendered from a General MIDI soundfont.

Every note is defined by a small standard MIDI file written here (`note_midi`): program change,
note on at 0 s, note off at `HOLD_SECONDS` (1.5 s), end of track at `NOTE_SECONDS` (2 s, so the
release is kept). `Renderer` plays such a file through the soundfont and returns mono audio at
44.1 kHz (the mean of the synthesiser's left and right outputs, dry: no reverb or chorus).

Renderer choice. Tried on the project machines (Debian 12, no network, no root needed):
the `fluidsynth` CLI needs `apt-get install` with about 20 packages (50 with recommends: SDL,
PulseAudio, JACK, Qt), and pyfluidsynth needs the same system libfluidsynth. `tinysoundfont`
(PyPI, MIT; TinySoundFont compiled into one self-contained extension, no system library) loads
FluidR3_GM.sf2 in 0.5 s and renders about a thousand 2-second notes per second on one core,
deterministically (the same note is bit-identical whatever was rendered before it). It is the
lightest, so it is the renderer, as the optional extra `m2l[data]`. Its wheel declares `pyaudio`,
used only for live playback (never here) and which needs PortAudio headers to build, so
`pip install --no-deps tinysoundfont` is enough. The MIDI files are standard, so any other
synthesiser (e.g. `fluidsynth -ni -F out.wav FluidR3_GM.sf2 note.mid`) can render the same notes.

Plan (`plan_notes`): the 24 programs of `INSTRUMENTS` (two from each of 12 GM families), every
MIDI pitch of each instrument's usual playable range (within what FluidR3_GM sounds: its violin
is silent above 93), velocities 40, 80 and 120: 3063 notes.

Splits hold out note instances, never labels (`assign_splits`): for every (program, pitch)
label exactly one of its three velocities is held out and the other two are in train, so every
label (and every program, pitch and velocity) is in train. Per program the pitches are
shuffled with a generator seeded by (`SEED`, program); the k-th pitch in that order sends its
held-out instance to val when k is even and to test when k is odd, and holds out velocity
number (k // 2 + r) % 3, where r (0-2) is drawn once per program from the same generator. So
train holds 2/3 of the notes, val and test 1/6 each, balanced across programs and velocities.
"""

from __future__ import annotations

import io
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m2l.errors import M2LError
from m2l.files import write_bytes

SAMPLE_RATE = 44100
NOTE_SECONDS = 2.0
HOLD_SECONDS = 1.5
VELOCITIES = (40, 80, 120)
SEED = 2024
TICKS_PER_BEAT = 480
TEMPO_US = 500_000  # microseconds per beat (120 bpm): one tick is 1/960 s
DRUM_CHANNEL = 9  # MIDI channel 10: its program change selects a drum kit (bank 128)
FLUSH_SECONDS = 0.1  # rendered (and dropped) after every note, once its voices are stopped

GM_FAMILIES = (
    "Piano",
    "Chromatic Percussion",
    "Organ",
    "Guitar",
    "Bass",
    "Strings",
    "Ensemble",
    "Brass",
    "Reed",
    "Pipe",
    "Synth Lead",
    "Synth Pad",
    "Synth Effects",
    "Ethnic",
    "Percussive",
    "Sound Effects",
)


@dataclass(frozen=True)
class Instrument:
    """A General MIDI program (1-128) and the MIDI pitches rendered for it (inclusive)."""

    program: int
    name: str
    low: int
    high: int

    @property
    def family(self) -> str:
        """The GM family: programs come in 16 groups of 8."""
        return GM_FAMILIES[(self.program - 1) // 8]


INSTRUMENTS = (
    Instrument(1, "Acoustic Grand Piano", 36, 96),
    Instrument(5, "Electric Piano 1", 36, 84),
    Instrument(12, "Vibraphone", 53, 89),
    Instrument(13, "Marimba", 48, 96),
    Instrument(17, "Drawbar Organ", 36, 84),
    Instrument(20, "Church Organ", 36, 84),
    Instrument(25, "Acoustic Guitar (nylon)", 40, 83),
    Instrument(30, "Overdriven Guitar", 40, 81),
    Instrument(33, "Acoustic Bass", 28, 60),
    Instrument(34, "Electric Bass (finger)", 28, 60),
    Instrument(41, "Violin", 55, 93),
    Instrument(43, "Cello", 36, 76),
    Instrument(49, "String Ensemble 1", 36, 84),
    Instrument(53, "Choir Aahs", 41, 79),
    Instrument(57, "Trumpet", 54, 82),
    Instrument(58, "Trombone", 40, 72),
    Instrument(66, "Alto Sax", 49, 81),
    Instrument(72, "Clarinet", 50, 91),
    Instrument(74, "Flute", 60, 96),
    Instrument(76, "Pan Flute", 60, 96),
    Instrument(81, "Lead 1 (square)", 36, 84),
    Instrument(82, "Lead 2 (sawtooth)", 36, 84),
    Instrument(89, "Pad 1 (new age)", 36, 84),
    Instrument(90, "Pad 2 (warm)", 36, 84),
)


@dataclass(frozen=True)
class Note:
    """One rendered note: its labels and its split."""

    instrument: Instrument
    pitch: int
    velocity: int
    split: str

    @property
    def relpath(self) -> str:
        """Path under DATA_DIR, e.g. notes/train/p001-acoustic-grand-piano/n060-v080.wav."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.instrument.name.lower()).strip("-")
        return (
            f"notes/{self.split}/p{self.instrument.program:03d}-{slug}/"
            f"n{self.pitch:03d}-v{self.velocity:03d}.wav"
        )

    def labels(self) -> dict[str, Any]:
        """The label fields of a notes/manifest.jsonl line."""
        return {
            "program": self.instrument.program,
            "instrument": self.instrument.name,
            "family": self.instrument.family,
            "pitch": self.pitch,
            "pitch_class": self.pitch % 12,
            "velocity": self.velocity,
            "split": self.split,
        }


# ----------------------------------------------------------------------------- splits
def assign_splits(
    labels: Iterable[tuple[int, int]], velocities: Sequence[int] = VELOCITIES, seed: int = SEED
) -> dict[tuple[int, int, int], str]:
    """Split the instances (program, pitch, velocity) of `labels` as the module docstring says.

    Args:
        labels: (program, pitch) pairs; each is rendered at every velocity.
        velocities: at least 3, so that two stay in train when one is held out.
        seed: fixes the shuffles.

    Returns:
        {(program, pitch, velocity): "train" | "val" | "test"} for every instance.
    """
    if len(set(velocities)) < 3:
        raise M2LError(f"need at least 3 distinct velocities to hold out instances, got {velocities}")
    by_program: dict[int, list[int]] = {}
    for program, pitch in sorted(set(labels)):
        by_program.setdefault(program, []).append(pitch)
    splits = {}
    for program, pitches in by_program.items():
        rng = random.Random(f"{seed}:{program}")
        rng.shuffle(pitches)
        offset = rng.randrange(len(velocities))
        for k, pitch in enumerate(pitches):
            held = velocities[(k // 2 + offset) % len(velocities)]
            for velocity in velocities:
                split = "train" if velocity != held else ("val" if k % 2 == 0 else "test")
                splits[(program, pitch, velocity)] = split
    return splits


def plan_notes(
    instruments: Sequence[Instrument] = INSTRUMENTS, velocities: Sequence[int] = VELOCITIES, seed: int = SEED
) -> list[Note]:
    """Every note of the set, with its split, sorted by (program, pitch, velocity)."""
    by_program = {inst.program: inst for inst in instruments}
    labels = [(inst.program, pitch) for inst in instruments for pitch in range(inst.low, inst.high + 1)]
    splits = assign_splits(labels, velocities, seed)
    return [Note(by_program[p], pitch, v, split) for (p, pitch, v), split in sorted(splits.items())]


# ----------------------------------------------------------------------------- MIDI files
def vlq(value: int) -> bytes:
    """A MIDI variable-length quantity: 7 bits per byte, high bit set on all but the last."""
    if not 0 <= value <= 0x0FFFFFFF:
        raise M2LError(f"MIDI: delta time {value} out of range")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


_MESSAGE_LENGTHS = {0x8: 3, 0x9: 3, 0xA: 3, 0xB: 3, 0xC: 2, 0xD: 2, 0xE: 3}  # by status nibble


def midi_file(
    events: Sequence[tuple[int, bytes]],
    end_tick: int,
    ticks_per_beat: int = TICKS_PER_BEAT,
    tempo_us: int = TEMPO_US,
) -> bytes:
    """A format-0 standard MIDI file.

    Args:
        events: (absolute tick, channel message) pairs, e.g. (0, bytes([0x90, 60, 100])); they
            are written in tick order (ties keep their order).
        end_tick: tick of the end-of-track event (>= every event's tick).
        ticks_per_beat: the header's division.
        tempo_us: microseconds per beat, written as a tempo event at tick 0.
    """
    body = bytearray(vlq(0) + bytes([0xFF, 0x51, 3]) + tempo_us.to_bytes(3, "big"))
    now = 0
    for tick, message in sorted(events, key=lambda e: e[0]):
        if (
            not message
            or _MESSAGE_LENGTHS.get(message[0] >> 4) != len(message)
            or any(b > 0x7F for b in message[1:])
        ):
            raise M2LError(f"MIDI: not a channel message: {bytes(message).hex()}")
        if not 0 <= tick <= end_tick:
            raise M2LError(f"MIDI: event tick {tick} outside 0..{end_tick}")
        body += vlq(tick - now) + bytes(message)
        now = tick
    body += vlq(end_tick - now) + bytes([0xFF, 0x2F, 0])
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
    return header + ticks_per_beat.to_bytes(2, "big") + b"MTrk" + len(body).to_bytes(4, "big") + body


def _ticks(seconds: float) -> int:
    return round(seconds * 1_000_000 / TEMPO_US * TICKS_PER_BEAT)


def note_midi(
    program: int, pitch: int, velocity: int, hold: float = HOLD_SECONDS, length: float = NOTE_SECONDS
) -> bytes:
    """The MIDI file of one note on channel 1: GM `program` (1-128), held `hold` s, `length` s long."""
    if not (1 <= program <= 128 and 0 <= pitch <= 127 and 1 <= velocity <= 127 and 0 < hold <= length):
        raise M2LError(f"MIDI: bad note program={program} pitch={pitch} velocity={velocity}")
    events = [
        (0, bytes([0xC0, program - 1])),
        (0, bytes([0x90, pitch, velocity])),
        (_ticks(hold), bytes([0x80, pitch, 64])),
    ]
    return midi_file(events, _ticks(length))


def read_midi(data: bytes) -> tuple[list[tuple[float, bytes]], float]:
    """Parse a standard MIDI file (format 0 or 1, running status, tempo changes).

    Returns:
        (events, length): channel messages as (seconds, message bytes) in time order, and the time
        of the last end-of-track. Meta and system-exclusive events are consumed, not returned.

    Raises:
        M2LError: not a MIDI file this reader understands.
    """
    if data[:4] != b"MThd" or len(data) < 14:
        raise M2LError("MIDI: no MThd header")
    fmt, ntracks, division = (int.from_bytes(data[i : i + 2], "big") for i in (8, 10, 12))
    if fmt not in (0, 1) or division & 0x8000 or division == 0:
        raise M2LError(f"MIDI: unsupported format {fmt} / division {division:#06x}")
    pos = 8 + int.from_bytes(data[4:8], "big")
    timed: list[tuple[int, int, bytes]] = []  # (tick, order, message)
    tempos: list[tuple[int, int]] = [(0, TEMPO_US)]
    end = 0
    while pos + 8 <= len(data):
        kind, size = data[pos : pos + 4], int.from_bytes(data[pos + 4 : pos + 8], "big")
        chunk, pos = data[pos + 8 : pos + 8 + size], pos + 8 + size
        if len(chunk) != size:
            raise M2LError("MIDI: truncated chunk")
        if kind == b"MTrk":
            end = max(end, _read_track(chunk, timed, tempos))
    tempos.sort(key=lambda t: t[0])  # stable: a tempo event at tick 0 replaces the default

    def seconds(tick: int) -> float:
        total, last_tick, last_tempo = 0.0, 0, TEMPO_US
        for at, tempo in tempos:
            if at > tick:
                break
            total += (at - last_tick) * last_tempo
            last_tick, last_tempo = at, tempo
        return (total + (tick - last_tick) * last_tempo) / 1e6 / division

    timed.sort(key=lambda e: (e[0], e[1]))
    return [(seconds(t), m) for t, _, m in timed], seconds(end)


def _read_track(chunk: bytes, timed: list[tuple[int, int, bytes]], tempos: list[tuple[int, int]]) -> int:
    """Append a track's channel messages to `timed` and tempo changes to `tempos`; returns its end."""
    pos, tick, status = 0, 0, 0

    def read_vlq() -> int:
        nonlocal pos
        value = 0
        for _ in range(4):
            if pos >= len(chunk):
                raise M2LError("MIDI: truncated track")
            byte = chunk[pos]
            pos += 1
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                return value
        raise M2LError("MIDI: variable-length quantity longer than 4 bytes")

    while pos < len(chunk):
        tick += read_vlq()
        if pos >= len(chunk):
            raise M2LError("MIDI: truncated track")
        if chunk[pos] == 0xFF:
            kind = chunk[pos + 1] if pos + 1 < len(chunk) else -1
            pos += 2
            size = read_vlq()
            payload, pos = chunk[pos : pos + size], pos + size
            if kind == 0x51 and size == 3:
                tempos.append((tick, int.from_bytes(payload, "big")))
            if kind == 0x2F:
                return tick
            continue
        if chunk[pos] in (0xF0, 0xF7):
            pos += 1
            size = read_vlq()  # (not `pos += read_vlq()`: that would add to the old position)
            pos += size
            continue
        if chunk[pos] & 0x80:
            status = chunk[pos]
            pos += 1
        elif not status:
            raise M2LError("MIDI: data byte without a status (running status not set)")
        size = 1 if status >> 4 in (0xC, 0xD) else 2
        if pos + size > len(chunk):
            raise M2LError("MIDI: truncated message")
        timed.append((tick, len(timed), bytes([status]) + chunk[pos : pos + size]))
        pos += size
    raise M2LError("MIDI: track without end-of-track event")


# ----------------------------------------------------------------------------- rendering
def renderer_version() -> str | None:
    """The installed tinysoundfont version, or None when it cannot be imported."""
    try:
        import tinysoundfont  # noqa: F401
    except ImportError:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tinysoundfont")
    except PackageNotFoundError:
        return "unknown"


class Renderer:
    """Renders MIDI files through a soundfont with tinysoundfont (mono float32 at `sample_rate`)."""

    def __init__(self, soundfont: Path, sample_rate: int = SAMPLE_RATE) -> None:
        """Load `soundfont` (an .sf2); `M2LError` when tinysoundfont or the soundfont is unusable."""
        try:
            import tinysoundfont
        except ImportError:
            raise M2LError(
                "rendering notes needs tinysoundfont: pip install --no-deps tinysoundfont "
                "(or pip install 'm2l[data]')"
            ) from None
        self.soundfont = Path(soundfont)
        self.sample_rate = sample_rate
        self._synth = tinysoundfont.Synth(samplerate=sample_rate)
        try:
            self._sfid = self._synth.sfload(str(soundfont))
        except Exception as err:  # the extension raises its own exception types
            raise M2LError(f"{soundfont}: cannot load the soundfont ({err})") from None

    def _generate(self, frames: int, out: list[np.ndarray]) -> None:
        if frames > 0:
            block = np.frombuffer(self._synth.generate(frames), dtype=np.float32)
            out.append(block.reshape(-1, 2).mean(axis=1))

    def _apply(self, message: bytes) -> None:
        kind, channel = message[0] >> 4, message[0] & 0x0F
        if kind == 0xC:
            try:
                self._synth.program_select(
                    channel, self._sfid, 0, message[1], is_drums=channel == DRUM_CHANNEL
                )
            except Exception:
                raise M2LError(
                    f"{self.soundfont}: no preset for GM program {message[1] + 1} in bank 0"
                ) from None
        elif kind == 0x9 and message[2] > 0:
            self._synth.noteon(channel, message[1], message[2])
        elif kind in (0x8, 0x9):
            self._synth.noteoff(channel, message[1])
        elif kind == 0xB:
            self._synth.control_change(channel, message[1], message[2])
        elif kind == 0xE:
            self._synth.pitchbend(channel, message[1] | (message[2] << 7))

    def render(self, midi: bytes) -> np.ndarray:
        """Play `midi` from a silent synthesiser; returns its length in samples, mono float32.

        Events fall on the nearest sample. Afterwards every voice is stopped and a short flush
        is rendered and dropped, so the next call starts from silence again.
        """
        events, length = read_midi(midi)
        out: list[np.ndarray] = []
        done = 0
        total = round(length * self.sample_rate)
        for seconds, message in events:
            at = min(round(seconds * self.sample_rate), total)
            self._generate(at - done, out)
            done = max(done, at)
            self._apply(message)
        self._generate(total - done, out)
        self._synth.sounds_off()
        self._generate(round(FLUSH_SECONDS * self.sample_rate), [])
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def render_notes(
    data_dir: Path,
    soundfont: Path,
    plan: Sequence[Note],
    licence: str,
    source: str,
    progress: Callable[[Iterable[Note]], Iterable[Note]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Render `plan` into DATA_DIR (16-bit mono wav, each written atomically by `m2l.files`).

    Returns:
        (manifest entries in plan order, counts {"silent": ..., "clipped": ...}): notes whose
        peak is below 1e-4 (the soundfont has nothing there: left out, no file, no entry), and
        notes that had to be clipped to [-1, 1].
    """
    import soundfile as sf

    renderer = Renderer(soundfont)
    entries = []
    counts = {"silent": 0, "clipped": 0}
    for note in progress(plan) if progress else plan:
        audio = renderer.render(note_midi(note.instrument.program, note.pitch, note.velocity))
        peak = float(np.abs(audio).max()) if audio.size else 0.0
        if peak < 1e-4:
            counts["silent"] += 1
            continue
        counts["clipped"] += peak > 1.0
        dest = data_dir / note.relpath
        encoded = io.BytesIO()  # encoded in memory: only the file write can meet a full disk
        sf.write(encoded, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
        write_bytes(dest, encoded.getvalue(), force=True)
        info = sf.info(str(dest))
        entries.append(
            {
                "path": note.relpath,
                "duration": info.frames / info.samplerate,
                "sample_rate": info.samplerate,
                "channels": info.channels,
                "licence": licence,
                "source": source,
                **note.labels(),
            }
        )
    return entries, counts
