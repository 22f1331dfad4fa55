"""Metered calls (SPARQL queries, retrieval): reserve the cap, answer, settle the exact tokens, once.

A call draws on an entitlement of the listing (an order, prepaid or metered: its tokens are the
call budget, its price schedule the price). Each call goes through three steps:

1. **reserve**, in one transaction under the entitlement's meter lock: the call's cap (its
   ``max_tokens``, cut to the tokens the entitlement has left and, when metered, to what the
   buyer's funds can hold) is counted as held on the meter and, for a metered order, reserved in
   the ledger as a hold of ``price(cap)``. A call with no tokens left is refused here and nothing
   moves (the transaction rolls back).
2. **answer**, outside any transaction: the query runs with ``cap`` as its token limit.
3. **settle**, in one transaction: the hold is posted for ``price(P + t) - price(P)`` (``t`` the
   tokens returned, ``P`` the entitlement's tokens already posted, as for streamed batches, so the
   total charged is the price of the total tokens however it was split), the rest of the hold
   goes back to the buyer, a usage row (``part = -1``) records the call for receipts, and the
   answer is stored. If the answer failed (a bad query, a timeout), the hold is voided instead and
   the meter is as before: the ledger's balances are as they were.

Idempotency: a call is named by its entitlement and idempotency key. A retry with the same key and
the same request returns the stored first answer (``usage.replayed = true``) and moves no money;
the same key with another request is a conflict; a retry of a call that failed runs it again (a
new attempt, a new hold). A call whose process died between reserve and settle keeps its cap until
its hold times out (:data:`CALL_HOLD_S`); the next call of the entitlement then releases it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ciyuan.canonical import canonical_json
from ciyuan.clock import aware, utc_now
from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.delivery.metering import marginal_price
from ciyuan.delivery.plan import Plan, plan
from ciyuan.delivery.tables import CallRow, MeterRow
from ciyuan.errors import CiyuanError, Conflict, InvalidInput, NotFound
from ciyuan.ledger import audit, ledger
from ciyuan.ledger.money import format_amount
from ciyuan.ledger.tables import TransferRow, UsageRow
from ciyuan.market import orders
from ciyuan.market.tables import EntitlementRow

CALL_HOLD_S = 600  # longer than any query may run (sparql.py caps timeout_s at 300)
DEFAULT_MAX_TOKENS = 4096
MAX_MAX_TOKENS = 1_000_000
KEY_MAX = 200


@dataclass
class Answer:
    """What a call's work returns: the payload sent to the client and the tokens it holds."""

    payload: dict
    tokens: int
    records: int


Work = Callable[[Plan, int], Answer]


def find_entitlement(sess: Session, buyer_id: str, listing_id: str) -> str:
    """The buyer's newest entitlement of the listing that still has tokens."""
    rows = sess.execute(
        select(EntitlementRow.id, EntitlementRow.tokens, EntitlementRow.tokens_drawn)
        .where(EntitlementRow.buyer_id == buyer_id, EntitlementRow.listing_id == listing_id)
        .order_by(EntitlementRow.created_at.desc(), EntitlementRow.id.desc())
    ).all()
    for r in rows:
        if r.tokens > r.tokens_drawn:
            return r.id
    raise NotFound(
        f"you hold no entitlement of listing {listing_id} with tokens left" if rows else
        f"you hold no entitlement of listing {listing_id}",
        hint=f"quote it (POST /v1/quotes with listing_id {listing_id} and selection.token_budget) and order the quote "
             "(POST /v1/metered-orders to pay per call): its tokens are your call budget",
        code="no_entitlement",
    )


def call_id_of(entitlement_id: str, key: str) -> str:
    return "call_" + hashlib.sha256(f"{entitlement_id}\0{key}".encode()).hexdigest()[:40]


def _meter(sess: Session, entitlement_id: str, now: datetime) -> MeterRow:
    """The entitlement's meter, locked (created if needed: the first call or stream of it)."""
    m = sess.get(MeterRow, entitlement_id, with_for_update=True, populate_existing=True)
    if m is None:
        dialect = sess.get_bind().dialect.name
        ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(MeterRow)
        sess.execute(ins.values(entitlement_id=entitlement_id, parts=1, tokens_held=0, tokens_posted=0,
                                amount_posted=0, records_posted=0, batches_posted=0, updated_at=now)
                     .on_conflict_do_nothing(index_elements=["entitlement_id"]))
        m = sess.get(MeterRow, entitlement_id, with_for_update=True, populate_existing=True)
    return m


