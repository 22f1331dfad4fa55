"""Metered delivery: batches of an entitlement's records, each held before it is sent and charged once.

The rule: **delivered means billed, once.** Whatever the exchange sends is charged, when the buyer
acknowledges it or, at the latest, when its ack deadline passes (the hold is posted, never voided:
the records are out). Reading records that are already charged again is free, so a buyer that
crashed loses nothing by resuming. A batch never holds more than the buyer's available funds,
the entitlement's tokens left, or the server's caps (``delivery_max_batch_tokens``,
``delivery_max_batch_bytes``) allow.

The state of one stream (a partition of the selection, see :mod:`ciyuan.delivery.metering`) is
``acked`` (the offset charged so far) and at most one *open* batch ``[acked, end)`` with its ledger
hold. A request carries a cursor offset ``o``:

* ``o == open.end``: the buyer received the open batch; post it, then open the next one;
* ``o == open.start``: the buyer did not get it (network error, server crash); send it again,
  under the same hold (so it is not charged twice);
* ``o == acked`` with nothing open: open the next batch (if the last batch was charged at its
  deadline, this acknowledges it);
* ``o == last.end`` where the last batch was voided under the old rule: charge it now;
* ``o < acked``: re-read already-charged records, free and without changing anything;
* anything else is a 409 naming the cursor to resume from.

An open batch past its deadline (``hold_timeout_s``) is posted by the request that finds it, the
server's sweeper or ``ciyuan delivery sweep``; it is then charged but not acknowledged, and
``/meter`` offers its start as the resume cursor. Posting charges ``price(P + t) - price(P)``
where ``P`` is the entitlement's posted tokens, under a lock on its meter row, so the total
charged equals the price of the total tokens exactly, however the stream was split. Holds, posts
and expiries go to the ledger (:mod:`ciyuan.ledger.ledger`), which logs every transfer to the
audit chain as it inserts it; delivery adds its own events (batches, posts, acknowledgements) in
the same transaction.

Entitlements of paid (prepaid) orders stream the same way without holds; metered orders
(:func:`place_metered_order`) pay per posted batch.

Reading is kept out of the database transaction: the batch bounds are predicted from the
stream's state (remembered in process after each request, read from the database otherwise), the
content is read, and the transaction then checks that the state still gives those bounds (else it
is re-run with the bounds it found). The content digest comes from per-record leaves kept with
the cached row groups (see :mod:`ciyuan.delivery.metering`), the encoded body is compressed on a
worker thread while the transaction runs (Arrow releases the GIL), and both are kept in a bounded
per-entitlement cache so a redelivery or replay is neither re-read nor re-encoded; the batch a
client will most likely ask for next is prepared while the current one is billed and sent.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.delivery.metering import (
    LEAF_COLUMNS,
    SCHEMA,
    Cursor,
    batch_end,
    digest,
    digest_leaves,
    digest_v1,
    marginal_price,
    partition_bounds,
    record_leaves,
)
from ciyuan.delivery.tables import BatchRow, MeterRow, StreamRow
from ciyuan.errors import CiyuanError, Conflict, InvalidInput, NotFound
from ciyuan.ledger import audit, ledger
from ciyuan.ledger.money import format_amount
from ciyuan.ledger.tables import TransferRow, UsageRow
from ciyuan.market import market
from ciyuan.market.pricing import PriceSchedule
from ciyuan.market.tables import EntitlementRow, ListingRow, OrderRow

DEFAULT_MAX_TOKENS = 4_000_000
MAX_MAX_TOKENS = 100_000_000  # accepted in a request; the batch is capped by settings (delivery_max_batch_*)
# a batch's ledger hold never lapses by itself (which would hand back money for records already
# sent): the batch's own deadline posts it. Ten years only keeps the timestamp finite.
LEDGER_HOLD_TIMEOUT_S = 10 * 365 * 86_400
METERED = "metered"


def _aware(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# -- the plan of an entitlement: which records, in which order, with which token counts ------------


@dataclass
class Plan:
    """Everything immutable about an entitlement that delivery needs, cached per process."""

    entitlement_id: str
    buyer_id: str
    provider_id: str
    listing_id: str
    order_id: str
    metered: bool
    currency: str
    schedule: PriceSchedule
    tokenizer: str
    tokenizer_version: str
    tokens: int
    rows: np.ndarray  # version row number of each selection position
    tok: np.ndarray  # token count of each selection position
    cum: np.ndarray  # cum[i] = tokens of positions [0, i)
    version: object = field(repr=False)
    shard_starts: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(1, np.int64))

    @property
    def records(self) -> int:
        return len(self.rows)

    def price(self, tokens: int) -> int:
        return self.schedule.price(tokens)


_plans: OrderedDict[str, Plan] = OrderedDict()
_plans_lock = threading.Lock()
PLAN_CACHE = 64


def _tokenizer_version(version: object, name: str) -> str:
    known = (getattr(version, "manifest", {}) or {}).get("tokenizers", {})
    v = known.get(name) if isinstance(known, dict) else None
    if isinstance(v, dict):
        v = v.get("version")
    if v:
        return str(v)
    try:
        from ciyuan.tokens.tokenizers import tokenizer_version

        return tokenizer_version(name)
    except Exception:  # a tokenizer not installed here still names its counts
        return "unknown"


def plan(entitlement_id: str, buyer_id: str | None, s: Settings | None = None) -> Plan:
    """The entitlement's plan; ``buyer_id`` (None for the operator) must own it, else 404."""
    s = s or settings()
    with _plans_lock:
        p = _plans.get(entitlement_id)
        if p is not None:
            _plans.move_to_end(entitlement_id)
    if p is None:
        p = _build_plan(entitlement_id, s)
        with _plans_lock:
            _plans[entitlement_id] = p
            while len(_plans) > PLAN_CACHE:
                _plans.popitem(last=False)
    if buyer_id is not None and p.buyer_id != buyer_id:
        raise NotFound(f"entitlement {entitlement_id} does not exist", hint="see your orders: GET /v1/orders")
    return p


