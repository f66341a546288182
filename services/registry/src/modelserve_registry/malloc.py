"""glibc's malloc, tuned for streaming uploads.

An upload passes through the registry as 1 MiB gRPC messages and S3 part buffers. By default glibc
raises its mmap threshold each time a large mmap-ed block is freed, after which MiB-sized blocks come
from the heap and the worker threads' arenas and stay there, fragmented, once freed: the process's
peak RSS grew 14-55 MiB beyond its part buffers over 1 GiB uploads (bench/README.md, Artifacts).
A fixed threshold (``REGISTRY_MALLOC_MMAP_THRESHOLD_BYTES``) keeps such blocks mmap-ed and returns
them to the system when freed; fewer arenas (``REGISTRY_MALLOC_ARENA_MAX``) keep the threads'
freed memory from being spread over one arena each.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
"""mallopt's parameter numbers (glibc malloc.h)."""


def fix_mmap_threshold(threshold_bytes: int) -> bool:
    """Set glibc's mmap threshold to ``threshold_bytes`` (which also turns its dynamic raising
    off); False when 0 (keep the default) or when the C library is not glibc."""
    return _mallopt(M_MMAP_THRESHOLD, threshold_bytes)


def limit_arenas(arenas: int) -> bool:
    """At most ``arenas`` malloc arenas (call before threads start); False when 0 (keep the
    default: 8 per core) or when the C library is not glibc."""
    return _mallopt(M_ARENA_MAX, arenas)


def _mallopt(param: int, value: int) -> bool:
    if value <= 0:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    return bool(mallopt(ctypes.c_int(param), ctypes.c_int(value)))
