"""Metered delivery: batches of an entitlement's records, each held before it is sent and charged once.

Over 500 lines because this is one state machine: the transaction step with its money moves
(``_expire_open``, ``_post``) and the requests that predict and run it (``next_batch``, ``ack``,
``sweep``) share the stream cache and ``_cut``, which must give the same bounds in both.

The rule: **delivered means billed, once.** Whatever the exchange sends is charged, when the buyer
acknowledges it or, at the latest, when its ack deadline passes (the hold is posted, never voided:
the records are out). Reading records that are already charged again is free, so a buyer that
crashed loses nothing by resuming. A batch never holds more than the buyer's available funds,
the entitlement's tokens left, or the server's caps (``delivery_max_batch_tokens``,
``delivery_max_batch_bytes``) allow.

The state of one stream (a partition of the selection, see :mod:`ciyuan.delivery.metering`) is
``acked`` (the offset charged so far) and at most one *open* batch ``[acked, end)`` with its ledger
hold. Which case a request's cursor falls in is decided by the pure :func:`ciyuan.delivery.cases.decide`
(the state table of docs/delivery.md, row by row); :func:`_step_inner` acts on its answer.

An open batch past its deadline (``hold_timeout_s``) is posted by the request that finds it, the
server's sweeper or ``ciyuan delivery sweep``; it is then charged but not acknowledged, and
``/meter`` offers its start as the resume cursor. Posting charges ``price(P + t) - price(P)``
where ``P`` is the entitlement's posted tokens, under a lock on its meter row, so the total
charged equals the price of the total tokens exactly, however the stream was split. Holds, posts
and expiries go to the ledger (:mod:`ciyuan.ledger.ledger`), which logs every transfer to the
audit chain as it inserts it; delivery adds its own events (batches, posts, acknowledgements) in
the same transaction.

Entitlements of paid (prepaid) orders stream the same way without holds; metered orders
(:func:`ciyuan.delivery.usage.place_metered_order`) pay per posted batch.

Reading is kept out of the database transaction: the batch bounds are predicted from the
stream's state (remembered in process after each request, read from the database otherwise), the
content is read, and the transaction then checks that the state still gives those bounds (else it
is re-run with the bounds it found). The content digest comes from per-record leaves kept with
the cached row groups (:mod:`ciyuan.delivery.rowcache`), the encoded body is compressed on a
worker thread while the transaction runs (Arrow releases the GIL), and both are kept in a bounded
per-entitlement cache (:mod:`ciyuan.delivery.encoding`) so a redelivery or replay is neither re-read
nor re-encoded; the batch a client will most likely ask for next is prepared while the current one
is billed and sent.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ciyuan.clock import aware, utc_now
from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.delivery.cases import BatchState, Case, Decision, decide, resume_offset
from ciyuan.delivery.encoding import _POOL, EMPTY_DIGEST, PREPARED, Encoder
from ciyuan.delivery.metering import (
    SCHEMA,
    Cursor,
    batch_end,
    digest_v1,
    marginal_price,
    partition_bounds,
)
from ciyuan.delivery.plan import METERED, Plan, plan
from ciyuan.delivery.rowcache import bytes_end
from ciyuan.delivery.tables import BatchRow, MeterRow, StreamRow
from ciyuan.errors import CiyuanError, Conflict, InvalidInput
from ciyuan.ledger import audit, ledger
from ciyuan.ledger.money import format_amount
from ciyuan.ledger.tables import TransferRow, UsageRow
from ciyuan.market import orders

DEFAULT_MAX_TOKENS = 4_000_000
MAX_MAX_TOKENS = 100_000_000  # accepted in a request; the batch is capped by settings (delivery_max_batch_*)
# a batch's ledger hold never lapses by itself (which would hand back money for records already
# sent): the batch's own deadline posts it. Ten years only keeps the timestamp finite.
LEDGER_HOLD_TIMEOUT_S = 10 * 365 * 86_400


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
    if aware(b.expires_at) > now:
        return None
    info = _post(sess, p, m, st, b, now, s, ev, how="expired")
    return "posted" if info is not None else "voided"


def _hold_lapsed(sess: Session, b: BatchRow, now: datetime) -> bool:
    """Whether the batch's ledger hold is gone: a hold made before the batch deadline rule, whose own
    timeout passed. One lapsing now is expired by the ledger here (which logs the expiry)."""
    if not b.hold_id:
        return False
    hold = sess.execute(select(TransferRow).where(TransferRow.id == b.hold_id)).scalar_one_or_none()
    if hold is not None and hold.state == "pending" and aware(hold.expires_at) > now:
        return False
    if hold is not None and hold.state == "pending":
        ledger.expire_due(sess, now=now, debit_account_id=hold.debit_account_id)
    return True


def _post(sess: Session, p: Plan, m: MeterRow, st: StreamRow, b: BatchRow, now: datetime, s: Settings,
          ev: list, *, how: str = "ack", rehold: bool = False) -> dict | None:
    """Charge a delivered batch at its marginal price and write its usage record.

    ``how``: ``ack`` (the buyer acknowledged it), ``expired`` (its deadline passed unacknowledged:
    charged all the same, since it was sent) or ``late`` (a batch voided before this rule, now
    acknowledged). ``rehold``: its hold is gone, so hold and post at once (also found here: a hold
    that lapsed). None: the hold lapsed and the buyer's funds no longer cover the batch (voided).
    """
    amount = marginal_price(p.price, m.tokens_posted, b.tokens) if p.metered else 0
    transfer_id = None
    if not rehold and _hold_lapsed(sess, b, now):
        # its hold lapsed (the money went back to the buyer): hold and post afresh if the funds cover
        # it, else void it as before (``delivery.unfunded``); a stream is never stuck on a dead hold
        if amount > ledger.available_to_hold(sess, p.buyer_id, p.currency, now=now):
            b.state, b.resolved_at = "voided", now
            m.tokens_held -= b.tokens
            st.open_batch, st.last_batch = None, b.id
            ev.append(("delivery.unfunded", f"unfunded:{b.id}",
                       {"batch": b.id, "tokens": b.tokens, "amount": amount, "reason": "legacy hold lapsed"}))
            return None
        rehold = True
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
    orders.record_draw(sess, p.entitlement_id, b.tokens)
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


def _decide(sess: Session, st: StreamRow, o: int, now: datetime
            ) -> tuple[BatchRow | None, BatchRow | None, Decision]:
    """The stream's open and last batch, read afresh, and the case cursor offset ``o`` falls in."""
    ob = sess.get(BatchRow, st.open_batch, populate_existing=True) if st.open_batch else None
    last = sess.get(BatchRow, st.last_batch, populate_existing=True) if st.last_batch else None
    return ob, last, decide(st.acked, _state(ob), _state(last), o, st.size, now)