def _build_plan(entitlement_id: str, s: Settings) -> Plan:
    from ciyuan.store import resolve

    def read(sess: Session):
        row = (
            sess.get(EntitlementRow, entitlement_id)
            if isinstance(entitlement_id, str) and len(entitlement_id) <= 40
            else None
        )
        if row is None:
            raise NotFound(f"entitlement {entitlement_id} does not exist", hint="see your orders: GET /v1/orders")
        ent = market.Entitlement.of(row)
        listing = sess.get(ListingRow, ent.listing_id)
        order = sess.get(OrderRow, ent.order_id)
        result = market.entitlement_selection(sess, ent)
        return ent, listing, order, result, market.entitlement_schedule(sess, ent)  # the price it was bought at

    ent, listing, order, result, price = tx.run(read, s)
    from ciyuan.market import selection

    index = selection.load_index(listing.index_location)
    all_tok = index.column("tokens").to_numpy()
    rows = result.ordinals().astype(np.int64)
    tok = all_tok[rows].astype(np.int64)
    cum = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(tok, out=cum[1:])
    version = resolve(f"{listing.dataset}@{listing.version_id}", s)
    starts = np.zeros(len(version.manifest["shards"]) + 1, dtype=np.int64)
    np.cumsum([int(sh["rows"]) for sh in version.manifest["shards"]], out=starts[1:])
    return Plan(
        entitlement_id=ent.id,
        buyer_id=ent.buyer_id,
        provider_id=listing.provider_id,
        listing_id=listing.id,
        order_id=ent.order_id,
        metered=order.status == METERED,
        currency=listing.currency,
        schedule=price,
        tokenizer=ent.schedule,
        tokenizer_version=_tokenizer_version(version, ent.schedule),
        tokens=ent.tokens,
        rows=rows,
        tok=tok,
        cum=cum,
        version=version,
        shard_starts=starts,
    )


# -- reading records: row groups decoded once and kept in a bounded cache --------------------------

SHARD_COLUMNS = ["id", "modality", "text", "media", "media_ref", "meta"]


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


# -- prepared batches: content, digest and encoded bodies, computed once per batch ------------------

Encoder = Callable[[pa.Table], bytes]
_EOS = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # the end-of-stream marker of the Arrow IPC stream format


class IpcEncoder:
    """Arrow IPC stream bodies whose whole row groups are encoded once per process, then reused.

    A stream is the schema message, record batch messages and an end marker. The messages of a row
    group taken whole (with the same token counts) are the same bytes in every batch and for every
    entitlement of the version, so they are cached (LRU, bounded by bytes) and only the cut edges
    of a batch are compressed afresh.
    """

    def __init__(self, options: pa.ipc.IpcWriteOptions, chunk_rows: int, max_bytes: int = 64 << 20):
        self.options, self.chunk_rows, self.max_bytes = options, chunk_rows, max_bytes
        empty = self(SCHEMA.empty_table())
        self.prefix = empty[: -len(_EOS)] if empty.endswith(_EOS) else None
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __call__(self, table: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, SCHEMA, options=self.options) as w:
            if table.num_rows:
                w.write_table(table, max_chunksize=self.chunk_rows)
        return sink.getvalue().to_pybytes()

    def messages(self, table: pa.Table) -> bytes | None:
        """The record batch messages of ``table`` alone, or None if the framing is not as expected."""
        whole = self(table)
        if self.prefix is None or not whole.startswith(self.prefix) or not whole.endswith(_EOS):
            return None
        return whole[len(self.prefix) : -len(_EOS)]

    def encode(self, table: pa.Table, pieces: list[Piece]) -> bytes:
        """The body of a batch cut into ``pieces``: cached messages for whole row groups."""
        if self.prefix is None or not pieces:
            return self(table)
        out = [self.prefix]
        for group, a, b in pieces:
            piece = table.slice(a, b - a)
            key = None
            if group is not None:
                tokens = piece.column("tokens").to_numpy()
                key = (group, hashlib.blake2b(tokens.astype("<i8").tobytes(), digest_size=16).digest())
                with self._lock:
                    got = self._cache.get(key)
                    if got is not None:
                        self._cache.move_to_end(key)
                        out.append(got)
                        continue
            msgs = self.messages(piece)
            if msgs is None:
                return self(table)
            out.append(msgs)
            if key is not None:
                with self._lock:
                    if key not in self._cache:
                        self._cache[key] = msgs
                        self._bytes += len(msgs)
                    while self._bytes > self.max_bytes and len(self._cache) > 1:
                        _, old = self._cache.popitem(last=False)
                        self._bytes -= len(old)
        out.append(_EOS)
        return b"".join(out)


