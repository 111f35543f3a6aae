"""Process settings for fast CPU inference and training.

On CPU, a large new tensor is fresh memory from the kernel: glibc's malloc serves allocations
above its mmap threshold (at most 32 MiB) with a new mapping and unmaps them on free, so every
big activation is page-faulted and zeroed again, pass after pass. `retain_freed_memory` makes
malloc keep freed memory in the process for the next allocation (what torch's CUDA caching
allocator does for GPU memory, and CPU inference guides get from jemalloc or tcmalloc via
LD_PRELOAD). Measured on a 2-core CPU with the released-size v1 (BENCHMARKS.md): encode 1.27x
faster, training steps 1.24x; the price is fragmentation: encode peaks at 2.6 GB instead of
1.6 GB whatever the length, but a decode at 4.6 GB instead of 2.4 GB. So `m2l encode` and
`m2l train` turn it on, decoding commands and `m2l.load` do not. Freed memory goes back to the
system only when more than 2 GiB of it lie at the top of the heap.
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

    Process-wide; call it with `enabled=False` to give freed memory back to the system again
    (glibc's default thresholds).

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