def _affordable(p: Plan, cap: int, available: int) -> int:
    """The largest cap ``<= cap`` whose price fits ``available`` (prices are monotone)."""
    lo, hi = 0, cap
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if p.price(mid) <= available:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _release(sess: Session, p: Plan, m: MeterRow, row: CallRow, now: datetime, error: str, ev: list) -> None:
    """Void a call's hold (if it still stands) and give its cap back to the meter."""
    if row.hold_id:
        hold = sess.execute(select(TransferRow.state).where(TransferRow.id == row.hold_id)).scalar_one_or_none()
        if hold == "pending":
            ledger.release(sess, f"{row.hold_id}:void", row.hold_id, now=now)
    m.tokens_held -= row.cap_tokens
    m.updated_at = now
    row.state, row.error, row.resolved_at = "failed", error[:2000], now
    ev.append(("delivery.call.failed", f"call-failed:{row.id}:{row.attempt}",
               {"call": row.id, "attempt": row.attempt, "cap_tokens": row.cap_tokens, "error": error[:200]}))


def _release_stale(sess: Session, p: Plan, m: MeterRow, now: datetime, ev: list) -> None:
    """Calls whose process died between reserve and settle: past their deadline, their caps are freed."""
    if m.tokens_held <= 0:
        return
    ledger.available_to_hold(sess, p.buyer_id, p.currency, now=now)  # expires the buyer's due holds first
    stale = sess.execute(select(CallRow).where(CallRow.entitlement_id == p.entitlement_id,
                                               CallRow.state == "held", CallRow.expires_at <= now)).scalars().all()
    for row in stale:
        _release(sess, p, m, row, now, "the call was not settled before its hold timed out", ev)


def _reserve(sess: Session, p: Plan, cid: str, key: str, kind: str, req_sha: str, max_tokens: int,
             now: datetime, s: Settings) -> tuple[str, int, int, str | None]:
    """(``new`` or ``replay``, attempt, cap, stored response) under the meter's lock."""
    ev: list = []
    m = _meter(sess, p.entitlement_id, now)
    row = sess.get(CallRow, cid, populate_existing=True)
    if row is not None:
        if row.request_sha256 != req_sha:
            raise Conflict(f"idempotency key {key!r} was used for another request",
                           hint="use a new key for a new request; retry with the same key only the same request",
                           code="idempotency_conflict")
        if row.state == "settled":
            return "replay", row.attempt, row.cap_tokens, row.response
        if row.state == "held" and aware(row.expires_at) > now:
            raise Conflict(f"call {cid} with this idempotency key is still running",
                           hint="retry with the same key in a moment: you will get its answer", code="call_running")
    _release_stale(sess, p, m, now, ev)  # (a stale row of this very key is released here too)
    remaining = p.tokens - m.tokens_posted - m.tokens_held
    if remaining <= 0:
        raise Conflict(f"entitlement {p.entitlement_id} has no tokens left for a call ({p.tokens:,} bought, "
                       f"{m.tokens_posted:,} used, {m.tokens_held:,} reserved by running calls)",
                       hint="buy more tokens: quote the listing again and order it", code="entitlement_exhausted")
    cap = min(max_tokens, remaining)
    hold_amount = p.price(cap) if p.metered else 0
    if hold_amount > 0:
        available = ledger.available_to_hold(sess, p.buyer_id, p.currency, now=now)
        if hold_amount > available:
            cap = _affordable(p, cap, max(available, 0))
            if cap <= 0:
                need = p.price(1)
                raise ledger.InsufficientFunds(
                    f"your available {format_amount(max(available, 0), p.currency)} {p.currency} do not cover "
                    f"even one token of this call ({format_amount(need, p.currency)} {p.currency})",
                    hint=f"deposit funds (ciyuan ledger deposit), then retry with the same idempotency key {key!r}",
                )
            hold_amount = p.price(cap)
    attempt = 0 if row is None else row.attempt + 1
    hold_id = f"dc:{cid}:{attempt}" if hold_amount > 0 else None
    if hold_id:
        ledger.hold(sess, hold_id, p.buyer_id, hold_amount, p.currency, timeout_s=CALL_HOLD_S,
                    ref=f"ent:{p.entitlement_id}", now=now)
    if row is None:
        row = CallRow(id=cid, entitlement_id=p.entitlement_id, idempotency_key=key, kind=kind, request_sha256=req_sha)
        sess.add(row)
    row.state, row.attempt, row.cap_tokens, row.hold_id, row.hold_amount = "held", attempt, cap, hold_id, hold_amount
    row.tokens = row.amount = row.response = row.error = row.sha256 = row.resolved_at = None
    row.created_at, row.expires_at = now, now + timedelta(seconds=CALL_HOLD_S)
    m.tokens_held += cap
    m.updated_at = now
    sess.flush()
    audit.append_many(sess, ev, at=now)
    return "new", attempt, cap, None