class _Prepared:
    """One batch's records with its digest and encoded bodies (per format), filled in on worker threads.

    Keyed by entitlement and absolute selection positions, so a redelivery (same cursor after a
    lost response) or a free replay reuses the bytes first sent instead of reading and hashing again.
    """

    def __init__(self, cache: _PreparedCache, key: tuple[str, int, int], table: pa.Table, leaves: np.ndarray,
                 pieces: list[Piece]):
        self.cache, self.key, self.table, self.pieces = cache, key, table, pieces
        self.sha: Future[str] = Future()  # from the cached leaves: 32 bytes per record, done at once
        self.sha.set_result(digest_leaves(leaves, table.column("tokens").to_numpy()))
        self.bodies: dict[str, Future[tuple[bytes, str]]] = {}
        self.lock = threading.Lock()

    def body(self, fmt: str, encode: Encoder) -> Future[tuple[bytes, str]]:
        """The body in ``fmt`` and the sha256 of its bytes (what the client checks cheaply)."""
        with self.lock:
            f = self.bodies.get(fmt)
            if f is None:
                f = self.bodies[fmt] = _POOL.submit(self._encode, encode)
            return f

    def _encode(self, encode: Encoder) -> tuple[bytes, str]:
        data = encode.encode(self.table, self.pieces) if isinstance(encode, IpcEncoder) else encode(self.table)
        self.cache.account(self.key, len(data))
        return data, hashlib.sha256(data).hexdigest()


# two workers: encodes and prefetches run in parallel with each other and with the transaction
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="ciyuan-batch")


class _PreparedCache:
    """A bounded LRU of prepared batches; table and body bytes both count, so memory stays bounded."""

    def __init__(self, max_bytes: int = 64 << 20):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int, int], tuple[_Prepared, int]] = OrderedDict()
        self._reading: dict[tuple[str, int, int], threading.Event] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, p: Plan, a: int, b: int) -> _Prepared:
        """The prepared batch of positions ``[a, b)``; one thread reads it, racing ones wait for it."""
        key = (p.entitlement_id, a, b)
        while True:
            with self._lock:
                got = self._items.get(key)
                if got is not None:
                    self._items.move_to_end(key)
                    return got[0]
                busy = self._reading.get(key)
                if busy is None:
                    busy = self._reading[key] = threading.Event()
                    break
            busy.wait()  # a prefetch (or a retry) is reading it: hash it once, not twice
        try:
            prep = _Prepared(self, key, *read_positions_leaves(p, a, b, leaves=True))
            with self._lock:
                self._items[key] = (prep, 0)
            self.account(key, prep.table.nbytes)
            return prep
        finally:
            with self._lock:
                self._reading.pop(key, None)
            busy.set()

    def account(self, key: tuple[str, int, int], extra: int) -> None:
        """Count more bytes of a cached batch against the bound, evicting the oldest batches."""
        with self._lock:
            got = self._items.get(key)
            if got is None:
                return
            self._items[key] = (got[0], got[1] + extra)
            self._bytes += extra
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_old, n) = self._items.popitem(last=False)
                self._bytes -= n


PREPARED = _PreparedCache()
EMPTY_DIGEST = digest(SCHEMA.empty_table())

# the last known state of each stream, (acked, open start, open end), to predict without a query
_streams: OrderedDict[tuple[str, int], tuple[int, int | None, int | None]] = OrderedDict()
_streams_lock = threading.Lock()
STREAM_CACHE = 4096


def _remember(p: Plan, part: int, acked: int, open_: tuple[int, int] | None) -> None:
    with _streams_lock:
        _streams[(p.entitlement_id, part)] = (acked, *(open_ or (None, None)))
        _streams.move_to_end((p.entitlement_id, part))
        while len(_streams) > STREAM_CACHE:
            _streams.popitem(last=False)


# -- results ----------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """What one request returns: records (maybe none) and where to continue."""

    kind: str  # new | redelivery | replay | done | acked
    entitlement_id: str
    cursor: str
    next_cursor: str | None
    start: int
    end: int
    tokens: int
    batch_id: str | None = None
    hold_amount: int = 0
    currency: str = ""
    sha256: str = ""
    expires_at: datetime | None = None
    posted: dict | None = None
    table: pa.Table | None = field(default=None, repr=False)
    body: bytes | None = field(default=None, repr=False)  # the encoded records, when an encoder was given
    body_sha256: str = ""  # sha256 of ``body``'s bytes: a cheap check that the client got them intact
    limit: str = ""  # what ended the batch: end | tokens | bytes | funds | entitlement | charged

    def headers(self) -> dict[str, str]:
        h = {
            "Ciyuan-Batch-Kind": self.kind,
            "Ciyuan-Cursor": self.cursor,
            "Ciyuan-Next-Cursor": self.next_cursor or "",
            "Ciyuan-Records": str(self.end - self.start),
            "Ciyuan-Tokens": str(self.tokens),
            "Ciyuan-Batch-Sha256": self.sha256,
            "Ciyuan-Done": "true" if self.kind == "done" else "false",
            "Ciyuan-Entitlement": self.entitlement_id,
        }
        try:  # the partition served, so a client can tell an answer to another request from its own
            c = Cursor.parse(self.cursor)
            h["Ciyuan-Parts"], h["Ciyuan-Part"] = str(c.parts), str(c.part)
        except CiyuanError:
            pass
        if self.limit:
            h["Ciyuan-Batch-Limit"] = self.limit
        if self.batch_id:
            h["Ciyuan-Batch-Id"] = self.batch_id
            h["Ciyuan-Hold-Amount"] = str(self.hold_amount)
            h["Ciyuan-Currency"] = self.currency
        if self.expires_at:
            h["Ciyuan-Ack-By"] = self.expires_at.isoformat()
        if self.body_sha256:
            h["Ciyuan-Body-Sha256"] = self.body_sha256
        if self.posted:
            h["Ciyuan-Posted-Batch"] = self.posted["batch_id"]
            h["Ciyuan-Posted-Amount"] = str(self.posted["amount"])
        return h

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "entitlement_id": self.entitlement_id,
            "cursor": self.cursor,
            "next_cursor": self.next_cursor,
            "records": self.end - self.start,
            "tokens": self.tokens,
            "batch_id": self.batch_id,
            "hold_amount": self.hold_amount,
            "sha256": self.sha256,
            "posted": self.posted,
            "limit": self.limit,
        }


