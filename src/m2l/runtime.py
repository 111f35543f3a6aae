"""Process settings: an opt-in malloc setting that keeps freed memory for reuse.

On CPU, a large new tensor is fresh memory from the kernel: glibc's malloc serves allocations
above its mmap threshold (at most 32 MiB) with a new mapping and unmaps them on free, so every
big activation is page-faulted and zeroed again, pass after pass. `retain_freed_memory` makes
malloc keep freed memory in the process for the next allocation (what torch's CUDA caching
allocator does for GPU memory, and CPU inference guides get from jemalloc or tcmalloc via
LD_PRELOAD). Opt-in: nothing in m2l turns it on. Measured on a 2-core CPU (BENCHMARKS.md): a
released-size encode or decode 1.2-1.5x faster, but reuse is only where a freed block fits, so
work of varied shapes fragments the heap: a decode peaks up to 60 % higher, and a corpus of
varied lengths kept growing (the authors' loop with it was OOM-killed at 21 GB); real `m2l train`
steps were not faster. Freed memory goes back to the system only when more than 2 GiB of it lie
at the top of the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_GLIBC_MMAP_MAX = 65536  # glibc's defaults, restored by retain_freed_memory(False)
_GLIBC_TRIM_THRESHOLD = 128 * 1024
_KEEP = 2**31 - 1  # the largest trim threshold mallopt takes (an int): 2 GiB


@cache
def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - only glibc has it (not musl)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


def retain_freed_memory(enabled: bool = True) -> bool:
    """Keep freed memory in the process for reuse (glibc only; a no-op elsewhere).

    Process-wide. Only for work that repeats the same tensor shapes (clips of one length): work
    of varied shapes fragments the heap (see the module docstring). `enabled=False` gives freed
    memory back to the system again (glibc's default values; its dynamic mmap threshold, which
    any setting turns off, stays off).

    Args:
        enabled: retain freed memory (True) or restore glibc's defaults (False).

    Returns:
        True when the setting was applied (glibc), False when this platform has no such setting.
    """
    libc = _glibc()
    if libc is None:
        return False
    mmap_max, trim = (0, _KEEP) if enabled else (_GLIBC_MMAP_MAX, _GLIBC_TRIM_THRESHOLD)
    return bool(libc.mallopt(_M_MMAP_MAX, mmap_max)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, trim))
