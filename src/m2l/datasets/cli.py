"""`m2l data fetch` (registered in `m2l.cli.COMMANDS`, which reports its errors as one line)."""

from __future__ import annotations

import argparse
import errno
from pathlib import Path

from m2l.cli.args import add_quiet, comma_subset
from m2l.datasets import SETS
from m2l.errors import M2LError


def add_data(p: argparse.ArgumentParser) -> None:
    """Declare `m2l data fetch DATA_DIR [--what ...] [--force] [--quiet]`."""
    sub = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    fetch = sub.add_parser(
        "fetch",
        help="build music/speech/notes/excerpts splits with manifests from Debian packages",
        description="Build DATA_DIR/{music,speech}/{train,val,test} from Debian packages (apt-get "
        "download + dpkg-deb -x, no root) and DATA_DIR/notes, labelled notes rendered from "
        "the General MIDI soundfont, and DATA_DIR/excerpts, composed multi-instrument excerpts "
        "labelled with key, tempo and meter, rendered from it; one manifest.jsonl per split "
        "(notes, excerpts: one). Finished "
        "parts are skipped when run again.",
    )
    fetch.add_argument("data_dir", metavar="DATA_DIR", help="folder to build (created if missing)")
    fetch.add_argument(
        "--what",
        type=comma_subset(SETS),
        default=list(SETS),
        metavar="SETS",
        help=f"comma-separated sets to build (default: {','.join(SETS)})",
    )
    fetch.add_argument("--force", action="store_true", help="rebuild parts that are already finished")
    add_quiet(fetch, "no progress on stderr")


def format_summary(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    """A small table of what `Fetcher.run` returns: set, split, files, minutes."""
    lines = [f"{'set':<10}{'split':<7}{'files':>7}{'minutes':>10}"]
    for name, splits in summary.items():
        for split, row in splits.items():
            lines.append(f"{name:<10}{split:<7}{row['files']:>7}{row['seconds'] / 60:>10.1f}")
    return "\n".join(lines)


def run_data(args: argparse.Namespace) -> int:
    """Run `m2l data fetch`; prints a summary table (files and minutes per split) on stdout."""
    from m2l.datasets.fetch import Fetcher

    try:
        summary = Fetcher(Path(args.data_dir), force=args.force, quiet=args.quiet).run(args.what)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise M2LError(f"{err.filename or args.data_dir}: disk full (no space left on device)") from None
        raise M2LError(f"{err.filename or args.data_dir}: {err.strerror or err}") from None
    print(format_summary(summary))
    return 0