def _settle(sess: Session, p: Plan, cid: str, attempt: int, ans: Answer, usage: dict, now: datetime,
            s: Settings) -> dict:
    m = _meter(sess, p.entitlement_id, now)
    row = sess.get(CallRow, cid, populate_existing=True)
    if row is None or row.state != "held" or row.attempt != attempt:
        raise Conflict(f"call {cid} was released before it could be settled (it ran past its hold)",
                       hint="retry with the same idempotency key", code="call_released")
    if not 0 <= ans.tokens <= row.cap_tokens:
        raise CiyuanError(f"call {cid} returned {ans.tokens} tokens, outside its cap {row.cap_tokens}",
                          hint="report this to the operator: the answer was not cut to its cap", status=500)
    amount = marginal_price(p.price, m.tokens_posted, ans.tokens) if p.metered else 0
    transfer_id = None
    if row.hold_id and amount > 0:
        ledger.capture(sess, f"{row.hold_id}:post", row.hold_id, p.provider_id, amount, fee_bps=s.platform_fee_bps,
                       now=now)
        transfer_id = f"{row.hold_id}:post"
    elif row.hold_id:
        ledger.release(sess, f"{row.hold_id}:void", row.hold_id, now=now)
    m.tokens_held -= row.cap_tokens
    m.tokens_posted += ans.tokens
    m.amount_posted += amount
    m.records_posted += ans.records
    m.batches_posted += 1
    m.updated_at = now
    orders.record_draw(sess, p.entitlement_id, ans.tokens)
    usage = {**usage, "tokens": ans.tokens, "cap_tokens": row.cap_tokens, "amount": amount,
             "amount_text": format_amount(amount, p.currency), "transfer_id": transfer_id}
    response = {**ans.payload, "usage": usage}
    body = canonical_json(response)
    sha = hashlib.sha256(body.encode()).hexdigest()
    row.state, row.tokens, row.amount, row.response, row.sha256, row.resolved_at = (
        "settled", ans.tokens, amount, body, sha, now)
    sess.add(UsageRow(batch_id=cid, entitlement_id=p.entitlement_id, buyer_id=p.buyer_id, provider_id=p.provider_id,
                      listing_id=p.listing_id, part=-1, start=0, end=ans.records, records=ans.records,
                      tokens=ans.tokens, amount=amount, currency=p.currency, tokenizer=p.tokenizer,
                      tokenizer_version=p.tokenizer_version, sha256=sha, transfer_id=transfer_id, posted_at=now))
    audit.append_many(sess, [("delivery.call", f"call:{cid}",
                              {"call": cid, "kind": row.kind, "tokens": ans.tokens, "cap_tokens": row.cap_tokens,
                               "amount": amount, "sha256": sha, "attempt": attempt})], at=now)
    return response


def _fail(sess: Session, p: Plan, cid: str, attempt: int, error: str, now: datetime) -> None:
    m = _meter(sess, p.entitlement_id, now)
    row = sess.get(CallRow, cid, populate_existing=True)
    if row is None or row.state != "held" or row.attempt != attempt:
        return  # already released (it ran past its hold)
    ev: list = []
    _release(sess, p, m, row, now, error, ev)
    audit.append_many(sess, ev, at=now)


def check_key(key: str | None) -> str:
    if key is None or key == "":
        return uuid.uuid4().hex
    if not isinstance(key, str) or len(key) > KEY_MAX:
        raise InvalidInput(f"idempotency key must be a string of at most {KEY_MAX} characters",
                           hint="use a UUID per request", code="bad_idempotency_key")
    return key


def check_max_tokens(max_tokens: int | None) -> int:
    if max_tokens is None:
        return DEFAULT_MAX_TOKENS
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or not 1 <= max_tokens <= MAX_MAX_TOKENS:
        raise InvalidInput(f"max_tokens {max_tokens!r} must be from 1 to {MAX_MAX_TOKENS:,}",
                           hint="a few thousand tokens is a typical answer", code="bad_max_tokens")
    return max_tokens


def resolve_plan(buyer_id: str, listing_id: str, entitlement_id: str | None, s: Settings) -> Plan:
    """The plan of the entitlement a call draws on: the one named, or the buyer's newest with tokens."""
    ent = entitlement_id or tx.read(lambda sess: find_entitlement(sess, buyer_id, listing_id), s)
    p = plan(ent, buyer_id, s)
    if p.listing_id != listing_id:
        raise InvalidInput(f"entitlement {ent} is of listing {p.listing_id}, not {listing_id}",
                           hint="name an entitlement of this listing, or none to use your newest",
                           code="wrong_listing")
    return p