def _state(b: BatchRow | None) -> BatchState | None:
    return None if b is None else BatchState(b.start, b.end, b.state, aware(b.expires_at))


def _step_inner(sess: Session, p: Plan, c: Cursor, max_tokens: int, expect: tuple[int, int] | None,
                sha: Callable[[], str],
                now: datetime, s: Settings, ack_only: bool, ev: list) -> Delivery:
    m = _meter(sess, p, c.parts, now)
    st = _stream(sess, p, c)
    lo, hi = partition_bounds(p.records, c.parts, c.part)
    o = c.offset
    ob, last, d = _decide(sess, st, o, now)
    if d.case is Case.OVERDUE:  # charged at its deadline by the request that finds it, then the cursor is read
        _expire_open(sess, p, m, st, now, s, ev)
        ob, last, d = _decide(sess, st, o, now)
    if d.case is Case.PAST_END:
        raise InvalidInput(f"cursor offset {o} is past the end ({st.size}) of this partition",
                           hint="pass back a next_cursor you were given", code="bad_cursor")
    here = str(c)
    cur = Cursor(c.parts, c.part, st.acked)
    posted = None
    if d.acknowledges_last:
        # a batch charged when its deadline passed is acknowledged now: /meter resumes after it
        last.state = "posted"
        ev.append(("delivery.acknowledged", f"acknowledged:{last.id}", {"batch": last.id, "end": last.end}))
    if d.case is Case.POST_OPEN:
        posted = _post(sess, p, m, st, ob, now, s, ev)
    elif d.case is Case.REDELIVER:
        if ack_only:
            return Delivery("acked", p.entitlement_id, here, here, o, o, 0)
        if expect != (ob.start, ob.end):
            raise _Mismatch(ob.start, ob.end)
        return Delivery("redelivery", p.entitlement_id, here, str(Cursor(c.parts, c.part, ob.end)), ob.start,
                        ob.end, ob.tokens, ob.id, ob.hold_amount, p.currency, ob.sha256, aware(ob.expires_at))
    elif d.case is Case.LATE_ACK:
        posted = _post(sess, p, m, st, last, now, s, ev, how="late", rehold=True)
    elif d.case in (Case.REPLAY, Case.NEXT):
        if ack_only:  # already acknowledged: nothing to do
            return Delivery("acked", p.entitlement_id, here, str(cur), o, o, 0)
        if d.case is Case.REPLAY:  # re-read what was already charged: free, changes nothing
            end, limit = _cut(p, lo, hi, o, max_tokens, 10**18, s, upto=st.acked)
            if expect != (o, end):
                raise _Mismatch(o, end)
            tokens = int(p.cum[lo + end] - p.cum[lo + o])
            return Delivery("replay", p.entitlement_id, here, str(Cursor(c.parts, c.part, end)), o, end, tokens,
                            sha256=sha(), limit=limit)
    else:  # Case.STALE
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
                                                              utc_now(now), s), s)
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
    d = tx.run(lambda sess: _step(sess, p, c, 1, None, lambda: "", utc_now(now), s, ack_only=True), s)
    with _streams_lock:  # the stream moved: the next request reads its state afresh
        _streams.pop((p.entitlement_id, c.part), None)
    return d


def sweep(*, s: Settings | None = None, now: datetime | None = None) -> dict:
    """Charge every open batch past its deadline (its hold is posted: it was sent); run by the server's
    background sweeper and ``ciyuan delivery sweep``. ``voided`` counts only holds made before this
    rule whose own ledger timeout lapsed and which the buyer's funds no longer cover.
    """
    s = s or settings()
    t = utc_now(now)
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


# -- reading a stream's state ------------------------------------------------------------------------


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
