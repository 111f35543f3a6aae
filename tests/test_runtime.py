"""`m2l.runtime.retain_freed_memory`: a big tensor allocated again after a free reuses the memory
(no page faults) once it is on, and is faulted in afresh with glibc's defaults."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Runs in a fresh interpreter, so the test process's own malloc settings play no part.
PROBE = """
import json, resource, sys, torch
from m2l.runtime import retain_freed_memory
applied = retain_freed_memory(sys.argv[1] == "on")
def faults(mib):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(mib * 2**20 // 4)  # written once, freed
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults(64)
print(json.dumps({"applied": applied, "faults": faults(60)}))  # fits in the 64 MiB just freed
"""


def second_pass_faults(setting: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE, setting], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_freed_memory_is_reused_without_page_faults() -> None:
    # (asked in a child: any mallopt call, even one restoring defaults, would change this process)
    pages = 60 * 2**20 // 4096
    on, off = second_pass_faults("on"), second_pass_faults("off")
    if not (on["applied"] or off["applied"]):
        pytest.skip("not glibc: nothing to set")
    assert on["applied"] and off["applied"]
    assert off["faults"] > pages // 2, (on, off)  # glibc's default: every pass maps and faults fresh memory
    assert on["faults"] < pages // 20, (on, off)  # retained: the freed memory is reused as it is
