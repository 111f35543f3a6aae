"""The one atomic writer (`m2l.files`): exclusive publication, cleanup, errors, permissions."""

from __future__ import annotations

import errno
import os
import stat
import threading
from pathlib import Path

import pytest

from m2l.errors import M2LError
from m2l.files import (
    EXISTS_MESSAGE,
    RESUMABLE_EXISTS_MESSAGE,
    atomic_output,
    check_output,
    check_output_folder,
    exists_error,
    move_into_place,
    regular_file,
    write_bytes,
    write_text,
)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_exists_wording_is_the_standard_one(tmp_path: Path) -> None:
    path = tmp_path / "out.json"
    assert str(exists_error(path)) == f"{path}: already exists (pass --force to overwrite)"
    assert EXISTS_MESSAGE.format(path="x") == "x: already exists (pass --force to overwrite)"


def test_an_output_of_a_resumable_job_names_skip_existing_too(tmp_path: Path) -> None:
    path = tmp_path / "out.m2l"
    expected = f"{path}: already exists (pass --skip-existing to keep it, --force to overwrite)"
    assert str(exists_error(path, resumable=True)) == expected
    assert RESUMABLE_EXISTS_MESSAGE.format(path=path) == expected


def test_output_folder_wordings_are_the_standard_ones(tmp_path: Path) -> None:
    file, folder = tmp_path / "file", tmp_path / "folder"
    file.write_text("x")
    folder.mkdir()
    check_output_folder(folder, force=False)  # empty: fine
    check_output_folder(tmp_path / "missing", force=False)
    (folder / "a.wav").write_text("x")
    check_output_folder(folder)  # not asked about its content
    check_output_folder(folder, force=True)
    with pytest.raises(M2LError) as info:
        check_output_folder(folder, force=False)
    assert str(info.value) == f"{folder}: already exists and is not empty (pass --force to overwrite)"
    with pytest.raises(M2LError) as info:
        check_output_folder(file, force=True)
    assert str(info.value) == f"{file}: exists and is not a directory (output folder expected)"
    with pytest.raises(M2LError) as info:
        check_output(folder, force=True)
    assert str(info.value) == f"{folder}: is a directory, expected an output file path"


