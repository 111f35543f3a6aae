"""`m2l data fetch`: music, speech, notes and excerpts from Debian packages, split, with manifests.

Packages are fetched with `apt-get download` and unpacked with `dpkg-deb -x` (no root, nothing
installed; `m2l.datasets.debian`), inside DATA_DIR/.m2l/cache, then only their audio files are
moved into place.

Splits. Music is split by package, so no composer is in two splits: train = ufoai-music,
wesnoth-1.16-music, hedgewars-data (Data/Music only); val = supertux-data (music/ only); test =
nexuiz-music. Speech: klettres-data is split by language, so no speaker is in two splits: its
language folders (regional variants joined: en_GB goes with en, pt_BR is pt) are ordered by the
SHA-256 of their name and, in that order, a language goes to test while test holds under 10 % of
the clips and would stay within 15 % with it, else to val under the same rule, else to train;
the alsa-utils voice clips go to test (`m2l.datasets.sources`). Notes and excerpts are rendered
from the FluidR3_GM soundfont: see `m2l.datasets.notes` and `m2l.datasets.excerpts`.

Parts (one per package, plus notes and excerpts) are built from scratch unless DATA_DIR/.m2l/parts/<part>.json
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

from m2l.datasets import MANIFEST, RENDERED_SETS, SETS, SPLITS, check_entry
from m2l.datasets import excerpts as excerpts_mod
from m2l.datasets import notes as notes_mod
from m2l.datasets.debian import DebianPackages, Packages, disk_full
from m2l.datasets.sources import BY_LANGUAGE, SOURCES, Source, dep5_file_licences, split_by_language
from m2l.errors import M2LError
from m2l.files import move_into_place, write_text

RECIPE_VERSION = 1
AUDIO_SUFFIXES = frozenset({".ogg", ".oga", ".opus", ".wav", ".flac", ".mp3"})
SOUNDFONT_PACKAGE = "fluid-soundfont-gm"
SOUNDFONT_IN_PACKAGE = "usr/share/sounds/sf2/FluidR3_GM.sf2"
SOUNDFONT_LICENCE = "MIT"
SYSTEM_SOUNDFONTS = (Path("/") / SOUNDFONT_IN_PACKAGE,)


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
        excerpt_plan: Sequence[excerpts_mod.Excerpt] | None = None,
    ) -> None:
        """DATA_DIR, the package source (default `DebianPackages`), --force, --quiet, installed
        soundfonts used before fetching one, the notes to render (default `notes.plan_notes()`)
        and the excerpts (default `excerpts.plan_excerpts()`)."""
        self.data_dir = Path(data_dir)
        self.packages = packages or DebianPackages()
        self.force = force
        self.quiet = quiet
        self.soundfonts = tuple(soundfonts)
        self.note_plan = list(note_plan) if note_plan is not None else notes_mod.plan_notes()
        self.excerpt_plan = list(excerpt_plan) if excerpt_plan is not None else excerpts_mod.plan_excerpts()
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
        if name in RENDERED_SETS:
            entries = self._notes() if name == "notes" else self._excerpts()
            self._write_manifest(self.data_dir / name / MANIFEST, entries)
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

    def _soundfont(self, part: str) -> Path:
        """FluidR3_GM.sf2: installed, cached by an earlier run, or fetched now (for `part`)."""
        for path in self.soundfonts:
            if path.is_file():
                return path
        cached = self.state / "cache" / Path(SOUNDFONT_IN_PACKAGE).name
        if cached.is_file():
            return cached
        self.packages.check()
        self.say(f"{part}: fetching and unpacking {SOUNDFONT_PACKAGE}")
        with self._work() as work:
            extracted = self.packages.extract(SOUNDFONT_PACKAGE, Path(work))
            found = extracted.root / SOUNDFONT_IN_PACKAGE
            if not found.is_file():
                raise M2LError(f"{SOUNDFONT_PACKAGE}: {SOUNDFONT_IN_PACKAGE} not found in the package")
            move_into_place(found, cached, force=True)
        return cached

    def _render_part(
        self,
        part: str,
        recipe: dict[str, Any],
        count: int,
        render: Callable[[Path, Callable[[Any], Any]], tuple[list[dict[str, Any]], dict[str, int]]],
        warn: dict[str, str],
    ) -> list[dict[str, Any]]:
        """Build a part rendered from the soundfont (DATA_DIR/<part>), unless it is done.

        Args:
            part: "notes" or "excerpts" (also the folder and the unit of the progress bar).
            recipe: what the part depends on besides the renderer's version.
            count: files to render (for the progress line).
            render: (soundfont, progress wrapper) -> (manifest entries, counts).
            warn: count name -> what a warning says when it is not 0.
        """
        version = notes_mod.renderer_version()
        recipe = {"version": RECIPE_VERSION, "renderer": f"tinysoundfont {version}", **recipe}
        marker = self._done(part, recipe)
        if marker is not None:
            self.say(f"{part}: done ({len(marker['entries'])} files), skipping")
            return marker["entries"]
        if version is None:
            raise M2LError(
                f"rendering {part} needs tinysoundfont: pip install --no-deps tinysoundfont "
                "(or pip install 'm2l[data]')"
            )
        soundfont = self._soundfont(part)
        digest = hashlib.sha256()
        with open(soundfont, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        shutil.rmtree(self.data_dir / part, ignore_errors=True)
        self.say(f"{part}: rendering {count} files from {soundfont}")

        def progress(plan: Any) -> Any:
            from tqdm import tqdm

            return tqdm(plan, desc=part, unit="file", file=sys.stderr, disable=self.quiet, dynamic_ncols=True)

        entries, counts = render(soundfont, progress)
        for name, what in warn.items():
            if counts.get(name):
                warnings.warn(f"{part}: {counts[name]} {what}", stacklevel=3)
        done = {
            "recipe": recipe,
            "soundfont_sha256": digest.hexdigest(),
            "counts": counts,
            "entries": entries,
        }
        _write_if_changed(self._marker(part), json.dumps(done, indent=1) + "\n")
        return entries

    def _notes(self) -> list[dict[str, Any]]:
        recipe = {
            "sample_rate": notes_mod.SAMPLE_RATE,
            "seconds": notes_mod.NOTE_SECONDS,
            "hold": notes_mod.HOLD_SECONDS,
            "plan": _plan_hash([[n.relpath, n.labels()] for n in self.note_plan]),
        }
        return self._render_part(
            "notes",
            recipe,
            len(self.note_plan),
            lambda soundfont, progress: notes_mod.render_notes(
                self.data_dir, soundfont, self.note_plan, SOUNDFONT_LICENCE, SOUNDFONT_PACKAGE, progress
            ),
            {"silent": "silent note(s) left out", "clipped": "note(s) clipped to [-1, 1]"},
        )

    def _excerpts(self) -> list[dict[str, Any]]:
        recipe = {
            "sample_rate": excerpts_mod.SAMPLE_RATE,
            "composer": excerpts_mod.COMPOSER_VERSION,
            "seed": excerpts_mod.SEED,
            "plan": _plan_hash([[e.relpath, e.labels()] for e in self.excerpt_plan]),
        }
        return self._render_part(
            "excerpts",
            recipe,
            len(self.excerpt_plan),
            lambda soundfont, progress: excerpts_mod.render_excerpts(
                self.data_dir,
                notes_mod.Renderer(soundfont, excerpts_mod.SAMPLE_RATE),
                self.excerpt_plan,
                SOUNDFONT_LICENCE,
                SOUNDFONT_PACKAGE,
                progress,
            ),
            {"silent": "silent excerpt(s) left out", "scaled": "excerpt(s) scaled down not to clip"},
        )


def _plan_hash(rows: list[Any]) -> str:
    """SHA-256 of a plan's JSON (part of a rendered part's recipe)."""
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()