class _Mismatch(Exception):
    """The stream moved between prediction and transaction; re-run with these bounds."""

    def __init__(self, start: int, end: int):
        super().__init__(start, end)
        self.start, self.end = start, end


# -- the state machine --------------------------------------------------------------------------------


def _meter(sess: Session, p: Plan, parts: int, now: datetime) -> MeterRow:
    """Lock (creating if needed) the entitlement's meter; every change to its streams goes through it."""
    m = sess.get(MeterRow, p.entitlement_id, with_for_update=True, populate_existing=True)
    if m is None:  # the first request of this entitlement: create it (a racing twin's row is kept)
        dialect = sess.get_bind().dialect.name
        ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(MeterRow)
        sess.execute(
            ins.values(
                entitlement_id=p.entitlement_id,
                parts=parts,
                tokens_held=0,
                tokens_posted=0,
                amount_posted=0,
                records_posted=0,
                batches_posted=0,
                updated_at=now,
            ).on_conflict_do_nothing(index_elements=["entitlement_id"])
        )
        m = sess.get(MeterRow, p.entitlement_id, with_for_update=True, populate_existing=True)
    if m.parts != parts:
        raise Conflict(
            f"entitlement {p.entitlement_id} is streamed in {m.parts} part(s), not {parts}",
            hint=f"resume with the same number of parts ({m.parts}) or with the cursors you were given",
            code="parts_mismatch",
        )
    return m


def _stream(sess: Session, p: Plan, c: Cursor) -> StreamRow:
    st = sess.get(StreamRow, (p.entitlement_id, c.part), populate_existing=True)
    if st is None:
        lo, hi = partition_bounds(p.records, c.parts, c.part)
        st = StreamRow(
            entitlement_id=p.entitlement_id,
            part=c.part,
            parts=c.parts,
            size=hi - lo,
            acked=0,
            open_batch=None,
            last_batch=None,
            next_seq=0,
        )
        sess.add(st)
        sess.flush()
    return st


def _expire_open(sess: Session, p: Plan, m: MeterRow, st: StreamRow, now: datetime, s: Settings,
                 ev: list) -> str | None:
    """Charge the stream's open batch when its ack deadline has passed: its records were sent, so
    its hold is posted (never voided) and the buyer may re-read it free. Returns what happened.

    A hold made before this rule had a ledger timeout of its own; if that lapsed (the money went back
    to the buyer) the batch is held and posted afresh, and only if the buyer's funds no longer cover
    it is it voided as before (``delivery.unfunded`` in the audit log).
    """
    if st.open_batch is None:
        return None
    b = sess.get(BatchRow, st.open_batch, populate_existing=True)
    if _aware(b.expires_at) > now:
        return None
    if b.hold_id:
        hold = sess.execute(select(TransferRow).where(TransferRow.id == b.hold_id)).scalar_one_or_none()
        if hold is None or hold.state != "pending" or _aware(hold.expires_at) <= now:
            if hold is not None and hold.state == "pending":  # lapsing now: log it with this transaction
                ledger.expire_due(sess, now=now, debit_account_id=hold.debit_account_id)
                ev.append(("ledger.expired", f"expired:{b.hold_id}", {"id": b.hold_id, "amount": b.hold_amount}))
            amount = marginal_price(p.price, m.tokens_posted, b.tokens) if p.metered else 0
            if amount > ledger.available_to_hold(sess, p.buyer_id, p.currency, now=now):
                b.state, b.resolved_at = "voided", now
                m.tokens_held -= b.tokens
                st.open_batch, st.last_batch = None, b.id
                ev.append(("delivery.unfunded", f"unfunded:{b.id}",
                           {"batch": b.id, "tokens": b.tokens, "amount": amount, "reason": "legacy hold lapsed"}))
                return "voided"
            _post(sess, p, m, st, b, now, s, ev, how="expired", rehold=True)
            return "posted"
    _post(sess, p, m, st, b, now, s, ev, how="expired")
    return "posted"


