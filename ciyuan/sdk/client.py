"""HTTP client of the exchange (httpx), with retries that can never bill twice.

Retries are safe by construction: reads are idempotent, orders carry an ``Idempotency-Key`` that
stays the same across retries, and a stream request re-sent with the same cursor gets the same
batch under the same hold (or, if the first attempt did arrive, the batch after it is redelivered
rather than opened twice).

A batch is acknowledged (the next request carries its ``next_cursor``) only after the caller took
it: :meth:`Client.batches` never acknowledges a batch still waiting in its read-ahead queue, and
:meth:`Client.stream` acknowledges a batch when the loop asks for the record after its last one.
What the server sent is charged in any case (at the batch's deadline if it was never
acknowledged), and re-reading charged records is free, so a crashed consumer loses nothing.

Every batch is checked before it is handed over. By default (``verify="body"``) the sha256 of the
body's bytes, which the server computed over exactly what it sent, is compared: cheap, since the
Arrow body is compressed. ``verify="content"`` also recomputes the canonical content digest that
the usage record and the receipt hold (format free, so a buyer can tie records to the bill); it
reads every byte of the records, so it costs about as much as decoding them again.
``Batch.verify_content()`` does the same check on demand.

Safe across ``fork`` and threads. The httpx client (and its keep-alive connections) belongs to the
process that built it: a forked child (a DataLoader worker) never uses the parent's, it builds its
own (``os.register_at_fork`` and a pid check), so two processes never write to one socket. Threads
share one httpx client, which is thread-safe. And every stream response is bound to the request it
answers: the SDK sends a fresh ``Ciyuan-Request-Id`` with each attempt, and the server echoes it
with the cursor it was asked for, the entitlement, the partition and the partition count; an answer
that names anything else is refused before it is decoded, handed over or acknowledged, the
connection is dropped, and the same cursor is asked again (a free redelivery); after ``retries``
such answers the fetch raises ``ApiError(502, "crossed_response")``.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from ciyuan.delivery.metering import Cursor, digest, records_to_table
from ciyuan.sdk.errors import ApiError
from ciyuan.sdk.knowledge import KnowledgeCalls

__all__ = ["ApiError", "Batch", "Client"]

ARROW = "application/vnd.apache.arrow.stream"
NDJSON = "application/x-ndjson"
RETRY_STATUS = {502, 503, 504}
VERIFY = ("body", "content", "none")
DEFAULT_MAX_TOKENS = 4_000_000

_clients: weakref.WeakSet = weakref.WeakSet()  # every live Client, to forget their pools in a forked child
_inherited: list = []  # a child's copies of its parent's pools: kept, never closed or used (the socket is shared)


def _after_fork_in_child() -> None:
    for c in list(_clients):
        c._forget_inherited()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass
class Batch:
    """One delivered batch: its records (as an Arrow table) and where the stream continues."""

    kind: str
    cursor: str
    next_cursor: str | None
    tokens: int
    sha256: str
    batch_id: str | None
    hold_amount: int
    table: pa.Table = field(repr=False)
    entitlement_id: str = ""
    client: Client | None = field(default=None, repr=False, compare=False)  # fetches blob media

    @property
    def done(self) -> bool:
        return self.kind == "done"

    def verify_content(self) -> bool:
        """Whether the records hash to the digest the usage record and the receipt hold."""
        return digest(self.table) == self.sha256

    def records(self, decode: str | None = None, resolve_media: bool = True) -> list[dict]:
        """Records as dicts; ``meta`` parsed back to an object; a blob's bytes fetched into ``media``
        (unless ``resolve_media=False``, see :mod:`ciyuan.sdk.blobs`); media decoded when ``decode`` is
        ``"pil"``, ``"numpy"`` or ``"torch"`` (see :mod:`ciyuan.sdk.media`)."""
        from ciyuan.sdk.media import check_decode, decode_record

        check_decode(decode)
        out = self.table.to_pylist()
        if resolve_media and self.client is not None:
            self.client.resolve_media(self.entitlement_id, out)
        for r in out:
            r["meta"] = json.loads(r["meta"]) if r.get("meta") else {}
        return [decode_record(r, decode) for r in out] if decode else out


class Client(KnowledgeCalls):
    """``Client(base_url, key)``: every call returns parsed JSON or raises :class:`ApiError`."""

    def __init__(self, base_url: str, key: str | None = None, *, timeout: float = 120.0, retries: int = 10,
                 backoff: float = 0.1, max_backoff: float = 5.0, verify: str = "body",
                 transport: httpx.BaseTransport | None = None):
        if verify not in VERIFY:
            raise ValueError(f"verify must be one of {', '.join(VERIFY)}, not {verify!r}")
        self.base_url = base_url.rstrip("/")
        self.verify = verify
        self.key = key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.transport = transport  # e.g. a proxy's, or a test's fault injection
        self._http: httpx.Client | None = None
        self._pid = os.getpid()  # the process that owns self._http
        self._lock = threading.Lock()
        _clients.add(self)

    # the httpx client is per process: a Client can be pickled (spawned workers) or forked (forked workers)
    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_http", "_lock")} | {"_http": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        _clients.add(self)

    def _forget_inherited(self) -> None:
        """In a forked child: drop (without closing) the parent's pool, whose sockets the parent still uses."""
        if self._http is not None:
            _inherited.append(self._http)
        self._http = None
        self._pid = os.getpid()
        self._lock = threading.Lock()  # the parent's may have been held by another thread at fork time

    @property
    def http(self) -> httpx.Client:
        """This process's httpx client: built on first use, rebuilt in a forked child."""
        h = self._http
        if h is not None and self._pid == os.getpid():
            return h
        if self._pid != os.getpid():  # forked without the at-fork hook (or before it ran)
            self._forget_inherited()
        with self._lock:
            if self._http is None:
                headers = {"Authorization": f"Bearer {self.key}"} if self.key else {}
                self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=self.timeout,
                                          transport=self.transport)
                self._pid = os.getpid()
            return self._http

    def _reconnect(self) -> None:
        """Use fresh connections from now on. The old pool is dropped, not closed: another thread may still
        be reading its own answer on it (it is closed when the last user lets go of it)."""
        with self._lock:
            self._http = None

    def close(self) -> None:
        """Close this process's connections (a child never closes what it inherited)."""
        if self._pid != os.getpid():
            self._forget_inherited()
            return
        with self._lock:
            h, self._http = self._http, None
        if h is not None:
            h.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _sleep(self, attempt: int) -> None:
        time.sleep(min(self.max_backoff, self.backoff * 2**attempt) * (0.5 + random.random() / 2))

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Send with retries on network errors and gateway statuses; raise ApiError on a 4xx/5xx answer."""
        for attempt in range(self.retries + 1):
            try:
                resp = self.http.request(method, path, **kw)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
                self.close()  # the connection may be dead (server restarted)
                self._sleep(attempt)
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.retries:
                self._sleep(attempt)
                continue
            if resp.status_code >= 400:
                try:
                    err = resp.json()["error"]
                except (ValueError, KeyError, TypeError):
                    err = {"code": "http_error", "message": resp.text[:200], "hint": ""}
                raise ApiError(resp.status_code, err.get("code", ""), err.get("message", ""), err.get("hint", ""))
            return resp
        raise AssertionError("unreachable")

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        return self.request(method, path, **kw).json()

    # -- market ------------------------------------------------------------------------------------
    def catalog(self, **filters: Any) -> dict:
        """Search listings (``q``, ``modality``, ``language``, ``domain``, ``limit``, ``offset``...)."""
        return self._json("GET", "/v1/listings", params={k: v for k, v in filters.items() if v is not None})

    def listing(self, listing_id: str) -> dict:
        return self._json("GET", f"/v1/listings/{listing_id}")

    def quote(self, listing_id: str, selection: dict | None = None) -> dict:
        body: dict = {"listing_id": listing_id}
        if selection is not None:
            body["selection"] = selection
        return self._json("POST", "/v1/quotes", json=body)

    def order(self, quote_id: str, *, metered: bool = False, idempotency_key: str | None = None) -> dict:
        """Pay a quote (or open a metered order); the key is fixed before the first try so retries replay."""
        key = idempotency_key or str(uuid.uuid4())
        path = "/v1/metered-orders" if metered else "/v1/orders"
        return self._json("POST", path, json={"quote_id": quote_id}, headers={"Idempotency-Key": key})

    def get_order(self, order_id: str) -> dict:
        return self._json("GET", f"/v1/orders/{order_id}")

    def orders(self, limit: int = 50, offset: int = 0) -> list[dict]:
        return self._json("GET", "/v1/orders", params={"limit": limit, "offset": offset})

    def entitlement(self, entitlement_id: str) -> dict:
        return self._json("GET", f"/v1/entitlements/{entitlement_id}")

    # -- money -------------------------------------------------------------------------------------
    def usage(self, entitlement_id: str | None = None, after: int = 0, limit: int = 100) -> dict:
        params: dict = {"after": after, "limit": limit}
        if entitlement_id:
            params["entitlement_id"] = entitlement_id
        return self._json("GET", "/v1/usage", params=params)

    def all_usage(self, entitlement_id: str | None = None) -> list[dict]:
        out, after = [], 0
        while True:
            page = self.usage(entitlement_id, after=after, limit=1000)
            out.extend(page["items"])
            if not page["items"]:
                return out
            after = page["next_after"]

    def balance(self) -> dict:
        return self._json("GET", "/v1/balance")

    def meter(self, entitlement_id: str) -> dict:
        return self._json("GET", f"/v1/entitlements/{entitlement_id}/meter")

    def receipt(self, entitlement_id: str, path: str | Path | None = None) -> bytes:
        """The signed receipt's exact bytes (written to ``path`` if given)."""
        data = self.request("GET", f"/v1/entitlements/{entitlement_id}/receipt").content
        if path is not None:
            Path(path).write_bytes(data)
        return data

    def receipt_key(self) -> dict:
        return self._json("GET", "/v1/receipts/key")

    # -- packages ----------------------------------------------------------------------------------
    def package(self, entitlement_id: str, ttl_s: int = 3600) -> dict:
        return self._json("POST", f"/v1/entitlements/{entitlement_id}/package", json={"ttl_s": ttl_s})

    def download(self, url: str, path: str | Path) -> int:
        """Stream one package URL to ``path``; returns the bytes written."""
        n = 0
        with self.http.stream("GET", url) as resp:
            if resp.status_code >= 400:
                resp.read()
                err = resp.json().get("error", {})
                raise ApiError(resp.status_code, err.get("code", ""), err.get("message", ""), err.get("hint", ""))
            with open(path, "wb") as fh:
                for chunk in resp.iter_bytes(1 << 20):
                    fh.write(chunk)
                    n += len(chunk)
        return n

    def download_package(self, entitlement_id: str, folder: str | Path, ttl_s: int = 3600) -> dict:
        """The package as one self-contained folder: shards, blobs, ``package.json`` (:mod:`ciyuan.sdk.blobs`)."""
        from ciyuan.sdk import blobs

        return blobs.download_package(self, entitlement_id, folder, ttl_s)

    # -- media blobs (records with ``media_ref``) ------------------------------------------------------
    def media_url(self, entitlement_id: str, ref: str, ttl_s: int = 3600) -> str:
        """A signed, expiring URL of a billed record's blob (absolute; it supports HTTP ranges)."""
        from ciyuan.sdk import blobs

        return self.base_url + blobs.media_urls(self, entitlement_id, [ref], ttl_s)[ref]

    def media(self, entitlement_id: str, ref: str, path: str | Path | None = None) -> bytes | int:
        """A blob's bytes (checked against its sha256), or with ``path`` written there (resumable): its size."""
        from ciyuan.sdk import blobs

        url = blobs.media_urls(self, entitlement_id, [ref])[ref]
        return blobs.get_blob(self, url, ref) if path is None else blobs.download_media(self, url, ref, path)

    def resolve_media(self, entitlement_id: str, records: list[dict]) -> list[dict]:
        """Fill ``media`` of the records that carry only a ``media_ref``, in place."""
        from ciyuan.sdk import blobs

        return blobs.resolve(self, entitlement_id, records)

    def attachments(self, entitlement_id: str, refs: list[str]) -> dict[str, bytes]:
        """``ref -> bytes`` of blobs an episode's ``meta.attachments`` names (its camera videos), checked."""
        from ciyuan.sdk import blobs

        urls = blobs.media_urls(self, entitlement_id, refs)
        return {ref: blobs.get_blob(self, url, ref) for ref, url in urls.items()}

    # -- streams -----------------------------------------------------------------------------------
    def fetch(self, entitlement_id: str, cursor: str | None = None, *, max_tokens: int = DEFAULT_MAX_TOKENS,
              parts: int = 1, part: int = 0, fmt: str = "arrow") -> Batch:
        """One batch. Asking with a batch's ``next_cursor`` acknowledges (pays for) that batch."""
        for attempt in range(self.retries + 1):
            h, data = self._receive(entitlement_id, cursor, max_tokens=max_tokens, parts=parts, part=part, fmt=fmt)
            b = self._decode(h, data, fmt)
            if b is not None:
                return b
            if attempt == self.retries:  # same cursor again is a redelivery, never a new charge
                raise ApiError(502, "digest_mismatch", "batch content does not match its digest", "retry")
            self._sleep(attempt)
        raise AssertionError("unreachable")

    def _receive(self, entitlement_id: str, cursor: str | None, *, max_tokens: int, parts: int, part: int,
                 fmt: str) -> tuple[httpx.Headers, bytes]:
        """A batch's headers and body bytes, re-asked (same cursor: no new charge) until they arrive intact."""
        params: dict = {"max_tokens": max_tokens, "parts": parts, "part": part}
        if cursor:
            params["cursor"] = cursor
        accept = ARROW if fmt == "arrow" else NDJSON
        crossed = ""
        for attempt in range(self.retries + 1):
            rid = uuid.uuid4().hex
            resp = self.request("GET", f"/v1/entitlements/{entitlement_id}/records", params=params,
                                headers={"Accept": accept, "Ciyuan-Request-Id": rid})
            crossed = self._crossed(resp.headers, rid, entitlement_id, cursor, parts, part)
            if crossed:
                # an answer to another request (a shared or confused connection): never decoded, handed
                # over or acknowledged. Drop the connection and ask again with the same cursor: free.
                self._reconnect()
                if attempt == self.retries:
                    raise ApiError(502, "crossed_response",
                                   f"the exchange's answer was for another request ({crossed})",
                                   "a connection shared with another process or a proxy mixing answers; "
                                   "or an exchange older than this SDK (it must echo Ciyuan-Request-Id)")
                self._sleep(attempt)
                continue
            if self._intact(resp.content, resp.headers):
                return resp.headers, resp.content
            if attempt == self.retries:
                raise ApiError(502, "digest_mismatch", "batch body does not match its digest", "retry")
            self._sleep(attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _crossed(h: httpx.Headers, rid: str, entitlement_id: str, cursor: str | None, parts: int,
                 part: int) -> str:
        """Why a stream response does not answer this request ('' when it does)."""
        if cursor:
            c = Cursor.parse(cursor)
            parts, part = c.parts, c.part
        want = {"ciyuan-request-id": rid, "ciyuan-entitlement": entitlement_id,
                "ciyuan-request-cursor": cursor or "", "ciyuan-parts": str(parts), "ciyuan-part": str(part)}
        for k, v in want.items():
            got = h.get(k)
            if got != v:
                return f"{k} {got!r}, asked {v!r}"
        return ""

    def _decode(self, h: httpx.Headers, data: bytes, fmt: str) -> Batch | None:
        """The batch of an intact body, or None when the content digest is checked and differs."""
        if fmt == "arrow" and data:
            table = pa.ipc.open_stream(data).read_all()
        else:
            table = records_to_table([json.loads(x) for x in data.splitlines() if x.strip()])
        # without a body digest (an older server) the content digest is the only check there is
        deep = self.verify == "content" or (self.verify == "body" and "ciyuan-body-sha256" not in h)
        if deep and digest(table) != h.get("ciyuan-batch-sha256"):
            return None
        return Batch(h["ciyuan-batch-kind"], h["ciyuan-cursor"], h.get("ciyuan-next-cursor") or None,
                     int(h["ciyuan-tokens"]), h["ciyuan-batch-sha256"], h.get("ciyuan-batch-id"),
                     int(h.get("ciyuan-hold-amount") or 0), table, h.get("ciyuan-entitlement", ""), self)

    def _intact(self, data: bytes, h: httpx.Headers) -> bool:
        """The body's bytes are those the server sent (sha256 header), unless checks are off."""
        want = h.get("ciyuan-body-sha256")
        return self.verify == "none" or want is None or hashlib.sha256(data).hexdigest() == want

    def ack(self, entitlement_id: str, cursor: str) -> dict:
        return self._json("POST", f"/v1/entitlements/{entitlement_id}/ack", json={"cursor": cursor})

    def batches(self, entitlement_id: str, cursor: str | None = None, *, read_ahead: bool = True,
                **kw: Any) -> Iterator[Batch]:
        """Batches until the stream is done. Asking for batch N+1 acknowledges batch N, and the SDK
        asks only once the caller has taken N (the loop received it), never for a batch still queued.

        With ``read_ahead`` a background thread asks for, checks and decodes N+1 as soon as the
        caller has taken N, so the server sends it while the caller works on N. N+1 has then been
        received: a loop that stops there is charged for it at its deadline (what is sent is billed),
        and ``/meter``'s resume cursor points at its start, so the next run re-reads it free.
        ``read_ahead=False`` asks for N+1 only when the loop asks for it.
        """
        if not read_ahead:
            while True:
                b = self.fetch(entitlement_id, cursor, **kw)
                if b.done:
                    return
                yield b
                cursor = b.next_cursor
        got: queue.Queue = queue.Queue(maxsize=1)
        taken = threading.Semaphore(0)  # released when the caller takes a batch
        stop = threading.Event()

        def offer(item: tuple) -> bool:
            while not stop.is_set():  # the consumer may have stopped: never block forever
                try:
                    got.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def receive() -> None:
            cur = cursor
            try:
                while not stop.is_set():
                    b = self.fetch(entitlement_id, cur, **kw)
                    if not offer((b, None)) or b.done:
                        return
                    while not taken.acquire(timeout=0.1):  # the next request acknowledges b: wait for the take
                        if stop.is_set():
                            return
                    if stop.is_set():
                        return
                    cur = b.next_cursor
            except BaseException as exc:  # noqa: BLE001 - handed to the consuming thread
                offer((None, exc))

        t = threading.Thread(target=receive, name="ciyuan-read-ahead", daemon=True)
        t.start()
        try:
            while True:
                b, exc = got.get()
                if b is None:
                    raise exc
                if b.done:
                    return
                taken.release()
                yield b
        finally:
            stop.set()
            t.join()

    def stream(self, entitlement_id: str, cursor: str | None = None, *, max_tokens: int = DEFAULT_MAX_TOKENS,
               parts: int = 1, part: int = 0, fmt: str = "arrow", read_ahead: bool = False,
               decode: str | None = None, resolve_media: bool = True) -> Iterator[dict]:
        """Every record of (one partition of) an entitlement, in order (media decoded with ``decode``;
        a blob's bytes fetched into ``media`` unless ``resolve_media=False``: see :mod:`ciyuan.sdk.blobs`).

        A batch is acknowledged only when the loop asks for the record after its last one, so after
        a crash ``/meter``'s resume cursor never points past a record the loop did not get.
        ``read_ahead=True`` acknowledges a batch once its first record is taken instead (faster,
        but a crash mid-batch then resumes after it: keep your own position, as TokenStream does).
        """
        if cursor is None:
            cursor = str(Cursor.start(parts, part))
        for b in self.batches(entitlement_id, cursor, max_tokens=max_tokens, parts=parts, part=part, fmt=fmt,
                              read_ahead=read_ahead):
            yield from b.records(decode, resolve_media)
