"""Run a command until its process tree has used a CPU-time budget, then SIGTERM it.

Training runs compared "for the same budget" on a shared CPU get the same CPU seconds (user +
system, summed over the process and its children such as data-loader workers), whatever else the
machine was doing. The trainer saves a checkpoint on SIGTERM, so the run ends cleanly.

    python bench/cpu_budget.py --report RUN.budget.json 1800 -- m2l train tiny-v2 --data DIR --out RUN
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from "state" on


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root`, its live descendants and its reaped children."""
    parents: dict[int, int] = {}
    fields: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (f := _stat(int(entry.name))) is not None:
            parents[int(entry.name)], fields[int(entry.name)] = int(f[1]), f
    total = 0.0
    for pid, f in fields.items():
        p = pid
        while p not in (root, 0, 1) and p in parents:
            p = parents[p]
        if p == root:
            total += (int(f[11]) + int(f[12])) / TICK  # utime + stime
            if pid == root:
                total += (int(f[13]) + int(f[14])) / TICK  # reaped children
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("seconds", type=float, help="CPU-seconds budget")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    ap.add_argument("--report", type=Path, help="write {cpu_s, wall_s, returncode} as JSON")
    args = ap.parse_args()
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    start = time.time()
    proc = subprocess.Popen(cmd)
    used, sent = 0.0, False
    while proc.poll() is None:
        used = max(used, tree_cpu_seconds(proc.pid))
        if used >= args.seconds and not sent:
            proc.send_signal(signal.SIGTERM)
            sent = True
        time.sleep(2.0)
    report = {
        "cpu_s": used,
        "wall_s": time.time() - start,
        "returncode": proc.returncode,
        "stopped_by_budget": sent,
        "command": cmd,
    }
    print(json.dumps(report), file=sys.stderr)
    if args.report:
        args.report.write_text(json.dumps(report, indent=1))
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