def _post(sess: Session, p: Plan, m: MeterRow, st: StreamRow, b: BatchRow, now: datetime, s: Settings,
          ev: list, *, how: str = "ack", rehold: bool = False) -> dict:
    """Charge a delivered batch at its marginal price and write its usage record.

    ``how``: ``ack`` (the buyer acknowledged it), ``expired`` (its deadline passed unacknowledged:
    charged all the same, since it was sent) or ``late`` (a batch voided before this rule, now
    acknowledged). ``rehold``: its hold is gone, so hold and post at once.
    """
    amount = marginal_price(p.price, m.tokens_posted, b.tokens) if p.metered else 0
    transfer_id = None
    if rehold:
        b.hold_id, b.hold_amount = (f"dl:{b.id}:late", amount) if amount > 0 else (None, 0)
        if b.hold_id:
            ledger.hold(sess, b.hold_id, p.buyer_id, amount, p.currency, timeout_s=LEDGER_HOLD_TIMEOUT_S,
                        ref=f"ent:{p.entitlement_id}", now=now)
    if b.hold_id:
        ledger.capture(sess, f"{b.hold_id}:post", b.hold_id, p.provider_id, amount, fee_bps=s.platform_fee_bps,
                       now=now)
        transfer_id = f"{b.hold_id}:post"
    if b.state == "pending":  # its tokens were counted as held (a voided batch's were released)
        m.tokens_held -= b.tokens
    m.tokens_posted += b.tokens
    m.amount_posted += amount
    m.records_posted += b.records
    m.batches_posted += 1
    m.updated_at = now
    b.state, b.amount, b.resolved_at = ("expired" if how == "expired" else "posted"), amount, now
    st.acked = b.end
    st.open_batch = None
    st.last_batch = b.id
    market.record_draw(sess, p.entitlement_id, b.tokens)
    sess.add(
        UsageRow(
            batch_id=b.id,
            entitlement_id=p.entitlement_id,
            buyer_id=p.buyer_id,
            provider_id=p.provider_id,
            listing_id=p.listing_id,
            part=b.part,
            start=b.start,
            end=b.end,
            records=b.records,
            tokens=b.tokens,
            amount=amount,
            currency=p.currency,
            tokenizer=p.tokenizer,
            tokenizer_version=p.tokenizer_version,
            sha256=b.sha256,
            transfer_id=transfer_id,
            posted_at=now,
        )
    )
    info = {"batch_id": b.id, "tokens": b.tokens, "amount": amount, "sha256": b.sha256, "late": how == "late",
            "on": how}
    ev.append(("delivery.posted", f"posted:{b.id}", info))
    return info


def _cut(p: Plan, lo: int, hi: int, start: int, max_tokens: int, cap_tokens: int, s: Settings,
         upto: int | None = None) -> tuple[int, str]:
    """The end of the batch from partition offset ``start`` and what limited it: ``end`` (of the
    partition), ``tokens`` (max_tokens, already capped by the server), ``entitlement`` (its tokens
    left), ``charged`` (a replay stops where charging did) or ``bytes`` (the server's byte cap).
    The same function runs in the prediction and in the transaction, so both agree.
    """
    e = batch_end(p.cum, lo, start, hi, max_tokens, cap_tokens)
    limit = "end" if lo + e >= hi else ("entitlement" if cap_tokens < max_tokens else "tokens")
    if upto is not None and e > upto:
        e, limit = upto, "charged"
    if e > start:
        b = bytes_end(p, lo + start, lo + e, max(1, s.delivery_max_batch_bytes)) - lo
        if b < e:
            e, limit = b, "bytes"
    return e, limit


def _affordable(p: Plan, lo: int, start: int, end: int, available: int) -> int:
    """The largest end in ``[start, end]`` whose batch's hold (``price(tokens)``) fits ``available``."""
    base = int(p.cum[lo + start])
    a, b = start, end  # price(0) fits; price(tokens of [start, end)) does not
    while b - a > 1:
        mid = (a + b) // 2
        if p.price(int(p.cum[lo + mid]) - base) <= available:
            a = mid
        else:
            b = mid
    return a


def _step(sess: Session, p: Plan, c: Cursor, max_tokens: int, expect: tuple[int, int] | None,
          sha: Callable[[], str],
          now: datetime, s: Settings, ack_only: bool = False) -> Delivery:
    """One request under the meter's lock; its audit events are chained in one append at the end."""
    ev: list[tuple[str, str, dict]] = []
    try:
        d = _step_inner(sess, p, c, max_tokens, expect, sha, now, s, ack_only, ev)
    except CiyuanError as exc:
        if getattr(exc, "commit_first", False):  # the posts made before the error are kept: log them
            audit.append_many(sess, ev, at=now)
        raise
    audit.append_many(sess, ev, at=now)
    return d


