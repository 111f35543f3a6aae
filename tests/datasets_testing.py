"""Helpers for the dataset tests: fake Debian package trees, tiny soundfonts, audio writers (the
fixtures are re-exported by tests/datasets/conftest.py).

Nothing here needs a Debian package, apt or the network: package trees are written with
soundfile and zipfile, and the soundfont is one looped sine wave written by `write_sf2`.
"""

from __future__ import annotations

import struct
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from m2l_testing import sine

from m2l.datasets.debian import Extracted

SINE_RATE = 44000  # 440 Hz is then exactly 100 samples per period, so the loop is seamless


def write_audio(
    path: Path, seconds: float = 0.2, rate: int = 22050, channels: int = 1, fmt: str | None = None
) -> Path:
    """A short tone at `path` (format from the suffix unless `fmt`)."""
    freqs = [300 + 50 * c for c in range(channels)]
    data = sine(freqs, seconds, rate=rate, channels=channels, amplitude=0.2).T
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate, format=fmt)
    return path


def _chunk(tag: bytes, payload: bytes) -> bytes:
    pad = b"\0" if len(payload) % 2 else b""
    return tag + struct.pack("<I", len(payload)) + payload + pad


def _list(kind: bytes, *chunks: bytes) -> bytes:
    return _chunk(b"LIST", kind + b"".join(chunks))


