"""Allocator tuning for the training roles.

The vertical protocol allocates and frees vectors of 1 to 20 MB many times per tree.
glibc serves blocks above its mmap threshold with fresh mappings and unmaps them on
free, so every new vector pays page faults on first touch; on the virtual machines
this project is measured on that more than doubled the cost of building a dealer
vector (16 -> 36 ns per row).  `keep_freed_memory` raises the mmap threshold to its
maximum (32 MB) and the trim threshold to 1 GB, so freed vectors are reused instead.
It is process-wide, changes no result, and keeps up to 1 GB of freed memory mapped;
set PPXGB_MALLOC_TUNING=0 to leave the allocator alone.  Not glibc: no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc malloc once per process; True if it was tuned."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("PPXGB_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    return _done