def _step_inner(sess: Session, p: Plan, c: Cursor, max_tokens: int, expect: tuple[int, int] | None,
                sha: Callable[[], str],
                now: datetime, s: Settings, ack_only: bool, ev: list) -> Delivery:
    m = _meter(sess, p, c.parts, now)
    st = _stream(sess, p, c)
    lo, hi = partition_bounds(p.records, c.parts, c.part)
    _expire_open(sess, p, m, st, now, s, ev)
    o = c.offset
    if o > st.size:
        raise InvalidInput(f"cursor offset {o} is past the end ({st.size}) of this partition",
                           hint="pass back a next_cursor you were given", code="bad_cursor")
    here = str(c)
    cur = Cursor(c.parts, c.part, st.acked)
    posted = None
    ob = sess.get(BatchRow, st.open_batch, populate_existing=True) if st.open_batch else None
    last = sess.get(BatchRow, st.last_batch, populate_existing=True) if st.last_batch else None
    if ob is None and last is not None and last.state == "expired" and o == last.end:
        # a batch charged when its deadline passed is acknowledged now: /meter resumes after it
        last.state = "posted"
        ev.append(("delivery.acknowledged", f"acknowledged:{last.id}", {"batch": last.id, "end": last.end}))
    if ob is not None and o == ob.end and o != ob.start:
        posted = _post(sess, p, m, st, ob, now, s, ev)
    elif ob is not None and o == ob.start:
        if ack_only:
            return Delivery("acked", p.entitlement_id, here, here, o, o, 0)
        if expect != (ob.start, ob.end):
            raise _Mismatch(ob.start, ob.end)
        return Delivery("redelivery", p.entitlement_id, here, str(Cursor(c.parts, c.part, ob.end)), ob.start,
                        ob.end, ob.tokens, ob.id, ob.hold_amount, p.currency, ob.sha256, _aware(ob.expires_at))
    elif ob is None and last is not None and last.state == "voided" and last.start == st.acked and o == last.end:
        posted = _post(sess, p, m, st, last, now, s, ev, how="late", rehold=True)
    elif o < st.acked or (ob is None and o == st.acked):
        if ack_only:  # already acknowledged: nothing to do
            return Delivery("acked", p.entitlement_id, here, str(cur), o, o, 0)
        if o < st.acked:  # re-read what was already charged: free, changes nothing
            end, limit = _cut(p, lo, hi, o, max_tokens, 10**18, s, upto=st.acked)
            if expect != (o, end):
                raise _Mismatch(o, end)
            tokens = int(p.cum[lo + end] - p.cum[lo + o])
            return Delivery("replay", p.entitlement_id, here, str(Cursor(c.parts, c.part, end)), o, end, tokens,
                            sha256=sha(), limit=limit)
    else:
        raise Conflict(
            f"cursor {here} does not continue this stream (charged up to {cur})",
            hint=f"resume with cursor {cur}",
            code="cursor_stale",
        )
    if ack_only:
        return Delivery("acked", p.entitlement_id, here, str(Cursor(c.parts, c.part, st.acked)), o, o, 0,
                        posted=posted)
    start = st.acked
    nxt = Cursor(c.parts, c.part, start)
    if start >= st.size:
        return Delivery("done", p.entitlement_id, here, None, start, start, 0, posted=posted)
    remaining = p.tokens - m.tokens_posted - m.tokens_held
    end, limit = _cut(p, lo, hi, start, max_tokens, remaining, s)
    if end <= start:
        raise Conflict(
            f"entitlement {p.entitlement_id} has {remaining} tokens left, too few for the next record",
            hint="buy a new selection", code="entitlement_exhausted",
        )
    tokens = int(p.cum[lo + end] - p.cum[lo + start])
    hold_amount = p.price(tokens) if p.metered else 0
    if hold_amount > 0:  # never send more than the buyer's funds cover: a smaller batch, or 402
        available = ledger.available_to_hold(sess, p.buyer_id, p.currency, now=now)
        if hold_amount > available:
            end, limit = _affordable(p, lo, start, end, available), "funds"
            if end <= start:
                need = p.price(int(p.cum[lo + start + 1] - p.cum[lo + start]))
                err = ledger.InsufficientFunds(
                    f"entitlement {p.entitlement_id}: the next record ({format_amount(need, p.currency)} "
                    f"{p.currency}) is more than the {format_amount(max(available, 0), p.currency)} {p.currency} "
                    "available to hold",
                    hint=f"deposit at least {format_amount(need - max(available, 0), p.currency)} {p.currency} "
                         f"(ciyuan ledger deposit), then ask again with cursor {nxt}",
                )
                err.commit_first = True  # a batch posted by this request stays posted
                raise err
            tokens = int(p.cum[lo + end] - p.cum[lo + start])
            hold_amount = p.price(tokens)
    if expect != (start, end):
        raise _Mismatch(start, end)
    seq = st.next_seq
    st.next_seq += 1
    content_sha = sha()
    batch_id = f"{p.entitlement_id}.{c.part}.{seq}"
    hold_id = None
    if hold_amount > 0:
        hold_id = f"dl:{batch_id}"
        # the ledger hold has no deadline of its own that could hand the money back: the batch's
        # deadline (expires_at) posts it, because by then its records have been sent
        ledger.hold(sess, hold_id, p.buyer_id, hold_amount, p.currency, timeout_s=LEDGER_HOLD_TIMEOUT_S,
                    ref=f"ent:{p.entitlement_id}", now=now)
    expires = now + timedelta(seconds=s.hold_timeout_s)
    sess.add(BatchRow(id=batch_id, entitlement_id=p.entitlement_id, part=c.part, seq=seq, start=start, end=end,
                      records=end - start, tokens=tokens, hold_id=hold_id, hold_amount=hold_amount, amount=None,
                      sha256=content_sha, state="pending", created_at=now, expires_at=expires, resolved_at=None))
    m.tokens_held += tokens
    m.updated_at = now
    st.open_batch = batch_id
    ev.append(("delivery.batch", f"batch:{batch_id}",
               {"batch": batch_id, "start": start, "end": end, "tokens": tokens, "hold": hold_id,
                "hold_amount": hold_amount, "sha256": content_sha}))
    return Delivery("new", p.entitlement_id, str(nxt), str(Cursor(c.parts, c.part, end)), start, end, tokens,
                    batch_id, hold_amount, p.currency, content_sha, expires, posted, limit=limit)


