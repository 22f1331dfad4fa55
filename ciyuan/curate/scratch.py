"""Scratch files for global steps: what a scan learns about a shard, kept on disk, not in the driver.

A dedup step's scan writes its per-shard arrays here (hashes, MinHash signatures, record ids) and
returns only a count. Hash keys are written sorted by *partition* (``key % parts``), so the driver's
reduce reads one partition of every shard at a time: its memory follows the partition size, which
:func:`partitions_for` keeps near :data:`PARTITION_BYTES` whatever the corpus size. Everything
else is read back by record (``gather``) through memory maps.

A record is named by a *node*: ``shard << 32 | row``, where ``row`` counts the live records of the
shard in scan order. Sorting nodes sorts records in shard order, which "keep the first" relies on.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa

ROW_BITS = 32
_ROW_MASK = np.uint64((1 << ROW_BITS) - 1)
PARTITION_BYTES = 4 << 20  # a partition's keys and nodes; the reduce sorts about three times this
_OPEN_LIMIT = 256  # memory maps kept open at once (each holds a file descriptor; 1,024 is a common limit)


def node(shard: int, rows: np.ndarray) -> np.ndarray:
    """Nodes for ``rows`` of ``shard``."""
    return (np.uint64(shard) << np.uint64(ROW_BITS)) | np.asarray(rows, dtype=np.uint64)


def split(nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(shard, row) arrays of ``nodes``."""
    nodes = np.asarray(nodes, dtype=np.uint64)
    return (nodes >> np.uint64(ROW_BITS)).astype(np.int64), (nodes & _ROW_MASK).astype(np.int64)


def partitions_for(entries: int, entry_bytes: int = 16, budget: int | None = None) -> int:
    """How many hash partitions keep each one's ``entries`` near ``budget`` bytes."""
    return max(1, math.ceil(entries * entry_bytes / (budget or PARTITION_BYTES)))


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) pairs, sorted by a then b."""
    if len(a) == 0:
        return a, b
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.ones(len(a), dtype=bool)
    keep[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    return a[keep], b[keep]


def key_groups(keys: np.ndarray, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort (key, node) entries; return (nodes in key-then-node order, group starts, group sizes)."""
    if len(keys) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return nodes, empty, empty
    order = np.lexsort((nodes, keys))
    sk, sn = keys[order], nodes[order]
    first = np.ones(len(sk), dtype=bool)
    first[1:] = sk[1:] != sk[:-1]
    starts = np.nonzero(first)[0]
    sizes = np.diff(np.append(starts, len(sk)))
    return sn, starts, sizes


