"""Give freed memory back to the system as a long run goes, so its resident set follows what it holds
now (a batch), not the high-water mark of its history.

Ingest and curation free every batch's records, but glibc keeps freed memory for reuse: the heap is
only trimmed from its top, so the pages of a batch freed below a live object stay resident, and
the next transient peak (a flush, a pickled chunk, a long document) starts from there.
:func:`release` hands back the free pages anywhere in the heap (``malloc_trim(0)``) and what
pyarrow's pool caches. It costs what is given back (those pages fault in again when reused): call
it every few megabytes of work, not per record. Fixing glibc's mmap threshold instead was tried
and dropped: every large block then faults in afresh (4.5x the CPU of a loop that allocates and
frees 4.5 MB blocks).
A no-op where glibc is not the allocator (macOS, musl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_libc: ctypes.CDLL | None | bool = None  # None: not looked up yet; False: no glibc malloc here


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.malloc_trim.argtypes = [ctypes.c_size_t]
                _libc = lib
            except (OSError, AttributeError):  # musl has no malloc_trim
                _libc = False
    return _libc or None


def available() -> bool:
    """Whether :func:`release` can hand heap pages back here (glibc)."""
    return _glibc() is not None


def release() -> None:
    """Return free heap pages to the system and ask pyarrow's pool to drop what it caches."""
    lib = _glibc()
    if lib is not None:
        lib.malloc_trim(0)
    pa = sys.modules.get("pyarrow")  # only if loaded: releasing must not import it
    if pa is not None:
        pa.default_memory_pool().release_unused()