def write_sf2(path: Path, programs: tuple[int, ...] = (0, 1)) -> Path:
    """A minimal SoundFont 2: MIDI programs `programs` (bank 0) all play one looped 440 Hz sine
    whose root key is 69, on keys 0-100 (higher keys are silent), with a 0.2 s volume release."""
    cycles = 200
    sine = np.sin(2 * np.pi * np.arange(100 * cycles) / 100)
    pcm = (0.5 * 32767 * sine).astype("<i2").tobytes() + b"\0" * 92  # 46 zero samples after it
    name = lambda text: text.encode().ljust(20, b"\0")  # noqa: E731
    phdr = b"".join(
        struct.pack("<20sHHHIII", name(f"sine{p}"), p, 0, i, 0, 0, 0) for i, p in enumerate(programs)
    )
    phdr += struct.pack("<20sHHHIII", name("EOP"), 0, 0, len(programs), 0, 0, 0)
    pbag = b"".join(struct.pack("<HH", i, 0) for i in range(len(programs) + 1))
    pgen = struct.pack("<HH", 41, 0) * len(programs) + struct.pack("<HH", 0, 0)  # 41 = instrument
    inst = struct.pack("<20sH", name("sine"), 0) + struct.pack("<20sH", name("EOI"), 1)
    igen = (
        struct.pack("<HBB", 43, 0, 100)  # keyRange (first)
        + struct.pack("<Hh", 38, -2786)  # releaseVolEnv: 2 ** (-2786 / 1200) = 0.2 s
        + struct.pack("<HH", 54, 1)  # sampleModes: loop
        + struct.pack("<HH", 53, 0)  # sampleID (last)
        + struct.pack("<HH", 0, 0)
    )
    ibag = struct.pack("<HH", 0, 0) + struct.pack("<HH", 4, 0)
    shdr = struct.pack(
        "<20sIIIIIBbHH", name("sine"), 0, 100 * cycles, 100, 100 * cycles, SINE_RATE, 69, 0, 0, 1
    )
    shdr += struct.pack("<20sIIIIIBbHH", name("EOS"), 0, 0, 0, 0, 0, 0, 0, 0, 0)
    mod_end = b"\0" * 10
    body = b"sfbk" + _list(
        b"INFO",
        _chunk(b"ifil", struct.pack("<HH", 2, 1)),
        _chunk(b"isng", b"EMU8000\0"),
        _chunk(b"INAM", b"m2l test\0"),
    )
    body += _list(b"sdta", _chunk(b"smpl", pcm))
    body += _list(
        b"pdta",
        _chunk(b"phdr", phdr),
        _chunk(b"pbag", pbag),
        _chunk(b"pmod", mod_end),
        _chunk(b"pgen", pgen),
        _chunk(b"inst", inst),
        _chunk(b"ibag", ibag),
        _chunk(b"imod", mod_end),
        _chunk(b"igen", igen),
        _chunk(b"shdr", shdr),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def _zip(path: Path, members: dict[str, bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _ogg_bytes(tmp: Path, seconds: float = 0.3) -> bytes:
    return write_audio(tmp / "t.ogg", seconds, 22050, 2).read_bytes()


KLETTRES_LANGUAGES = (
    "ar",
    "cs",
    "da",
    "de",
    "en",
    "en_GB",
    "es",
    "fr",
    "he",
    "hu",
    "it",
    "lt",
    "nl",
    "pt_BR",
    "ru",
    "uk",
)


def build_package(package: str, root: Path) -> None:
    """Write a small stand-in for `package`'s file tree under `root` (the layout `SOURCES` expects)."""
    share = root / "usr/share"
    if package == "ufoai-music":
        ogg = _ogg_bytes(root)
        _zip(
            share / "games/ufoai/base/0music.pk3",
            {
                "music/": b"",
                "music/a.ogg": ogg,
                "music/b.ogg": ogg,
                "music/notes.txt": b"x",
                "sound/boom.ogg": ogg,
            },
        )
        (share / "doc/ufoai-music").mkdir(parents=True)
        (share / "doc/ufoai-music/copyright").write_text(
            "Files: *\nCopyright: team\nLicense: GPL-2+\n\nFiles:\n base/music/b.ogg\n"
            " base/sound/boom.ogg\nCopyright: someone\nLicense: CC-BY-3.0\n"
        )
        (root / "t.ogg").unlink()
    elif package == "wesnoth-1.16-music":
        music = share / "games/wesnoth/1.16/data/core/music"
        write_audio(music / "battle.ogg")
        write_audio(music / "calm.flac", channels=2)
        (music / "broken.ogg").write_bytes(b"OggS but not really an ogg file" * 4)
    elif package == "hedgewars-data":
        write_audio(share / "games/hedgewars/Data/Music/theme.ogg")
        (share / "games/hedgewars/Data/Music/alias.ogg").symlink_to("theme.ogg")
        (share / "games/hedgewars/Data/Music/dangling.ogg").symlink_to("missing.ogg")
        write_audio(share / "games/hedgewars/Data/Sounds/boom.ogg")
    elif package == "supertux-data":
        write_audio(share / "games/supertux2/music/forest/woods.ogg", rate=44100)
        (share / "games/supertux2/music/forest/woods.music").write_text("(music)")
    elif package == "nexuiz-music":
        pk3 = share / "games/nexuiz/data/music.pk3"
        wav = write_audio(root / "t.wav", seconds=0.5).read_bytes()
        _zip(pk3, {"sound/cdtracks/track1.ogg": _ogg_bytes(root), "sound/cdtracks/zz.wav": wav})
        (root / "t.ogg").unlink()
        (root / "t.wav").unlink()
        data = bytearray(pk3.read_bytes())
        at = data.index(b"zz.wav") + 6 + 100  # inside the member's data: its CRC no longer matches
        data[at : at + 8] = b"garbage!"
        pk3.write_bytes(bytes(data))
    elif package == "klettres-data":
        for i, lang in enumerate(KLETTRES_LANGUAGES):
            for j in range(2 + i % 3):
                write_audio(share / f"klettres/{lang}/alpha/{j}.wav", seconds=0.1, rate=44100)
        (share / "klettres/pics").mkdir()
        (share / "klettres/pics/a.png").write_bytes(b"png")
    elif package == "alsa-utils":
        write_audio(share / "sounds/alsa/Front_Center.wav", rate=48000)
    elif package == "fluid-soundfont-gm":
        write_sf2(share / "sounds/sf2/FluidR3_GM.sf2", programs=(0, 40))
    else:
        raise AssertionError(f"no fake for {package}")


class FakePackages:
    """Stands in for `DebianPackages`: builds trees with `build_package`, counts extractions,
    and can be told to raise for a package."""

    def __init__(self) -> None:
        self.extracted: Counter[str] = Counter()
        self.fail: dict[str, BaseException] = {}

    def check(self) -> None:
        pass

    def extract(self, package: str, work: Path) -> Extracted:
        if package in self.fail:
            raise self.fail[package]
        self.extracted[package] += 1
        build_package(package, work / "root")
        return Extracted(work / "root", "1.0-test")


@pytest.fixture
def fake_packages() -> FakePackages:
    return FakePackages()


@pytest.fixture(scope="session")
def sine_sf2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sf2(tmp_path_factory.mktemp("sf2") / "sine.sf2")


@pytest.fixture
def audio_writer() -> Callable[..., Path]:
    return write_audio
