"""`scripts/quickstart.sh`: never overwrites an input, takes paths from the caller's folder, and
installs nothing while the install is current.

The script runs in a copy of the repository's scripts whose `src` and `.venv` lead to the
checkout and environment these tests run in (so nothing is installed and the checkout is left
alone), with a `python3` and a `pip` first on PATH that fail and leave a mark: an install starts
with `python3 -m venv`, so the mark says whether one was tried.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cli_testing import write_tone

import m2l

SCRIPTS = Path(__file__).parents[2] / "scripts"
SOURCE = Path(m2l.__file__).resolve().parents[1]  # the src folder m2l is imported from

pytestmark = pytest.mark.skipif(
    sys.prefix == sys.base_prefix or not (SOURCE.parent / "pyproject.toml").is_file(),
    reason="needs m2l installed from a checkout into a virtual environment",
)


class Quickstart:
    """A repository copy to run the quickstart in, and a folder elsewhere to run it from."""

    def __init__(self, root: Path) -> None:
        self.repo, self.caller, self.shims = root / "repo", root / "caller", root / "shims"
        (self.repo / "scripts").mkdir(parents=True)
        for name in ("quickstart.sh", "setup_env.sh"):
            shutil.copy(SCRIPTS / name, self.repo / "scripts" / name)
        shutil.copy(SOURCE.parent / "pyproject.toml", self.repo / "pyproject.toml")
        (self.repo / "src").symlink_to(SOURCE)
        venv = self.repo / ".venv"
        venv.mkdir()
        for entry in Path(sys.prefix).iterdir():
            if not entry.name.startswith("."):
                (venv / entry.name).symlink_to(entry)
        self.stamp = venv / ".m2l-installed"
        self.stamp.write_text("hub\n")
        self.mark = root / "install-tried"
        self.shims.mkdir()
        for name in ("python3", "pip", "pip3"):
            shim = self.shims / name
            shim.write_text(f"#!/bin/sh\ntouch '{self.mark}'\nexit 1\n")
            shim.chmod(0o755)
        self.caller.mkdir()

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`bash <repo>/scripts/quickstart.sh ARGS...` from the caller's folder."""
        env = {**os.environ, "PATH": f"{self.shims}{os.pathsep}{os.environ['PATH']}"}
        env.pop("VIRTUAL_ENV", None)
        script = self.repo / "scripts" / "quickstart.sh"
        return subprocess.run(
            ["bash", str(script), *args],
            cwd=self.caller,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )


@pytest.fixture()
def quickstart(tmp_path: Path) -> Quickstart:
    return Quickstart(tmp_path)


def _refused(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quickstart: error: ") and fragment in lines[0], (
        result.stderr
    )


@pytest.mark.parametrize("spelling", ["mine.wav", "./sub/../mine.wav", "link.wav"])
def test_the_input_as_output_is_refused_and_left_as_it_was(quickstart, spelling):
    src = write_tone(quickstart.caller / "mine.wav")
    (quickstart.caller / "sub").mkdir()
    (quickstart.caller / "link.wav").symlink_to("mine.wav")
    before = src.read_bytes()
    _refused(quickstart.run("mine.wav", spelling), "is the input file")
    assert src.read_bytes() == before
    assert not quickstart.mark.exists()


def test_an_existing_output_the_user_names_is_refused(quickstart):
    write_tone(quickstart.caller / "mine.wav")
    other = quickstart.caller / "other.wav"
    other.write_bytes(b"keep me")
    _refused(quickstart.run("mine.wav", "other.wav"), "other.wav already exists")
    assert other.read_bytes() == b"keep me"


def test_relative_paths_from_another_folder_and_no_install_while_current(quickstart, tiny_checkpoint):
    write_tone(quickstart.caller / "in" / "mine.wav", seconds=0.5)
    model = os.path.relpath(tiny_checkpoint, quickstart.caller)
    result = quickstart.run("in/mine.wav", "out/mine.wav", model)
    assert result.returncode == 0, result.stderr
    assert (quickstart.caller / "out" / "mine.wav").is_file()
    assert not (quickstart.repo / "out").exists() and not quickstart.mark.exists()
    last = result.stdout.strip().splitlines()[-1]
    assert "in a new shell" in last and ".venv/bin/activate" in last


def test_a_stale_install_is_redone(quickstart):
    write_tone(quickstart.caller / "mine.wav")
    os.utime(quickstart.stamp, (0, 0))  # older than pyproject.toml
    assert quickstart.run("mine.wav", "out.wav").returncode != 0  # the failing python3 shim
    assert quickstart.mark.exists()
