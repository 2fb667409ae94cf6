"""Freed heap memory handed back to the operating system.

glibc keeps memory a process freed for its next allocations; after a burst (a checkpoint's
changelog writes, a fetch of many records, an expiry pass) a long-running service's
resident size stays at its highest. In a 100k-return soak the coordinator's grew from
132 to 163 MB while its live Python objects fell (tracemalloc: 72 → 52 MB). `malloc_trim`
returns the free pages (a few ms on a 200 MB heap); elsewhere than glibc it is not there
and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def heap_trimmer() -> Callable[[], None]:
    """A function that hands free heap pages back (glibc), or does nothing."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None
    if trim is None:
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int

    def release() -> None:
        trim(0)

    return release
