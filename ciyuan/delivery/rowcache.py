"""Reading an entitlement's records: Parquet row groups decoded once and kept in a bounded cache.

A batch is cut from cached row groups (:func:`read_positions_leaves`), with the digest leaves
kept beside them, and its byte size is read from the same cache (:func:`bytes_end`), so sizing
a batch and sending it walk the same runs (:func:`_runs`).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ciyuan.delivery.metering import LEAF_COLUMNS, SCHEMA, record_leaves
from ciyuan.delivery.plan import Plan
from ciyuan.store.records import RECORD_COLUMNS

SHARD_COLUMNS = list(RECORD_COLUMNS)  # what a batch reads of a shard: the stored record, not the token counts


class _Group:
    """One decoded row group in the delivery schema, with its records' leaves once computed."""

    __slots__ = ("leaves", "sizes", "table")

    def __init__(self, table: pa.Table):
        self.table = table
        self.leaves: np.ndarray | None = None
        self.sizes: np.ndarray | None = None

    def size_rows(self) -> np.ndarray:
        """Bytes of every record (its values plus 8 for the token count): what the batch byte cap counts."""
        if self.sizes is None:
            total = np.full(self.table.num_rows, 8, dtype=np.int64)
            for name in LEAF_COLUMNS:
                lens = pc.fill_null(pc.binary_length(self.table.column(name)), 0)
                total += lens.to_numpy().astype(np.int64)
            self.sizes = total
        return self.sizes

    def leaf_rows(self) -> np.ndarray:
        """Leaves of every row, computed on first use (a batch digest then reads 32 bytes per record)."""
        if self.leaves is None:
            self.leaves = record_leaves(self.table)
        return self.leaves

    @property
    def nbytes(self) -> int:
        return self.table.nbytes + 40 * self.table.num_rows


class _RowGroups:
    """An LRU of decoded Parquet row groups, bounded by bytes (the server's memory with many streams)."""

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self._groups: OrderedDict[tuple[str, int], _Group] = OrderedDict()
        self._meta: dict[str, np.ndarray] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def starts(self, version, path: str) -> np.ndarray:
        with self._lock:
            got = self._meta.get(path)
        if got is None:
            with version.fs().open(path, "rb") as fh:
                md = pq.ParquetFile(fh).metadata
            got = np.zeros(md.num_row_groups + 1, dtype=np.int64)
            np.cumsum([md.row_group(i).num_rows for i in range(md.num_row_groups)], out=got[1:])
            with self._lock:
                self._meta[path] = got
        return got

    def get_many(self, version, path: str, rgs: list[int]) -> dict[int, _Group]:
        """Row groups of one shard; the missing ones are read in one pass over the file."""
        out: dict[int, _Group] = {}
        with self._lock:
            for rg in rgs:
                g = self._groups.get((path, rg))
                if g is not None:
                    self._groups.move_to_end((path, rg))
                    out[rg] = g
        missing = [rg for rg in rgs if rg not in out]
        if missing:
            with version.fs().open(path, "rb") as fh:
                pf = pq.ParquetFile(fh)
                cols = [c for c in SHARD_COLUMNS if c in pf.schema_arrow.names]
                table = pf.read_row_groups(missing, columns=cols)
            at = 0
            with self._lock:
                for rg in missing:
                    n = pf.metadata.row_group(rg).num_rows
                    g = _Group(_conform(table.slice(at, n)))
                    at += n
                    out[rg] = self._groups.setdefault((path, rg), g)
                    if out[rg] is g:
                        self._bytes += g.nbytes
                while self._bytes > self.max_bytes and len(self._groups) > 1:
                    _, old = self._groups.popitem(last=False)
                    self._bytes -= old.nbytes
        return out


ROW_GROUPS = _RowGroups()


def _conform(t: pa.Table) -> pa.Table:
    """A shard's columns in the delivery schema: plain types, meta ``{}`` when empty, tokens unset."""
    cols = []
    for f in SCHEMA:
        if f.name in t.column_names:
            c = t.column(f.name)
            if pa.types.is_dictionary(c.type):
                c = c.cast(c.type.value_type)
            c = c.cast(f.type)
            if f.name == "meta":
                c = pc.if_else(pc.or_kleene(pc.is_null(c), pc.equal(c, "")), "{}", c)
            cols.append(c)
        elif f.name == "meta":
            cols.append(pa.array(["{}"] * t.num_rows, f.type))
        else:
            cols.append(pa.nulls(t.num_rows, f.type))
    return pa.Table.from_arrays(cols, schema=SCHEMA).combine_chunks()


