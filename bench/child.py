"""Helpers shared by the codec benchmarks: one measurement per fresh child process."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

RETAIN = "+retain"
"""Suffix of a case name whose child runs with `m2l.runtime.retain_freed_memory()` on."""


def apply_retain(name: str) -> str:
    """Turn the malloc setting on in this (child) process when `name` ends in `RETAIN`; returns
    the name without the suffix."""
    if not name.endswith(RETAIN):
        return name
    from m2l.runtime import retain_freed_memory

    assert retain_freed_memory(), "not glibc"
    return name.removesuffix(RETAIN)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would include the parent's peak,
    which Linux carries across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_model() -> str:
    """The CPU's model name and its bf16 instructions, e.g. "Intel(R) Xeon(R) Processor
    [avx512_bf16 amx_bf16]" (from /proc/cpuinfo; "unknown" elsewhere): runs over several sittings
    record it per case, since a sitting may get another machine."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "unknown"
    info = dict(line.split(":", 1) for line in lines if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    bf16 = [f for f in info.get("flags", "").split() if f in ("avx512_bf16", "amx_bf16")]
    return f"{info.get('model name', 'unknown')} [{' '.join(bf16)}]"


def run_child(script: str, *args: object) -> dict:
    """Run `script --child ARGS...` in a fresh interpreter; its last stdout line is a JSON dict
    (or {"error": last stderr line} when it fails)."""
    cmd = [sys.executable, script, "--child", *map(str, args)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "failed"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def report(result: dict, out: Path | None) -> None:
    """Print `result` as JSON and, when `out` is given, write it there too (folders made)."""
    text = json.dumps(result, indent=2)
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