class Scratch:
    """One global step's scratch folder: per-shard ``.npy`` arrays and Arrow id files."""

    def __init__(self, folder: str | Path):
        self.root = Path(folder)
        self._open: OrderedDict[tuple[str, int], object] = OrderedDict()

    def _path(self, kind: str, shard: int, ext: str = "npy") -> Path:
        return self.root / f"{kind}-{shard:05d}.{ext}"

    def _cached(self, key: tuple[str, int], load):
        if key in self._open:
            self._open.move_to_end(key)
            return self._open[key]
        value = load()
        self._open[key] = value
        if len(self._open) > _OPEN_LIMIT:
            self._open.popitem(last=False)
        return value

    # arrays ------------------------------------------------------------------------------------

    def save(self, kind: str, shard: int, array: np.ndarray) -> None:
        """Write one shard's array (atomically: a rerun of the scan replaces it whole)."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(kind, shard)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
        os.replace(tmp, path)
        self._open.pop((kind, shard), None)

    def load(self, kind: str, shard: int) -> np.ndarray:
        """One shard's array, memory-mapped."""
        return self._cached((kind, shard), lambda: np.load(self._path(kind, shard), mmap_mode="r", allow_pickle=False))

    def forget(self) -> None:
        """Close the memory maps kept open. Why: every page a map has touched counts in this
        process's resident set until it is unmapped, so a reduce that reads a whole scan's files
        through long-lived maps grows with the corpus; closing them keeps it at what it reads now."""
        self._open.clear()

    def _map(self, kind: str, shard: int) -> np.ndarray:
        """One shard's array memory-mapped afresh (not kept: unmapped when the caller drops it)."""
        return np.load(self._path(kind, shard), mmap_mode="r", allow_pickle=False)

    def gather(self, kind: str, nodes: np.ndarray) -> np.ndarray:
        """The rows of per-shard arrays ``kind`` that ``nodes`` name, in the order given (copied out
        of maps that are closed again, so the touched pages do not stay resident)."""
        shard, row = split(nodes)
        if len(shard) == 0:
            return np.zeros(0)
        out: np.ndarray | None = None
        for s in np.unique(shard).tolist():
            m = shard == s
            src = self._map(kind, s)
            if out is None:
                out = np.empty((len(shard),) + src.shape[1:], dtype=src.dtype)
            out[m] = src[row[m]]
            del src
        assert out is not None
        return out

    # partitioned keys ----------------------------------------------------------------------------

    def save_partitioned(self, kind: str, shard: int, keys: np.ndarray, nodes: np.ndarray, parts: int) -> None:
        """Write (key, node) entries grouped by ``key % parts`` with the offsets of each partition."""
        keys = np.asarray(keys, dtype=np.uint64)
        part = (keys % np.uint64(parts)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        offsets = np.zeros(parts + 1, dtype=np.int64)
        np.cumsum(np.bincount(part, minlength=parts), out=offsets[1:])
        self.save(f"{kind}-keys", shard, keys[order])
        self.save(f"{kind}-nodes", shard, np.asarray(nodes, dtype=np.uint64)[order])
        self.save(f"{kind}-offsets", shard, offsets)

    def read_partition(self, kind: str, shards: int, p: int) -> tuple[np.ndarray, np.ndarray]:
        """Partition ``p`` of every shard's (key, node) entries, in shard order."""
        keys, nodes = [], []
        for s in range(shards):
            off = self.load(f"{kind}-offsets", s)
            lo, hi = int(off[p]), int(off[p + 1])
            if hi > lo:  # copied out of fresh maps: a later partition does not find this one resident
                keys.append(np.array(self._map(f"{kind}-keys", s)[lo:hi]))
                nodes.append(np.array(self._map(f"{kind}-nodes", s)[lo:hi]))
        if not keys:
            return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
        return np.concatenate(keys), np.concatenate(nodes)

    def appender(self, kind: str, shard: int, dtype: np.dtype | type, width: int = 0) -> ArrayAppender:
        """Write one shard's array batch by batch (a scan then holds a batch, not the shard)."""
        return ArrayAppender(self, kind, shard, dtype, width)

    def partitioned_appender(self, kind: str, shard: int, parts: int) -> PartitionedAppender:
        """Write one shard's partitioned (key, node) entries batch by batch; same files as
        :meth:`save_partitioned` of all the entries at once."""
        return PartitionedAppender(self, kind, shard, parts)

    def ids_appender(self, shard: int) -> IdsAppender:
        """Write one shard's record ids batch by batch; read back as :meth:`save_ids` wrote them."""
        return IdsAppender(self, shard)

    # ids -------------------------------------------------------------------------------------------

    def save_ids(self, shard: int, ids: list[str]) -> None:
        """One shard's record ids in row order, as an Arrow file that is read back memory-mapped."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path("ids", shard, "arrow")
        tmp = path.with_suffix(".tmp")
        table = pa.table({"id": pa.array(ids, type=pa.large_string())})
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp, path)
        self._open.pop(("ids", shard), None)

    def ids_of(self, nodes: np.ndarray) -> list[str]:
        """The record ids of ``nodes``, in the order given."""
        shard, row = split(nodes)
        out: list[str | None] = [None] * len(shard)
        for s in np.unique(shard).tolist():
            with pa.memory_map(str(self._path("ids", s, "arrow"))) as src:  # unmapped after: see forget
                col = pa.ipc.open_file(src).read_all().column(0)
                where = np.nonzero(shard == s)[0]
                for k, v in zip(where.tolist(), col.take(pa.array(row[where])).to_pylist(), strict=True):
                    out[k] = v
                del col
        return out  # type: ignore[return-value]


# streaming writers --------------------------------------------------------------------------------
# A scan that kept its shard's arrays until the end held O(shard rows) in memory (a MinHash signature
# alone is 512 bytes a record: 51 MB for a 100,000-row shard, twice over while it was concatenated);
# these write as they go, so a scan holds one batch and a few buffered megabytes.

SPILL_BYTES = 4 << 20  # what an appender buffers before it writes


def _seal_npy(raw: Path, final: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """Make ``final`` a .npy file of the raw bytes in ``raw`` (header, then the bytes, copied by the
    kernel), atomically; ``raw`` is removed."""
    tmp = final.with_suffix(".tmp")
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    with open(tmp, "wb") as out:
        np.lib.format.write_array_header_1_0(out, header)  # what np.save writes for these shapes
        with open(raw, "rb") as src:
            out.flush()
            size = os.fstat(src.fileno()).st_size
            done = 0
            while done < size:
                done += os.sendfile(out.fileno(), src.fileno(), done, size - done)
    os.replace(tmp, final)
    raw.unlink()


class ArrayAppender:
    """One shard's array of ``dtype`` rows (``width`` columns, or a vector when 0), appended in batches."""

    def __init__(self, sc: Scratch, kind: str, shard: int, dtype: np.dtype | type, width: int = 0):
        sc.root.mkdir(parents=True, exist_ok=True)
        self.sc, self.kind, self.shard = sc, kind, shard
        self.dtype, self.width = np.dtype(dtype), width
        self.final = sc._path(kind, shard)
        self.raw = self.final.with_suffix(".raw")
        self.fh = open(self.raw, "wb")  # noqa: SIM115 (closed by close)
        self.rows = 0

    def append(self, array: np.ndarray) -> None:
        arr = np.ascontiguousarray(array, dtype=self.dtype)
        if self.width and arr.shape[1:] != (self.width,):
            raise ValueError(f"{self.kind}: rows of width {self.width} expected, got shape {arr.shape}")
        arr.tofile(self.fh)
        self.rows += len(arr)

    def close(self) -> int:
        self.fh.close()
        _seal_npy(self.raw, self.final, self.dtype, (self.rows, self.width) if self.width else (self.rows,))
        self.sc._open.pop((self.kind, self.shard), None)
        return self.rows


class PartitionedAppender:
    """(key, node) entries appended in batches, written as :meth:`Scratch.save_partitioned` would.

    Every :data:`SPILL_BYTES` of entries the buffer is stably sorted by partition and written as
    one run; ``close`` copies partition 0 of every run, then partition 1, ... Entries of a
    partition so keep their order of arrival (runs in order, each stably sorted), which is what a
    stable sort of all entries at once gives: the files are byte for byte the same.
    """

    def __init__(self, sc: Scratch, kind: str, shard: int, parts: int):
        sc.root.mkdir(parents=True, exist_ok=True)
        self.sc, self.kind, self.shard, self.parts = sc, kind, shard, parts
        self.keys: list[np.ndarray] = []
        self.nodes: list[np.ndarray] = []
        self.buffered = 0
        self.runs: list[tuple[Path, Path, np.ndarray]] = []  # keys file, nodes file, partition offsets

    def add(self, keys: np.ndarray, nodes: np.ndarray) -> None:
        keys, nodes = np.asarray(keys, dtype=np.uint64), np.asarray(nodes, dtype=np.uint64)
        if len(keys) != len(nodes):
            raise ValueError(f"{self.kind}: {len(keys)} keys but {len(nodes)} nodes")
        self.keys.append(keys)
        self.nodes.append(nodes)
        self.buffered += len(keys)
        if self.buffered * 16 >= SPILL_BYTES:
            self._spill()

    def _spill(self) -> None:
        if not self.buffered:
            return
        keys, nodes = np.concatenate(self.keys), np.concatenate(self.nodes)
        self.keys, self.nodes, self.buffered = [], [], 0
        part = (keys % np.uint64(self.parts)).astype(np.int64)
        order = np.argsort(part, kind="stable")
        offsets = np.zeros(self.parts + 1, dtype=np.int64)
        np.cumsum(np.bincount(part, minlength=self.parts), out=offsets[1:])
        n = len(self.runs)
        kp = self.sc._path(f"{self.kind}-run{n}-keys", self.shard, "raw")
        np_ = self.sc._path(f"{self.kind}-run{n}-nodes", self.shard, "raw")
        keys[order].tofile(kp)
        nodes[order].tofile(np_)
        self.runs.append((kp, np_, offsets))

    def close(self) -> int:
        self._spill()
        total = np.zeros(self.parts + 1, dtype=np.int64)
        for _, _, off in self.runs:
            total += off
        for which in (0, 1):
            name = f"{self.kind}-{'keys' if which == 0 else 'nodes'}"
            raw = self.sc._path(name, self.shard, "raw")
            with open(raw, "wb") as out:
                srcs = [open(r[which], "rb") for r in self.runs]  # noqa: SIM115 (closed below)
                try:
                    for p in range(self.parts):
                        for src, (_, _, off) in zip(srcs, self.runs, strict=True):
                            lo, hi = int(off[p]) * 8, int(off[p + 1]) * 8
                            while lo < hi:
                                out.flush()
                                lo += os.sendfile(out.fileno(), src.fileno(), lo, hi - lo)
                finally:
                    for src in srcs:
                        src.close()
            _seal_npy(raw, self.sc._path(name, self.shard), np.dtype(np.uint64), (int(total[-1]),))
            self.sc._open.pop((name, self.shard), None)
        for kp, np_, _ in self.runs:
            kp.unlink()
            np_.unlink()
        self.sc.save(f"{self.kind}-offsets", self.shard, total)
        return int(total[-1])


class IdsAppender:
    """One shard's record ids, appended in batches to the Arrow file :meth:`Scratch.save_ids` writes."""

    def __init__(self, sc: Scratch, shard: int):
        sc.root.mkdir(parents=True, exist_ok=True)
        self.sc, self.shard = sc, shard
        self.path = sc._path("ids", shard, "arrow")
        self.tmp = self.path.with_suffix(".tmp")
        self.schema = pa.schema([pa.field("id", pa.large_string())])
        self.sink = pa.OSFile(str(self.tmp), "wb")
        self.writer = pa.ipc.new_file(self.sink, self.schema)
        self.buf: list[str] = []

    def extend(self, ids: list[str]) -> None:
        self.buf.extend(ids)
        if len(self.buf) >= 8192:
            self._flush()

    def _flush(self) -> None:
        if self.buf:
            self.writer.write_batch(pa.record_batch([pa.array(self.buf, type=pa.large_string())], schema=self.schema))
            self.buf = []

    def close(self) -> None:
        self._flush()
        self.writer.close()
        self.sink.close()
        os.replace(self.tmp, self.path)
        self.sc._open.pop(("ids", self.shard), None)
