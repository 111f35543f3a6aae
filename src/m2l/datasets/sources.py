"""The Debian packages of the music and speech sets (`SOURCES`) and how their files are split.

Music is split by package; speech by language (`split_by_language`); licences come from the
package's debian/copyright (`dep5_file_licences`). See `m2l.datasets.fetch`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

BY_LANGUAGE = "by-language"
HELD_OUT_SHARE, HELD_OUT_CAP = 0.10, 0.15  # speech languages: target and cap per held-out split


@dataclass(frozen=True)
class Pick:
    """Audio inside a package: a folder, or a zip archive (.pk3) and the member folder in it."""

    path: str
    inner: str | None = None


@dataclass(frozen=True)
class Source:
    """A Debian package, the set and split it feeds (or BY_LANGUAGE), where its audio is, and
    its licence (read from its debian/copyright; explicit per-file entries there override it)."""

    package: str
    set: str
    split: str
    picks: tuple[Pick, ...]
    licence: str


SOURCES = (
    Source(
        "ufoai-music", "music", "train", (Pick("usr/share/games/ufoai/base/0music.pk3", "music/"),), "GPL-2+"
    ),
    Source(
        "wesnoth-1.16-music",
        "music",
        "train",
        (Pick("usr/share/games/wesnoth/1.16/data/core/music"),),
        "GPL-2+",
    ),
    Source("hedgewars-data", "music", "train", (Pick("usr/share/games/hedgewars/Data/Music"),), "GPL-2"),
    Source("supertux-data", "music", "val", (Pick("usr/share/games/supertux2/music"),), "GPL-2+"),
    Source(
        "nexuiz-music",
        "music",
        "test",
        (Pick("usr/share/games/nexuiz/data/music.pk3", "sound/cdtracks/"),),
        "GPL-2+",
    ),
    Source("klettres-data", "speech", BY_LANGUAGE, (Pick("usr/share/klettres"),), "GPL-2+"),
    Source("alsa-utils", "speech", "test", (Pick("usr/share/sounds/alsa"),), "GPL-2"),
)


# ----------------------------------------------------------------------------- splits, licences
def split_by_language(paths: Sequence[str]) -> dict[str, str]:
    """Assign "lang/.../clip.ogg" paths to splits by language, as the module docstring says."""
    groups: dict[str, list[str]] = {}
    for path in paths:
        groups.setdefault(path.split("/", 1)[0].split("_", 1)[0], []).append(path)
    counts = {"test": 0, "val": 0}
    splits = {}
    for language in sorted(groups, key=lambda g: hashlib.sha256(g.encode()).hexdigest()):
        size = len(groups[language])
        split = "train"
        for held in ("test", "val"):
            if counts[held] < HELD_OUT_SHARE * len(paths) and counts[held] + size <= HELD_OUT_CAP * len(
                paths
            ):
                split = held
                counts[held] += size
                break
        splits.update((path, split) for path in groups[language])
    return splits


def dep5_file_licences(text: str) -> dict[tuple[str, str], str]:
    """Licences of files named explicitly (no wildcard) in a machine-readable debian/copyright.

    Returns:
        {(parent folder name, file name): licence short name}; later paragraphs win.
    """
    found: dict[tuple[str, str], str] = {}
    for paragraph in re.split(r"\n\s*\n", text):
        files = re.search(r"^Files:(.*(?:\n[ \t].*)*)", paragraph, re.MULTILINE)
        licence = re.search(r"^License:[ \t]*(\S.*)$", paragraph, re.MULTILINE)
        if not files or not licence:
            continue
        for pattern in files.group(1).split():
            if not any(c in pattern for c in "*?["):
                parts = PurePosixPath(pattern).parts
                found[(parts[-2] if len(parts) > 1 else "", parts[-1])] = licence.group(1).strip()
    return found
