"""Safe file access: the one atomic writer behind every file m2l writes, and regular-file checks.

`atomic_output(path, force=...)` hands the caller a hidden temporary file in the destination
folder (`.<name>.tmp-<random hex>`). When the block succeeds the temp file is synced to disk
and published under `path`:

- without `force` exclusively (a hard link, which fails when `path` exists), so of two processes
  writing the same output only one succeeds and the other gets the standard "already exists"
  error; on a file system without hard links an empty placeholder created with O_EXCL reserves
  the name before the rename;
- with `force` by an atomic rename over any existing file.

Either way a reader sees the old file or the complete new one, never a partial one (only on the
placeholder fallback may it briefly see an empty file where there was none), and a failed
or interrupted write (any exception, KeyboardInterrupt included) leaves no temp file behind and
the previous file untouched. The published file has the permissions `open()` would give it
(0o666 less the umask: 0o644 under the usual umask 022), whatever the writer in the block did
to the temp file's mode. A full disk, a read-only file system or a permission problem becomes a
one-line `M2LError` naming the destination, also when the writer in the block reports it as a
Rust I/O error (safetensors' `SafetensorError: ... No space left on device (os error 28)`).

This module sits at the bottom of the package: it imports only the standard library and
`m2l.errors`, so every layer may use it.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import stat
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from m2l.errors import M2LError

FORCE_HINT = "(pass --force to overwrite)"
"""How every "already exists" error ends: the one way out the command line offers."""
RESUME_HINT = "(pass --skip-existing to keep it, --force to overwrite)"
"""How "already exists" ends for an output of a job that `--skip-existing` resumes (the codec
commands writing into an output folder)."""
_EXISTS = "{path}: already exists "
EXISTS_MESSAGE = _EXISTS + FORCE_HINT
"""The one wording for "the output exists and --force was not given" (`exists_error`)."""
RESUMABLE_EXISTS_MESSAGE = _EXISTS + RESUME_HINT
"""`EXISTS_MESSAGE` for an output of a resumable job (`exists_error(path, resumable=True)`)."""
NOT_EMPTY_MESSAGE = _EXISTS + "and is not empty " + FORCE_HINT
"""The one wording for "the output folder holds files and --force was not given"."""
NOT_A_FOLDER_MESSAGE = "{path}: exists and is not a directory (output folder expected)"
"""The one wording for "an output folder was asked for, and a file is there"."""
IS_A_FOLDER_MESSAGE = "{path}: is a directory, expected an output file path"
"""The one wording for "an output file was asked for, and a folder is there"."""

_WRITE_REASONS = {
    errno.ENOSPC: "disk full (no space left on device)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EFBIG: "file too large",
}
# How Rust's std::io::Error shows an OS error ("No space left on device (os error 28)").
_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")
# os.link fails with these where the file system has no hard links (FAT, some network mounts).
_NO_HARD_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS})
_NOT_REGULAR = {
    stat.S_IFDIR: "is a directory",
    stat.S_IFIFO: "is a named pipe (FIFO), not a regular file",
    stat.S_IFSOCK: "is a socket, not a regular file",
    stat.S_IFCHR: "is a character device, not a regular file",
    stat.S_IFBLK: "is a block device, not a regular file",
}
_TEMP_NAME_LIMIT = 200  # keeps ".<name>.tmp-<token>" within the usual 255-byte name limit


def exists_error(path: str | os.PathLike[str], *, resumable: bool = False) -> M2LError:
    """The standard error for an output that exists when --force was not given; `resumable`: the
    output of a job that --skip-existing can resume, whose hint names that option too."""
    return M2LError((RESUMABLE_EXISTS_MESSAGE if resumable else EXISTS_MESSAGE).format(path=path))


def not_empty_error(path: str | os.PathLike[str]) -> M2LError:
    """The standard error for an output folder that holds files when --force was not given."""
    return M2LError(NOT_EMPTY_MESSAGE.format(path=path))


def not_a_folder_error(path: str | os.PathLike[str]) -> M2LError:
    """The standard error for an output folder path where a file (or other non-folder) is."""
    return M2LError(NOT_A_FOLDER_MESSAGE.format(path=path))


def check_output_folder(path: str | os.PathLike[str], *, force: bool | None = None) -> None:
    """Refuse an output folder path that is something other than a folder; with `force` given
    (True or False), also refuse a folder that holds files unless `force`.

    Raises:
        M2LError: `NOT_A_FOLDER_MESSAGE` or `NOT_EMPTY_MESSAGE`.
    """
    dest = Path(path)
    if os.path.lexists(dest) and not dest.is_dir():
        raise not_a_folder_error(dest)
    if force is False and dest.is_dir() and any(dest.iterdir()):
        raise not_empty_error(dest)


def write_error(path: str | os.PathLike[str], err: OSError) -> M2LError:
    """A one-line error for an `OSError` met while writing `path` (disk full, read-only, ...)."""
    if err.errno in (errno.ENOTDIR, errno.EEXIST):  # from creating the folder
        reason = "a parent of it is not a folder"
    else:
        reason = _WRITE_REASONS.get(err.errno or 0) or err.strerror or str(err) or type(err).__name__
    return M2LError(" ".join(f"{path}: cannot write: {reason}".split()))


def check_output(path: str | os.PathLike[str], force: bool) -> None:
    """Refuse an output path that is a folder, or that exists when `force` is False.

    Writers call this before any expensive work; `atomic_output` checks again when publishing.

    Raises:
        M2LError: `path` is a directory, or exists and not `force`.
    """
    dest = Path(path)
    if dest.is_dir():
        raise M2LError(IS_A_FOLDER_MESSAGE.format(path=dest))
    if not force and os.path.lexists(dest):
        raise exists_error(dest)


@contextmanager
def atomic_output(path: str | os.PathLike[str], *, force: bool = False) -> Iterator[Path]:
    """Write a file atomically: `with atomic_output(path) as tmp:` write `tmp`, by path.

    The temporary file exists (empty) when the block starts, in `path`'s folder, which is
    created if missing. See the module docstring for how it is published.

    Args:
        path: the destination file.
        force: replace an existing file; without it the publication is exclusive.

    Yields:
        The temporary path to write.

    Raises:
        M2LError: `path` exists and not `force` (`EXISTS_MESSAGE`, also when another process
            published it meanwhile), is a directory, or cannot be written (disk full, read-only
            file system, permission denied...). Other exceptions of the block pass through.
    """
    dest = Path(path)
    check_output(dest, force)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _create_temp(dest)
        mode = stat.S_IMODE(os.stat(tmp).st_mode)
    except OSError as err:
        raise write_error(dest, err) from None
    try:
        try:
            yield tmp
        except OSError as err:
            if err.errno not in _WRITE_REASONS:
                raise
            raise write_error(dest, err) from None
        except Exception as err:  # a writer that reports OS errors as text (safetensors)
            code = _os_error_code(err)
            if code not in _WRITE_REASONS:
                raise
            raise write_error(dest, OSError(code, os.strerror(code))) from None
        _publish_new(tmp, dest, force, mode)
    finally:
        _remove(tmp)
    _sync_dir(dest.parent)


def _os_error_code(err: Exception) -> int | None:
    """The OS error number a non-`OSError` exception reports in its text the way Rust's
    `std::io::Error` does ("... (os error 28)"), or None."""
    found = _RUST_OS_ERROR.search(str(err))
    return int(found.group(1)) if found else None


def write_bytes(path: str | os.PathLike[str], data: bytes, *, force: bool = False) -> Path:
    """Write `data` to `path` through `atomic_output`; returns the path.

    Raises:
        M2LError: as `atomic_output`; any `OSError` of the write is one too.
    """
    try:
        with atomic_output(path, force=force) as tmp, open(tmp, "wb") as f:
            f.write(data)
    except OSError as err:
        raise write_error(path, err) from None
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str, *, force: bool = False) -> Path:
    """Write UTF-8 `text` to `path` through `atomic_output` (see `write_bytes`); returns the path."""
    return write_bytes(path, text.encode("utf-8"), force=force)


def move_into_place(
    src: str | os.PathLike[str], dest: str | os.PathLike[str], *, force: bool = False
) -> Path:
    """Move a finished file `src` to `dest`, synced and published like `atomic_output` does.

    A rename where both are on one file system, else a copy through `atomic_output`; `src` is
    gone afterwards (unless the move fails).

    Raises:
        M2LError: as `atomic_output`.
    """
    src, target = Path(src), Path(dest)
    check_output(target, force)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _sync_file(src)
        _publish(src, target, force)
    except FileExistsError:
        raise exists_error(target) from None
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise write_error(target, err) from None
        with atomic_output(target, force=force) as tmp:
            shutil.copyfile(src, tmp)
    _remove(src)
    _sync_dir(target.parent)
    return target


def regular_file(path: str | os.PathLike[str]) -> os.stat_result:
    """`os.stat` of `path`, refusing anything but a regular file (symlinks are followed).

    Readers call this before opening a user's file, so that a FIFO, socket or device gives a
    one-line error instead of a hang.

    Raises:
        M2LError: `path` is missing, unreadable, or not a regular file.
    """
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise M2LError(f"{path}: no such file") from None
    except OSError as err:
        raise M2LError(f"{path}: cannot read ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        problem = _NOT_REGULAR.get(stat.S_IFMT(info.st_mode), "is not a regular file")
        raise M2LError(f"{path}: {problem}")
    return info


def open_regular(path: str | os.PathLike[str]) -> int:
    """Open a regular file for reading without ever blocking; returns the raw descriptor.

    Checked before (`regular_file`) and after opening (non-blocking, so a FIFO swapped in
    meanwhile cannot hang the open). The caller closes the descriptor.

    Raises:
        M2LError: as `regular_file`, or the file cannot be opened.
    """
    regular_file(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as err:
        raise M2LError(f"{path}: cannot read ({err.strerror or err})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise M2LError(f"{path}: is not a regular file")
    return fd


def _create_temp(dest: Path) -> Path:
    """A new, empty, hidden file next to `dest`, with the mode `open()` would give (0o666 & ~umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp = dest.with_name(f".{dest.name[:_TEMP_NAME_LIMIT]}.tmp-{secrets.token_hex(6)}")
        try:
            os.close(os.open(tmp, flags, 0o666))
        except FileExistsError:
            continue
        return tmp


def _publish_new(tmp: Path, dest: Path, force: bool, mode: int) -> None:
    """Sync `tmp` and publish it as `dest` with permissions `mode`, with errors as one-line
    `M2LError`s. A writer that replaced the temp file by one of its own (safetensors creates
    its files 0o600) gets the mode the temp file was created with back."""
    try:
        if stat.S_IMODE(os.stat(tmp).st_mode) != mode:
            os.chmod(tmp, mode)
        _sync_file(tmp)
        _publish(tmp, dest, force)
    except FileExistsError:
        raise exists_error(dest) from None
    except OSError as err:
        raise write_error(dest, err) from None


def _publish(src: Path, dest: Path, force: bool) -> None:
    """Rename `src` onto `dest` (force), or link it there exclusively; `src` may remain."""
    if force:
        os.replace(src, dest)
        return
    try:
        os.link(src, dest)
    except OSError as err:  # FileExistsError (EEXIST) passes through
        if err.errno not in _NO_HARD_LINKS:
            raise
        _publish_reserved(src, dest)


def _publish_reserved(src: Path, dest: Path) -> None:
    """Exclusive publication without hard links: reserve `dest` with O_EXCL, then rename onto it."""
    os.close(os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        os.replace(src, dest)
    except BaseException:
        _remove(dest)
        raise


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable where the platform allows it (best effort)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Delete `path` if it is there, never raising (cleanup must not hide the real error)."""
    with suppress(OSError):
        os.unlink(path)


def warn_skipped(path: Path, line: str) -> None:
    """An `on_skip` for `walk_files` that raises the line as a `UserWarning` (one line on the CLI)."""
    warnings.warn(line, stacklevel=2)


def walk_files(
    root: str | os.PathLike[str],
    suffixes: frozenset[str] | None,
    *,
    skip: Path | None = None,
    on_skip: Callable[[Path, str], None] | None = None,
) -> list[Path]:
    """Regular files under `root` whose lowercase suffix is in `suffixes` (any file when None),
    recursively, sorted.

    Hidden names (a leading dot) are left out. Symlinked folders are followed, but a folder already
    visited (a symlink loop) is never entered twice; anything that is not a regular file once
    links are followed (a FIFO, socket, device, dangling or looping link) is left out, and
    `on_skip` hears its path and one line about it ("PATH: is a named pipe (FIFO), not a regular
    file; skipped").

    Args:
        root: the folder to walk.
        suffixes: lowercase suffixes with the dot (".wav"); None for every file.
        skip: a folder (resolved) that is not entered, e.g. the output folder inside the input.
        on_skip: receives (path, line) per left-out entry; silent when None.
    """
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        with suppress(OSError):
            info = os.stat(here)
            if (info.st_dev, info.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((info.st_dev, info.st_ino))
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (skip is None or _resolved(here / d) != skip)
        )
        for name in sorted(filenames):
            if name.startswith(".") or (suffixes is not None and Path(name).suffix.lower() not in suffixes):
                continue
            try:
                regular_file(here / name)
            except M2LError as err:
                if on_skip is not None:
                    on_skip(here / name, f"{err}; skipped")
                continue
            found.append(here / name)
    return found


def _resolved(path: Path) -> Path | None:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a looping link
        return None
