"""`m2l data fetch`: music, speech and notes from Debian packages, split, with manifests.

Packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` (no root, nothing
installed; `m2l.datasets.debian`), inside DATA_DIR/.m2l/cache, then only their audio files are
moved into place.

Splits. Music is split by package, so no composer is in two splits: train = ufoai-music,
wesnoth-1.16-music, hedgewars-data (Data/Music only); val = supertux-data (music/ only); test =
nexuiz-music. Speech: klettres-data is split by language, so no speaker is in two splits: its
language folders (regional variants joined: en_GB goes with en, pt_BR is pt) are ordered by the
SHA-256 of their name and, in that order, a language goes to test while test holds under 10 % of
the clips and would stay within 15 % with it, else to val under the same rule, else to train;
the alsa-utils voice clips go to test. Notes: see `m2l.datasets.notes`.

Parts (one per package, plus notes) are built from scratch unless DATA_DIR/.m2l/parts/<part>.json
exists and matches the part's recipe; that marker is written last (atomically), so an interrupted
run resumes at the first unfinished part, and `--force` rebuilds. Files are written to a temporary
name, synced and renamed (`m2l.files`). Files soundfile cannot read are left out (and counted in a warning).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from m2l.datasets import MANIFEST, SETS, SPLITS, check_entry
from m2l.datasets import notes as notes_mod
from m2l.datasets.debian import DebianPackages, Packages, disk_full
from m2l.errors import M2LError
from m2l.files import move_into_place, write_text

RECIPE_VERSION = 1
AUDIO_SUFFIXES = frozenset({".ogg", ".oga", ".opus", ".wav", ".flac", ".mp3"})
BY_LANGUAGE = "by-language"
SOUNDFONT_PACKAGE = "fluid-soundfont-gm"
SOUNDFONT_IN_PACKAGE = "usr/share/sounds/sf2/FluidR3_GM.sf2"
SOUNDFONT_LICENCE = "MIT"
SYSTEM_SOUNDFONTS = (Path("/") / SOUNDFONT_IN_PACKAGE,)
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


# ----------------------------------------------------------------------------- files
@dataclass(frozen=True)
class Item:
    """An audio file of a package: its path under the pick, the original parent folder name,
    and how to get it as a file on DATA_DIR's file system (`stage(tmp_dir) -> path`)."""

    rel: str
    parent: str
    stage: Callable[[Path], Path]


def _safe(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return bool(parts) and not rel.startswith("/") and ".." not in parts


def _member_stage(archive: zipfile.ZipFile, name: str, tmp: Path) -> Path:
    """A zip member, copied out into `tmp`."""
    out = tmp / f"staged{PurePosixPath(name).suffix}"
    with archive.open(name) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    return out


def _file_stage(path: Path, tmp: Path) -> Path:
    """A file is moved into place as it is; a symlink's target is copied into `tmp` instead."""
    if not path.is_symlink():
        return path
    shutil.copyfile(path, tmp / f"staged{path.suffix}")
    return tmp / f"staged{path.suffix}"


@contextmanager
def _items(root: Path, source: Source) -> Iterator[list[Item]]:
    """The audio files of `source` in the unpacked tree `root`, sorted by path."""
    archives = []
    items: list[Item] = []
    try:
        for pick in source.picks:
            where = root / pick.path
            if pick.inner is not None:
                try:
                    archive = zipfile.ZipFile(where)
                except FileNotFoundError:
                    raise M2LError(f"{source.package}: {pick.path} not found in the package") from None
                except (zipfile.BadZipFile, OSError) as err:
                    raise M2LError(f"{where}: not a readable zip archive ({err})") from None
                archives.append(archive)
                for name in archive.namelist():
                    rel, member = name[len(pick.inner) :], PurePosixPath(name)
                    if (
                        name.startswith(pick.inner)
                        and not name.endswith("/")
                        and _safe(rel)
                        and member.suffix.lower() in AUDIO_SUFFIXES
                    ):
                        items.append(Item(rel, member.parent.name, partial(_member_stage, archive, name)))
                continue
            if not where.is_dir():
                raise M2LError(f"{source.package}: folder {pick.path} not found in the package")
            for dirpath, dirnames, filenames in os.walk(where):
                dirnames.sort()
                for name in sorted(filenames):
                    path = Path(dirpath) / name
                    if path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
                        rel = path.relative_to(where).as_posix()
                        items.append(Item(rel, path.parent.name, partial(_file_stage, path)))
        if not items:
            raise M2LError(
                f"{source.package}: no audio files found in {', '.join(p.path for p in source.picks)}"
            )
        yield sorted(items, key=lambda item: item.rel)
    finally:
        for archive in archives:
            archive.close()


def _audio_info(path: Path) -> Any | None:
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError):
        return None
    return info if info.frames > 0 and info.samplerate > 0 else None