def call(buyer_id: str, listing_id: str, kind: str, request: dict, work: Work, *,
         idempotency_key: str | None = None, entitlement_id: str | None = None, max_tokens: int | None = None,
         s: Settings | None = None, now: datetime | None = None) -> dict:
    """One metered call (see module doc): the answer's payload with its ``usage``."""
    s = s or settings()
    key = check_key(idempotency_key)
    cap_wanted = check_max_tokens(max_tokens)
    p = resolve_plan(buyer_id, listing_id, entitlement_id, s)
    cid = call_id_of(p.entitlement_id, key)
    req_sha = hashlib.sha256(canonical_json({"kind": kind, "listing": listing_id, "request": request,
                                             "max_tokens": cap_wanted}).encode()).hexdigest()
    how, attempt, cap, stored = tx.run(
        lambda sess: _reserve(sess, p, cid, key, kind, req_sha, cap_wanted, utc_now(now), s), s)
    if how == "replay":
        out = json.loads(stored)
        out["usage"]["replayed"] = True
        return out
    try:
        ans = work(p, cap)
    except BaseException as exc:
        msg = exc.message if isinstance(exc, CiyuanError) else f"{type(exc).__name__}: {exc}"
        tx.run(lambda sess: _fail(sess, p, cid, attempt, msg, utc_now(now)), s)
        raise
    usage = {"call_id": cid, "idempotency_key": key, "kind": kind, "entitlement_id": p.entitlement_id,
             "listing_id": p.listing_id, "schedule": p.tokenizer, "schedule_version": p.tokenizer_version,
             "currency": p.currency, "billing": "metered" if p.metered else "prepaid", "replayed": False}
    try:
        return tx.run(lambda sess: _settle(sess, p, cid, attempt, ans, usage, utc_now(now), s), s)
    except CiyuanError as exc:
        if exc.code != "call_released":
            err = exc.message
            tx.run(lambda sess: _fail(sess, p, cid, attempt, err, utc_now(now)), s)
        raise


def budget(sess: Session, p: Plan) -> dict:
    """An entitlement's call budget: tokens bought, used, reserved by running calls, left."""
    m = sess.get(MeterRow, p.entitlement_id)
    used, held = (m.tokens_posted, m.tokens_held) if m else (0, 0)
    return {"entitlement_id": p.entitlement_id, "tokens": p.tokens, "used": used, "reserved": held,
            "left": p.tokens - used - held, "amount_posted": m.amount_posted if m else 0, "currency": p.currency}


# -- the two kinds of call --------------------------------------------------------------------------


def sparql_call(buyer_id: str, listing_id: str, query: str, *, max_rows: int | None = None,
                timeout_s: float | None = None, **kw) -> dict:
    """A metered SPARQL query (``ciyuan.knowledge.sparql``): SPARQL JSON or N-Triples, cut to its cap."""
    from ciyuan.knowledge import sparql

    rows = sparql.DEFAULT_MAX_ROWS if max_rows is None else max_rows
    secs = sparql.DEFAULT_TIMEOUT_S if timeout_s is None else timeout_s
    sparql.query_form(query)  # refused before anything is reserved

    def work(p: Plan, cap: int) -> Answer:
        r = sparql.query(p.version, query, max_rows=rows, max_tokens=cap, timeout_s=secs,
                         count=sparql.text_counter(p.tokenizer), s=p.version.s)
        return Answer({"listing_id": p.listing_id, "version_id": p.version.id, **r.to_dict()}, r.tokens, r.rows)

    return call(buyer_id, listing_id, "sparql", {"query": query, "max_rows": rows, "timeout_s": secs}, work, **kw)


def retrieve_call(buyer_id: str, listing_id: str, query: str, *, top_k: int = 5, mode: str = "hybrid",
                  **kw) -> dict:
    """A metered retrieval (``ciyuan.knowledge.retrieval.search``): the best chunks that fit the cap.

    Chunks come in rank order, each with its source record, offsets, score and token count under
    the listing's schedule; the first chunk that would pass the cap ends the answer (whole chunks
    only), so the tokens billed are exactly those of the chunks returned.
    """
    from ciyuan.knowledge import retrieval, sparql

    def work(p: Plan, cap: int) -> Answer:
        hits = retrieval.search(p.version.s, p.version, query, top_k=top_k, mode=mode)
        counts = sparql.text_counter(p.tokenizer)([h["text"] for h in hits])
        chunks, total, limit = [], 0, "end"
        for h, n in zip(hits, counts, strict=True):
            if total + n > cap:
                limit = "tokens"
                if not chunks:
                    raise InvalidInput(f"the best chunk is {n} tokens, more than the {cap} allowed",
                                       hint="raise max_tokens (or buy more tokens if the entitlement is nearly "
                                            "used up)", code="token_limit")
                break
            total += n
            chunks.append({**{k: h[k] for k in ("chunk_id", "record_id", "start", "end", "text", "score")},
                           "tokens": n})
        return Answer({"listing_id": p.listing_id, "version_id": p.version.id, "mode": mode, "chunks": chunks,
                       "truncated": limit != "end", "limit": limit}, total, len(chunks))

    return call(buyer_id, listing_id, "retrieve", {"query": query, "top_k": top_k, "mode": mode}, work, **kw)
