"""Count records whose id repeats an earlier one, in bounded memory whatever the record count.

Each id's 64-bit hash goes to an anonymous temporary file; counting reads it back in chunks, and
when it is larger than one chunk it is first split into hash partitions, each small enough to sort.
"""

from __future__ import annotations

import tempfile
from array import array
from collections.abc import Iterator
from contextlib import ExitStack
from typing import BinaryIO

import numpy as np

CHUNK = 1 << 22  # hashes sorted at once (32 MB); also what is buffered before a write
_BUF = 1 << 16


class IdCounter:
    """``add`` every id; ``duplicates()`` says how many were seen before (equal 64-bit hashes)."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="ciyuan-ids-")  # noqa: SIM115 (lives as long as the builder)
        self._buf = array("q")
        self.count = 0

    def add(self, record_id: str) -> None:
        self._buf.append(hash(record_id))
        self.count += 1
        if len(self._buf) >= _BUF:
            self._flush()

    def _flush(self) -> None:
        self._buf.tofile(self._file)
        self._buf = array("q")

    @staticmethod
    def _chunks(f: BinaryIO, total: int = CHUNK) -> Iterator[np.ndarray]:
        """The hashes in chunks of at most ``CHUNK`` (numpy allocates ``count`` up front: never more than there are)."""
        f.seek(0)
        while True:
            arr = np.fromfile(f, dtype=np.uint64, count=max(1, min(CHUNK, total)))
            if not len(arr):
                return
            yield arr

    def duplicates(self) -> int:
        self._flush()
        if self.count <= CHUNK:
            arr = next(iter(self._chunks(self._file, self.count)), np.zeros(0, np.uint64))
            return int(len(arr) - len(np.unique(arr)))
        parts = -(-self.count // CHUNK) * 2  # about half a chunk a partition, so skew still fits
        with ExitStack() as stack:
            files = [stack.enter_context(tempfile.TemporaryFile(prefix="ciyuan-ids-")) for _ in range(parts)]
            for arr in self._chunks(self._file):
                which = arr % np.uint64(parts)
                for p in range(parts):
                    arr[which == p].tofile(files[p])
            total = 0
            for f in files:
                f.seek(0)
                arr = np.fromfile(f, dtype=np.uint64)
                total += int(len(arr) - len(np.unique(arr)))
            return total

    def close(self) -> None:
        self._file.close()
