"""Keep freed tensor memory in the process instead of handing it back to the kernel.

glibc's malloc serves every block above a (dynamic, at most 32 MiB) threshold with a
fresh `mmap` and returns it with `munmap` on free. A network's feature maps are just
such blocks (a 512x512 tile of ESC-light is 64 MiB per map), so every layer of every
tile would page-fault its output in again, zero-filled by the kernel: 1.3 million minor
faults and 3.2 s of system time per 512x512 tile on 2 cores, about 30% of the wall time
(docs/model.md). With mmap switched off and trimming pushed out of reach, freed blocks
stay in the heap and the next tile reuses them.

The `esc` CLI turns this on at start; `ESC_RETAIN_FREED_MEMORY=0` in the environment
turns it off (the resident size then shrinks after a large job, at the cost of speed).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

ENV_SWITCH = "ESC_RETAIN_FREED_MEMORY"
# mallopt() parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
# The largest value mallopt's `int` takes: free memory at the heap's top is never trimmed.
_NEVER_TRIM = 2**31 - 1

_applied = False


def retain_freed_memory() -> bool:
    """Make glibc malloc keep and reuse freed blocks; returns whether the setting is in force.

    Process-wide and idempotent. A no-op (returning False) off Linux, without glibc, or
    with `ESC_RETAIN_FREED_MEMORY=0` in the environment.
    The trade: the resident size stays at its peak after a large job instead of shrinking,
    in exchange for no page faults on reuse.
    """
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux") or os.environ.get(ENV_SWITCH, "").strip() == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # only glibc has it (musl has mallopt as a stub)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _NEVER_TRIM))
    return _applied