def _predict(p: Plan, c: Cursor, max_tokens: int, s: Settings) -> tuple[int, int]:
    """The bounds a request will most likely get, from the remembered state or read without locks.

    Only a guess: the transaction checks it and re-runs with the true bounds when it was wrong
    (another process moved the stream, a sweep voided the open batch).
    """
    lo, hi = partition_bounds(p.records, c.parts, c.part)
    with _streams_lock:
        known = _streams.get((p.entitlement_id, c.part))

    def read(sess: Session) -> tuple[int, int | None, int | None]:
        st = sess.get(StreamRow, (p.entitlement_id, c.part))
        if st is None:
            return 0, None, None
        ob = sess.get(BatchRow, st.open_batch) if st.open_batch else None
        return (st.acked, ob.start, ob.end) if ob is not None else (st.acked, None, None)

    acked, ob_start, ob_end = known if known is not None else tx.run(read, s)
    o = c.offset
    if ob_start is not None and o == ob_start:
        return ob_start, ob_end
    start = ob_end if ob_end is not None and o == ob_end else (o if o <= acked else acked)
    if start >= hi - lo:
        return start, start
    end, _ = _cut(p, lo, hi, start, max_tokens, 10**18, s, upto=acked if o < acked else None)
    return start, end


def _prefetch(p: Plan, lo: int, hi: int, start: int, max_tokens: int, fmt: str, encode: Encoder,
              s: Settings) -> None:
    """Prepare the batch a client will most likely ask for next while it receives this one.

    Reading, hashing and encoding then overlap with the network and the client's decoding, and the
    next request only runs its transaction. A wrong guess (different max_tokens, a capped
    remainder, a client that stops) costs one batch of work and a cache slot, never correctness:
    the transaction decides the bounds and the cache is keyed by them.
    """
    if lo + start >= hi:
        return

    def prepare() -> None:
        end, _ = _cut(p, lo, hi, start, max_tokens, 10**18, s)
        PREPARED.get(p, lo + start, lo + end).body(fmt, encode)

    _POOL.submit(prepare)


def _check_max_tokens(max_tokens: int | None) -> int:
    if max_tokens is None:
        return DEFAULT_MAX_TOKENS
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_MAX_TOKENS:
        raise InvalidInput(f"max_tokens {max_tokens!r} must be from 1 to {MAX_MAX_TOKENS:,}",
                           hint="ask for about a million tokens per batch", code="bad_max_tokens")
    return max_tokens


def next_batch(buyer_id: str | None, entitlement_id: str, cursor: str | None = None, *, parts: int = 1,
               part: int = 0, max_tokens: int | None = None, s: Settings | None = None,
               now: datetime | None = None, encode: Encoder | None = None, fmt: str = "") -> Delivery:
    """Acknowledge what ``cursor`` says was received and return the next batch (see module doc).

    With ``encode`` (and a ``fmt`` naming it), the batch's body is encoded on a worker thread while
    the transaction runs and returned in ``Delivery.body``; it is cached with the batch, so a
    redelivery sends the very bytes sent the first time.
    """
    s = s or settings()
    max_tokens = min(_check_max_tokens(max_tokens), max(1, s.delivery_max_batch_tokens))  # the server's cap
    p = plan(entitlement_id, buyer_id, s)
    c = Cursor.parse(cursor, parts=parts, part=part)
    bounds = _predict(p, c, max_tokens, s)
    lo, _hi = partition_bounds(p.records, c.parts, c.part)
    for _ in range(8):
        a, b = lo + bounds[0], lo + bounds[1]
        prep = PREPARED.get(p, a, b)
        body = prep.body(fmt, encode) if encode is not None else None
        if encode is not None and bounds[1] > bounds[0]:  # the next batch, while this one is billed and sent
            _prefetch(p, lo, _hi, bounds[1], max_tokens, fmt, encode, s)
        try:  # the digest is awaited inside the transaction only where it is written
            d = tx.run(lambda sess, bd=bounds, pr=prep: _step(sess, p, c, max_tokens, bd, pr.sha.result,
                                                              _now(now), s), s)
        except _Mismatch as mm:
            bounds = (mm.start, mm.end)
            continue
        except CiyuanError:  # e.g. a 402 after posting the batch the cursor acknowledged: state moved
            with _streams_lock:
                _streams.pop((p.entitlement_id, c.part), None)
            raise
        if d.kind == "redelivery" and d.sha256 != prep.sha.result() and d.sha256 != digest_v1(prep.table):
            raise Conflict(f"batch {d.batch_id} content changed since it was first sent",
                           hint="contact the operator: the stored shards changed", code="content_changed")
        if d.kind in ("new", "redelivery"):
            _remember(p, c.part, d.start, (d.start, d.end))
        elif d.kind == "done":
            _remember(p, c.part, d.start, None)
        if d.kind == "done":
            d.table = SCHEMA.empty_table()
            d.sha256 = EMPTY_DIGEST
            if encode is not None:
                d.body = encode(d.table)
                d.body_sha256 = hashlib.sha256(d.body).hexdigest()
            return d
        d.table = prep.table
        if body is not None:
            d.body, d.body_sha256 = body.result()
        return d
    raise Conflict("the stream kept moving under this request", hint="retry with the same cursor",
                   code="stream_busy")


def ack(buyer_id: str | None, entitlement_id: str, cursor: str, *, s: Settings | None = None,
        now: datetime | None = None) -> Delivery:
    """Acknowledge (and pay for) the batch that ends at ``cursor`` without asking for another."""
    s = s or settings()
    p = plan(entitlement_id, buyer_id, s)
    c = Cursor.parse(cursor)
    d = tx.run(lambda sess: _step(sess, p, c, 1, None, lambda: "", _now(now), s, ack_only=True), s)
    with _streams_lock:  # the stream moved: the next request reads its state afresh
        _streams.pop((p.entitlement_id, c.part), None)
    return d


