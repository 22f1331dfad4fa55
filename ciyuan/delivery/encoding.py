"""Prepared batches: a batch's records, content digest and encoded bodies, computed once per batch.

The Arrow IPC encoder reuses the compressed messages of row groups taken whole; prepared batches
live in a bounded LRU keyed by entitlement and positions, so a redelivery or a free replay sends the
bytes first sent, and the batch a client will most likely ask for next is prepared on the worker
pool (``_POOL``) while the current one is billed and sent. NDJSON bodies are
:func:`ciyuan.delivery.metering.table_to_ndjson` (pure, shared with the SDK).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pyarrow as pa

from ciyuan.delivery.metering import SCHEMA, digest, digest_leaves
from ciyuan.delivery.plan import Plan
from ciyuan.delivery.rowcache import Piece, read_positions_leaves

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
