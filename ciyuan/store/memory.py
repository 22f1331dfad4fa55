"""Give freed memory back to the system as a long run goes, so its resident set follows what it holds
now (a batch), not everything it has held (the input).

Ingest and curation free every batch's records, but glibc keeps freed memory for reuse: the
heap is only trimmed from its top, and its *dynamic* mmap threshold rises to the size of each large
block freed (up to 32 MB), after which blocks of that size (long texts, pickled chunks, Arrow
buffers copied into Python) come from the heap too and leave holes that are never returned. The
resident set then climbs with the input, as measured in #12 (a curate worker 381 -> 573 MB over
one shard). :func:`tune` fixes the threshold (large blocks are mapped and unmapped, never left in
the heap); :func:`release` hands back the free pages inside the heap (``malloc_trim``) and what
pyarrow's pool keeps. Both are no-ops where glibc is not the allocator (macOS, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

MMAP_THRESHOLD = 1 << 20  # blocks this large are always mmapped (fixed: no dynamic rise to 32 MB)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_libc: ctypes.CDLL | None | bool = None  # None: not looked up yet; False: no glibc malloc here


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                lib.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
                _libc = lib
            except (OSError, AttributeError):  # musl has no malloc_trim
                _libc = False
    return _libc or None


_tuned_pid = 0


def tune(mmap_threshold: int = MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``mmap_threshold`` (and the trim threshold at twice it) in this
    process; once per process (a forked worker inherits the setting). True if it was applied."""
    global _tuned_pid
    lib = _glibc()
    if lib is None:
        return False
    if _tuned_pid != os.getpid():
        lib.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)
        lib.mallopt(_M_TRIM_THRESHOLD, 2 * mmap_threshold)
        _tuned_pid = os.getpid()
    return True


def release() -> None:
    """Return free heap pages to the system and ask pyarrow's pool to drop what it caches.

    Costs a walk of the heap (about a millisecond for a few hundred MB): call it between batches
    of megabytes, not per record.
    """
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)
    pa = sys.modules.get("pyarrow")  # only if loaded: releasing must not import it
    if pa is not None:
        pa.default_memory_pool().release_unused()