def sweep(*, s: Settings | None = None, now: datetime | None = None) -> dict:
    """Charge every open batch past its deadline (its hold is posted: it was sent); run by the server's
    background sweeper and ``ciyuan delivery sweep``. ``voided`` counts only holds made before this
    rule whose own ledger timeout lapsed and which the buyer's funds no longer cover.
    """
    s = s or settings()
    t = _now(now)
    due = tx.run(lambda sess: sess.execute(
        select(BatchRow.entitlement_id).where(BatchRow.state == "pending", BatchRow.expires_at <= t).distinct()
    ).scalars().all(), s)
    counts = {"posted": 0, "voided": 0}
    for ent_id in due:
        p = plan(ent_id, None, s)

        def work(sess: Session, p: Plan = p) -> list[str]:
            m = sess.get(MeterRow, p.entitlement_id, with_for_update=True, populate_existing=True)
            done, ev = [], []
            for st in sess.execute(select(StreamRow).where(StreamRow.entitlement_id == p.entitlement_id)).scalars():
                if st.open_batch and (what := _expire_open(sess, p, m, st, t, s, ev)):
                    done.append(what)
            audit.append_many(sess, ev, at=t)
            return done

        for what in tx.run(work, s):
            counts[what] += 1
        with _streams_lock:  # those streams moved: predict from the database next time
            for key in [k for k in _streams if k[0] == ent_id]:
                _streams.pop(key, None)
    return {**counts, "entitlements": len(due)}


# -- metered orders -------------------------------------------------------------------------------------


def place_metered_order(buyer_id: str, quote_id: str, idempotency_key: str, *, s: Settings | None = None,
                        now: datetime | None = None) -> tuple[dict, bool]:
    """An order that pays as it streams: nothing is charged now; each posted batch is charged.

    The quote's amount is what the whole selection will cost; the entitlement caps the tokens.
    Same idempotency rules as a paid order (it is the market's order with metered billing).
    """
    return market.place_order(buyer_id, quote_id, idempotency_key, billing=METERED, s=s, now=now)


# -- reading usage and state ----------------------------------------------------------------------------


def usage_dict(r: UsageRow) -> dict:
    return {
        "batch_id": r.batch_id,
        "entitlement_id": r.entitlement_id,
        "listing_id": r.listing_id,
        "part": r.part,
        "start": r.start,
        "end": r.end,
        "records": r.records,
        "tokens": r.tokens,
        "amount": r.amount,
        "amount_text": format_amount(r.amount, r.currency),
        "currency": r.currency,
        "tokenizer": r.tokenizer,
        "tokenizer_version": r.tokenizer_version,
        "sha256": r.sha256,
        "transfer_id": r.transfer_id,
        "posted_at": _aware(r.posted_at),
    }


def usage(sess: Session, *, buyer_id: str | None = None, provider_id: str | None = None,
          entitlement_id: str | None = None, after: int = 0, limit: int = 100) -> dict:
    """Usage records (one per posted batch) visible to a buyer, a provider, or the operator (both None)."""
    q = select(UsageRow).where(UsageRow.seq > after).order_by(UsageRow.seq).limit(max(1, min(limit, 1000)))
    if buyer_id is not None:
        q = q.where(UsageRow.buyer_id == buyer_id)
    if provider_id is not None:
        q = q.where(UsageRow.provider_id == provider_id)
    if entitlement_id is not None:
        q = q.where(UsageRow.entitlement_id == entitlement_id)
    rows = sess.execute(q).scalars().all()
    return {"items": [usage_dict(r) for r in rows], "next_after": rows[-1].seq if rows else None}


def resume_offset(st: StreamRow, last: BatchRow | None) -> int:
    """Where this stream should resume: the end of what the buyer acknowledged.

    That is the charged offset, except when the last batch was charged because its deadline passed
    unacknowledged (the buyer may never have taken it): then its start, and re-reading it is free.
    An open batch starts at the charged offset, so resuming there redelivers it under its hold.
    """
    if st.open_batch is None and last is not None and last.state == "expired":
        return last.start
    return st.acked


def meter_state(sess: Session, p: Plan) -> dict:
    """Tokens held and charged, and per stream the charged offset and the cursor to resume from."""
    m = sess.get(MeterRow, p.entitlement_id)
    streams = sess.execute(select(StreamRow).where(StreamRow.entitlement_id == p.entitlement_id)
                           .order_by(StreamRow.part)).scalars().all()
    ids = [st.last_batch for st in streams if st.last_batch]
    lasts = {b.id: b for b in sess.execute(select(BatchRow).where(BatchRow.id.in_(ids))).scalars()} if ids else {}
    out = []
    for st in streams:
        last = lasts.get(st.last_batch) if st.last_batch else None
        resume = resume_offset(st, last)
        out.append({
            "part": st.part, "size": st.size,
            "acked": resume,  # acknowledged by the buyer
            "charged": st.acked,  # charged (acknowledged, or sent and past its deadline)
            "open_batch": st.open_batch,
            "unacknowledged_batch": last.id if last is not None and resume < st.acked else None,
            "cursor": str(Cursor(st.parts, st.part, resume)),  # where to resume: re-reading charged records is free
            "done": resume >= st.size,
        })
    return {
        "entitlement_id": p.entitlement_id,
        "billing": METERED if p.metered else "prepaid",
        "tokens": p.tokens,
        "records": p.records,
        "parts": m.parts if m else None,
        "tokens_held": m.tokens_held if m else 0,
        "tokens_posted": m.tokens_posted if m else 0,
        "amount_posted": m.amount_posted if m else 0,
        "currency": p.currency,
        "streams": out,
    }