Piece = tuple[tuple[str, int] | None, int, int]  # (row group if taken whole, start, end in the batch)


def read_positions(p: Plan, a: int, b: int) -> pa.Table:
    """Records of selection positions ``[a, b)`` in the canonical delivery schema."""
    return read_positions_leaves(p, a, b)[0]


def _runs(p: Plan, a: int, b: int) -> Iterator[tuple[str, int, _Group, np.ndarray]]:
    """Selection positions ``[a, b)`` as runs within one row group each, in order:
    ``(shard path, row group, its cached group, row indices inside the group)``."""
    rows = p.rows[a:b]
    shard_of = np.searchsorted(p.shard_starts, rows, side="right") - 1
    paths = p.version.shard_paths()
    i, n = 0, len(rows)
    while i < n:
        sh = int(shard_of[i])
        j = i + int(np.searchsorted(shard_of[i:], sh, side="right"))
        local = rows[i:j] - p.shard_starts[sh]
        rg_starts = ROW_GROUPS.starts(p.version, paths[sh])
        rg_of = np.searchsorted(rg_starts, local, side="right") - 1
        groups = ROW_GROUPS.get_many(p.version, paths[sh], [int(x) for x in np.unique(rg_of)])
        k = 0
        while k < len(local):
            rg = int(rg_of[k])
            m = k + int(np.searchsorted(rg_of[k:], rg, side="right"))
            yield paths[sh], rg, groups[rg], local[k:m] - rg_starts[rg]
            k = m
        i = j


def read_positions_leaves(p: Plan, a: int, b: int, leaves: bool = False
                          ) -> tuple[pa.Table, np.ndarray | None, list[Piece]]:
    """Records of selection positions ``[a, b)``, with ``leaves`` their digest leaves in order, and
    the pieces the batch was cut from (whole row groups are named, so their encoding can be reused).
    """
    if b <= a:
        return SCHEMA.empty_table(), np.empty((0, 32), np.uint8) if leaves else None, []
    parts: list[pa.Table] = []
    leaf_parts: list[np.ndarray] = []
    pieces: list[Piece] = []
    at = 0
    for path, rg, g, idx in _runs(p, a, b):
        whole = len(idx) == g.table.num_rows
        parts.append(g.table if whole else g.table.take(pa.array(idx)))
        pieces.append(((path, rg) if whole else None, at, at + len(idx)))
        at += len(idx)
        if leaves:
            lv = g.leaf_rows()
            leaf_parts.append(lv if whole else lv[idx])
    table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
    table = table.set_column(SCHEMA.get_field_index("tokens"), "tokens", pa.array(p.tok[a:b], pa.int64()))
    return table, (np.concatenate(leaf_parts) if leaves else None), pieces


def record_sizes(p: Plan, a: int, b: int) -> np.ndarray:
    """Bytes of each record of selection positions ``[a, b)`` (see :meth:`_Group.size_rows`)."""
    if b <= a:
        return np.zeros(0, np.int64)
    return np.concatenate([g.size_rows()[idx] for _, _, g, idx in _runs(p, a, b)])


def bytes_end(p: Plan, a: int, e: int, cap: int) -> int:
    """The end of the longest run of positions from ``a`` (at most ``e``) whose records fit ``cap``
    bytes; one record always goes, however large (as a record larger than ``max_tokens`` does).

    Reads forward in growing windows and stops at the cap, so a huge request costs no more than
    the batch it will get.
    """
    total, at, step = 0, a, 1024
    while at < e:
        nxt = min(e, at + step)
        cs = np.cumsum(record_sizes(p, at, nxt)) + total
        k = int(np.searchsorted(cs, cap, side="right"))
        if k < len(cs):
            return max(a + 1, at + k)
        total, at, step = int(cs[-1]), nxt, step * 4
    return e