def test_second_write_without_force_fails_and_keeps_the_first(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.txt"
    write_text(path, "first")
    with pytest.raises(M2LError) as info:
        write_text(path, "second")
    assert str(info.value) == f"{path}: already exists (pass --force to overwrite)"
    assert path.read_text() == "first"
    write_bytes(path, b"third", force=True)
    assert path.read_bytes() == b"third"
    assert _names(path.parent) == ["out.txt"]


def test_a_file_published_meanwhile_wins_over_a_write_without_force(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    with pytest.raises(M2LError, match="already exists"), atomic_output(path) as tmp:
        tmp.write_text("mine")
        path.write_text("another process")  # appears after the early check, before publishing
    assert path.read_text() == "another process"
    assert _names(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failing_block_leaves_nothing(tmp_path: Path, error: BaseException) -> None:
    path = tmp_path / "out.bin"
    with pytest.raises(type(error)), atomic_output(path) as tmp:
        tmp.write_bytes(b"partial")
        raise error
    assert _names(tmp_path) == []
    path.write_text("old")
    with pytest.raises(type(error)), atomic_output(path, force=True) as tmp:
        tmp.write_bytes(b"partial")
        raise error
    assert path.read_text() == "old" and _names(tmp_path) == ["out.bin"]


@pytest.mark.parametrize(
    "code, force, reason",
    [
        (errno.ENOSPC, False, "disk full"),
        (errno.EDQUOT, False, "disk quota exceeded"),
        (errno.EROFS, True, "read-only file system"),
        (errno.EACCES, True, "permission denied"),
    ],
)
def test_publication_errors_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, force: bool, reason: str
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace" if force else "link", fail)
    path = tmp_path / "out.txt"
    with pytest.raises(M2LError) as info:
        write_text(path, "data", force=force)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: cannot write: ") and reason in message
    assert _names(tmp_path) == []


def test_a_full_disk_while_writing_the_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    with pytest.raises(M2LError, match=r"out\.txt: cannot write: disk full"), atomic_output(path) as tmp:
        tmp.write_text("some")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert _names(tmp_path) == []


@pytest.mark.parametrize("force", [False, True])
def test_a_full_disk_reported_by_safetensors_is_one_line(tmp_path: Path, force: bool) -> None:
    """safetensors reports an OS error as a `SafetensorError` whose text ends in "(os error N)"."""
    from safetensors import SafetensorError

    path = tmp_path / "out.m2l"
    full = SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
    with pytest.raises(M2LError) as info, atomic_output(path, force=force) as tmp:
        tmp.write_bytes(b"partial")
        raise full
    assert str(info.value) == f"{path}: cannot write: disk full (no space left on device)"
    assert _names(tmp_path) == []
    other = SafetensorError("Error while serializing: invalid metadata")  # not an OS error
    with pytest.raises(SafetensorError), atomic_output(path, force=force):
        raise other
    assert _names(tmp_path) == []


def test_other_errors_of_the_block_pass_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_output(tmp_path / "out.txt"):
        open(tmp_path / "missing")  # noqa: SIM115 - the error is the point
    assert _names(tmp_path) == []


def test_published_file_has_the_permissions_open_would_give(tmp_path: Path) -> None:
    for mask in (0o022, 0o077, 0o002):
        old = os.umask(mask)
        try:
            path = write_text(tmp_path / f"m{mask:o}.txt", "x")
            plain = tmp_path / f"plain{mask:o}.txt"
            plain.write_text("x")
        finally:
            os.umask(old)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
        assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)


def test_a_writer_that_recreates_the_temp_file_does_not_change_the_published_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        with atomic_output(tmp_path / "out.bin") as tmp:
            tmp.unlink()  # as safetensors does: a file of its own, 0o600
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == 0o644


def test_two_writers_without_force_exactly_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "race.txt"
    both_written = threading.Barrier(2, timeout=30)
    outcomes: dict[str, str] = {}

    def writer(name: str) -> None:
        try:
            with atomic_output(path) as tmp:
                tmp.write_text(name)
                both_written.wait()  # both passed the early check and hold a complete temp file
            outcomes[name] = "ok"
        except M2LError as err:
            outcomes[name] = str(err)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = [name for name, outcome in outcomes.items() if outcome == "ok"]
    assert len(outcomes) == 2 and len(winners) == 1
    loser = ({"a", "b"} - set(winners)).pop()
    assert outcomes[loser] == f"{path}: already exists (pass --force to overwrite)"
    assert path.read_text() == winners[0]
    assert _names(tmp_path) == ["race.txt"]


def test_exclusive_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "out.txt"
    write_text(path, "first")
    with pytest.raises(M2LError, match="already exists"):
        write_text(path, "second")
    assert path.read_text() == "first" and _names(tmp_path) == ["out.txt"]


def test_output_paths_that_cannot_be_files(tmp_path: Path) -> None:
    with pytest.raises(M2LError, match="is a directory"):
        check_output(tmp_path, force=True)
    (tmp_path / "file").write_text("x")
    with pytest.raises(M2LError, match="not a folder"):
        write_text(tmp_path / "file" / "out.txt", "x")
    check_output(tmp_path / "new.txt", force=False)


def test_move_into_place(tmp_path: Path) -> None:
    src, dest = tmp_path / "staged", tmp_path / "deep" / "dest.wav"
    src.write_bytes(b"one")
    move_into_place(src, dest)
    assert dest.read_bytes() == b"one" and not src.exists()
    src.write_bytes(b"two")
    with pytest.raises(M2LError, match="already exists"):
        move_into_place(src, dest)
    assert dest.read_bytes() == b"one" and src.exists()
    move_into_place(src, dest, force=True)
    assert dest.read_bytes() == b"two" and not src.exists()
    assert _names(dest.parent) == ["dest.wav"]


def test_move_across_file_systems_copies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_replace = os.replace
    calls: list[Path] = []

    def cross_device_once(a: object, b: object) -> None:
        if not calls:
            calls.append(Path(str(b)))
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", cross_device_once)
    src, dest = tmp_path / "staged", tmp_path / "dest"
    src.write_bytes(b"data")
    dest.write_bytes(b"old")
    move_into_place(src, dest, force=True)
    assert calls == [dest] and dest.read_bytes() == b"data" and not src.exists()
    assert _names(tmp_path) == ["dest"]


def test_regular_file_refuses_what_would_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(M2LError, match="named pipe"):
        regular_file(fifo)
    with pytest.raises(M2LError, match="is a directory"):
        regular_file(tmp_path)
    with pytest.raises(M2LError, match="no such file"):
        regular_file(tmp_path / "missing")
    (tmp_path / "f").write_text("x")
    assert regular_file(tmp_path / "f").st_size == 1


def test_write_text_makes_folders_and_is_exclusive(tmp_path):
    target = tmp_path / "sub" / "r.json"
    write_text(target, "one")
    write_text(target, "two", force=True)
    assert target.read_text() == "two" and [p.name for p in target.parent.iterdir()] == ["r.json"]
    with pytest.raises(M2LError, match="already exists"):
        write_text(target, "three")
    assert target.read_text() == "two"
    (tmp_path / "file").write_text("x")
    with pytest.raises(M2LError, match="cannot write"):
        write_text(tmp_path / "file" / "r.json", "one")  # its folder is a file
