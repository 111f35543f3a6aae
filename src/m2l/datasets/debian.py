"""Where `m2l data fetch` gets Debian packages: `apt-get download` + `dpkg-deb -x`, as any user.

`Packages` is the interface `m2l.datasets.fetch.Fetcher` uses (tests pass a fake);
`DebianPackages` is the real one.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from m2l.errors import M2LError


@dataclass(frozen=True)
class Extracted:
    """An unpacked package: the root of its file tree and its version."""

    root: Path
    version: str


class Packages(Protocol):
    """Where packages come from (`DebianPackages`; tests use a fake): `check()` raises `M2LError`
    when none can be fetched (e.g. missing tools); `extract(package, work)` unpacks one under the
    empty folder `work`."""

    def check(self) -> None: ...

    def extract(self, package: str, work: Path) -> Extracted: ...


def _run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("E:")]
    return (errors or lines or ["no output"])[-1]


def disk_full(where: Path | str) -> M2LError:
    """The one-line error of a full disk at `where`."""
    return M2LError(
        f"{where}: disk full (no space left on device); free some space and run again "
        f"(finished parts are kept)"
    )


class DebianPackages:
    """`apt-get download` + `dpkg-deb -x`: works as any user once `apt-get update` has run."""

    def check(self) -> None:
        """Both tools must be on PATH."""
        for tool in ("apt-get", "dpkg-deb"):
            if shutil.which(tool) is None:
                raise M2LError(
                    f"{tool} not found: `m2l data fetch` needs a Debian or Ubuntu system "
                    f"(apt-get and dpkg-deb)"
                )

    def extract(self, package: str, work: Path) -> Extracted:
        """Download `package` into `work`, check the disk has room, unpack it, drop the .deb."""
        self.check()
        if shutil.which("apt-cache"):
            shown = _run(["apt-cache", "show", "--no-all-versions", package])
            size = re.search(r"^Size:\s*(\d+)", shown.stdout, re.MULTILINE)
            if shown.returncode != 0 or size is None:
                raise M2LError(
                    f"package {package} is not available from apt ({_last_line(shown.stderr)}); "
                    f"check the apt sources and run `apt-get update` as root"
                )
            free = shutil.disk_usage(work).free
            if free < 3 * int(size.group(1)):
                raise M2LError(
                    f"{work}: not enough disk space for {package}: need about "
                    f"{3 * int(size.group(1)) >> 20} MiB, {free >> 20} MiB free"
                )
        done = _run(["apt-get", "download", package], cwd=work)
        debs = sorted(work.glob("*.deb"))
        if done.returncode != 0 or not debs:
            message = done.stderr + done.stdout
            if "No space left" in message:
                raise disk_full(work)
            if re.search(r"Unable to locate|no installation candidate|Can't select", message):
                raise M2LError(
                    f"package {package} is not available from apt; check the apt sources "
                    f"and run `apt-get update` as root"
                )
            raise M2LError(f"apt-get download {package} failed: {_last_line(message)}")
        version = _run(["dpkg-deb", "-f", str(debs[0]), "Version"]).stdout.strip() or "unknown"
        root = work / "root"
        unpacked = _run(["dpkg-deb", "-x", str(debs[0]), str(root)])
        if unpacked.returncode != 0:
            if "No space left" in unpacked.stderr:
                raise disk_full(work)
            raise M2LError(f"dpkg-deb -x {debs[0].name} failed: {_last_line(unpacked.stderr)}")
        debs[0].unlink()
        return Extracted(root, version)