def _write_if_changed(path: Path, text: str) -> bool:
    """Write `text` to `path` atomically (`m2l.files.write_text`); False when it was already so."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    write_text(path, text, force=True)
    return True


def _usable_entries(entries: Any, where: str) -> bool:
    """True when a part marker's entries are manifest entries under <set>/<split>/."""
    if not isinstance(entries, list):
        return False
    try:
        for entry in entries:
            check_entry(entry, where)
    except M2LError:
        return False
    return all(len(parts := e["path"].split("/")) > 2 and parts[1] in SPLITS for e in entries)


# ----------------------------------------------------------------------------- the fetcher
class Fetcher:
    """Builds DATA_DIR part by part (see the module docstring)."""

    def __init__(
        self,
        data_dir: Path,
        packages: Packages | None = None,
        force: bool = False,
        quiet: bool = False,
        soundfonts: Sequence[Path] = SYSTEM_SOUNDFONTS,
        note_plan: Sequence[notes_mod.Note] | None = None,
    ) -> None:
        """DATA_DIR, the package source (default `DebianPackages`), --force, --quiet, installed
        soundfonts used before fetching one, and the notes to render (default `notes.plan_notes()`)."""
        self.data_dir = Path(data_dir)
        self.packages = packages or DebianPackages()
        self.force = force
        self.quiet = quiet
        self.soundfonts = tuple(soundfonts)
        self.note_plan = list(note_plan) if note_plan is not None else notes_mod.plan_notes()
        self.state = self.data_dir / ".m2l"

    def say(self, message: str) -> None:
        """One progress line on stderr."""
        if not self.quiet:
            print(f"m2l data: {message}", file=sys.stderr, flush=True)

    def run(self, what: Sequence[str] = SETS) -> dict[str, dict[str, dict[str, float]]]:
        """Build the sets in `what`; returns {set: {split: {"files": n, "seconds": s}}}."""
        unknown = sorted(set(what) - set(SETS))
        if unknown:
            raise M2LError(f"unknown data set(s) {', '.join(unknown)}; choose from {', '.join(SETS)}")
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            with self._lock():
                shutil.rmtree(self.state / "cache" / "work", ignore_errors=True)
                return {name: self._run_set(name) for name in SETS if name in what}
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full(err.filename or self.data_dir) from None
            raise

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.state / "lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise M2LError(f"{self.data_dir}: another `m2l data fetch` is writing here") from None
            yield

    def _marker(self, part: str) -> Path:
        return self.state / "parts" / f"{part}.json"

    def _done(self, part: str, recipe: dict[str, Any]) -> dict[str, Any] | None:
        """The marker of `part` when it is finished with this recipe (and not --force); a marker
        that cannot be read or whose entries are malformed (tampered with) means "rebuild"."""
        if self.force:
            return None
        path = self._marker(part)
        try:
            marker = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return None
        same = isinstance(marker, dict) and marker.get("recipe") == json.loads(json.dumps(recipe))
        return marker if same and _usable_entries(marker.get("entries"), str(path)) else None

    def _work(self) -> tempfile.TemporaryDirectory[str]:
        work = self.state / "cache" / "work"
        work.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=work)

    def _run_set(self, name: str) -> dict[str, dict[str, float]]:
        if name == "notes":
            entries = self._notes()
            self._write_manifest(self.data_dir / "notes" / MANIFEST, entries)
        else:
            entries = [e for source in SOURCES if source.set == name for e in self._source(source)]
            for split in SPLITS:
                self._write_manifest(
                    self.data_dir / name / split / MANIFEST,
                    [e for e in entries if e["path"].split("/")[1] == split],
                )
        summary = {split: {"files": 0, "seconds": 0.0} for split in SPLITS}
        for entry in entries:
            split = entry["path"].split("/")[1]
            summary[split]["files"] += 1
            summary[split]["seconds"] += entry["duration"]
        return summary

    def _write_manifest(self, path: Path, entries: list[dict[str, Any]]) -> None:
        ordered = sorted(entries, key=lambda e: e["path"])
        text = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in ordered)
        if _write_if_changed(path, text):
            self.say(f"wrote {path.relative_to(self.data_dir)} ({len(entries)} files)")

    def _source(self, source: Source) -> list[dict[str, Any]]:
        part = f"{source.set}.{source.package}"
        recipe = {"version": RECIPE_VERSION, **asdict(source)}
        marker = self._done(part, recipe)
        if marker is not None:
            self.say(f"{part}: done ({len(marker['entries'])} files), skipping")
            return marker["entries"]
        self.packages.check()
        for split in SPLITS:
            shutil.rmtree(self.data_dir / source.set / split / source.package, ignore_errors=True)
        self.say(f"{part}: fetching and unpacking {source.package}")
        with self._work() as work:
            extracted = self.packages.extract(source.package, Path(work))
            staging = Path(work) / "staging"
            staging.mkdir()
            entries, unreadable = self._place_files(source, extracted.root, staging)
        if unreadable:
            shown = ", ".join(unreadable[:3]) + (", ..." if len(unreadable) > 3 else "")
            warnings.warn(
                f"{source.package}: {len(unreadable)} file(s) that soundfile cannot read were "
                f"left out: {shown}",
                stacklevel=2,
            )
        done = {
            "recipe": recipe,
            "package_version": extracted.version,
            "entries": entries,
            "unreadable": unreadable,
        }
        _write_if_changed(self._marker(part), json.dumps(done, indent=1) + "\n")
        self.say(
            f"{part}: {len(entries)} files, {sum(e['duration'] for e in entries) / 60:.1f} min "
            f"({source.package} {extracted.version})"
        )
        return entries

    def _place_files(
        self, source: Source, root: Path, staging: Path
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """Move the package's readable audio files (unpacked under `root`) into the data folder;
        returns their manifest entries and the files soundfile cannot read."""
        copyright_file = root / "usr/share/doc" / source.package / "copyright"
        licences = dep5_file_licences(
            copyright_file.read_text(encoding="utf-8", errors="replace") if copyright_file.is_file() else ""
        )
        entries, unreadable = [], []
        with _items(root, source) as items:
            splits = (
                split_by_language([i.rel for i in items])
                if source.split == BY_LANGUAGE
                else dict.fromkeys((i.rel for i in items), source.split)
            )
            for item in items:
                try:
                    staged = item.stage(staging)
                except (zipfile.BadZipFile, zlib.error, EOFError):  # a corrupt archive member
                    staged = staging / "corrupt"
                info = _audio_info(staged)
                if info is None:
                    unreadable.append(item.rel)
                    continue
                rel = f"{source.set}/{splits[item.rel]}/{source.package}/{item.rel}"
                move_into_place(staged, self.data_dir / rel, force=True)
                entries.append(
                    {
                        "path": rel,
                        "duration": info.frames / info.samplerate,
                        "sample_rate": info.samplerate,
                        "channels": info.channels,
                        "licence": licences.get((item.parent, PurePosixPath(item.rel).name), source.licence),
                        "source": source.package,
                    }
                )
        return entries, unreadable

    def _soundfont(self) -> Path:
        """FluidR3_GM.sf2: installed, cached by an earlier run, or fetched now."""
        for path in self.soundfonts:
            if path.is_file():
                return path
        cached = self.state / "cache" / Path(SOUNDFONT_IN_PACKAGE).name
        if cached.is_file():
            return cached
        self.packages.check()
        self.say(f"notes: fetching and unpacking {SOUNDFONT_PACKAGE}")
        with self._work() as work:
            extracted = self.packages.extract(SOUNDFONT_PACKAGE, Path(work))
            found = extracted.root / SOUNDFONT_IN_PACKAGE
            if not found.is_file():
                raise M2LError(f"{SOUNDFONT_PACKAGE}: {SOUNDFONT_IN_PACKAGE} not found in the package")
            move_into_place(found, cached, force=True)
        return cached

    def _notes(self) -> list[dict[str, Any]]:
        version = notes_mod.renderer_version()
        recipe = {
            "version": RECIPE_VERSION,
            "renderer": f"tinysoundfont {version}",
            "sample_rate": notes_mod.SAMPLE_RATE,
            "seconds": notes_mod.NOTE_SECONDS,
            "hold": notes_mod.HOLD_SECONDS,
            "plan": hashlib.sha256(
                json.dumps([[n.relpath, n.labels()] for n in self.note_plan]).encode()
            ).hexdigest(),
        }
        marker = self._done("notes", recipe)
        if marker is not None:
            self.say(f"notes: done ({len(marker['entries'])} notes), skipping")
            return marker["entries"]
        if version is None:
            raise M2LError(
                "rendering notes needs tinysoundfont: pip install --no-deps tinysoundfont "
                "(or pip install 'm2l[data]')"
            )
        soundfont = self._soundfont()
        digest = hashlib.sha256()
        with open(soundfont, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        shutil.rmtree(self.data_dir / "notes", ignore_errors=True)
        self.say(f"notes: rendering {len(self.note_plan)} notes from {soundfont}")

        def progress(plan: Sequence[notes_mod.Note]) -> Any:
            from tqdm import tqdm

            return tqdm(
                plan, desc="notes", unit="note", file=sys.stderr, disable=self.quiet, dynamic_ncols=True
            )

        entries, counts = notes_mod.render_notes(
            self.data_dir, soundfont, self.note_plan, SOUNDFONT_LICENCE, SOUNDFONT_PACKAGE, progress
        )
        if counts["silent"]:
            warnings.warn(f"notes: {counts['silent']} silent note(s) left out", stacklevel=2)
        if counts["clipped"]:
            warnings.warn(f"notes: {counts['clipped']} note(s) clipped to [-1, 1]", stacklevel=2)
        _write_if_changed(
            self._marker("notes"),
            json.dumps(
                {
                    "recipe": recipe,
                    "soundfont_sha256": digest.hexdigest(),
                    "counts": counts,
                    "entries": entries,
                },
                indent=1,
            )
            + "\n",
        )
        return entries
