"""Orders and entitlements: paying a quote once, and the buyer's right to draw what it covered.

An **order** pays a quote once (``Idempotency-Key``) and creates an **entitlement**: the buyer's
right to draw exactly the quoted records and tokens. Delivery reads entitlements through
:func:`get_entitlement`, :func:`entitlement_selection`, :func:`entitlement_schedule` (the price
version the quote was made with, not the listing's current one) and :func:`record_draw`.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, bindparam, insert, or_, select, text, tuple_
from sqlalchemy.orm import Session

from ciyuan.clock import aware, utc_now
from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.db.ids import get_row, is_id
from ciyuan.errors import CiyuanError, Conflict, InvalidInput, NotFound
from ciyuan.ledger import audit, ledger
from ciyuan.ledger.money import format_amount
from ciyuan.market import selection
from ciyuan.market.accounts import Unauthenticated
from ciyuan.market.listings import ACTIVE, price_schedule_of
from ciyuan.market.pricing import PriceSchedule
from ciyuan.market.quotes import QuoteExpired, evaluate_listing
from ciyuan.market.tables import ApiKeyRow, EntitlementRow, ListingRow, OrderRow, QuoteRow

PREPAID, METERED = "prepaid", "metered"


@dataclass(frozen=True)
class Entitlement:
    id: str
    order_id: str
    buyer_id: str
    listing_id: str
    version_id: str
    schedule: str
    selection: dict
    selection_id: str
    records: int
    tokens: int
    tokens_drawn: int
    status: str
    created_at: datetime
    price_version: int = 1

    @classmethod
    def of(cls, r: Any) -> Entitlement:  # an EntitlementRow, or a Core row / namespace with its columns
        return cls(
            r.id,
            r.order_id,
            r.buyer_id,
            r.listing_id,
            r.version_id,
            r.schedule,
            json.loads(r.selection),
            r.selection_id,
            r.records,
            r.tokens,
            r.tokens_drawn,
            r.status,
            aware(r.created_at),
            r.price_version or 1,
        )

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["tokens_remaining"] = self.tokens - self.tokens_drawn
        return d


def _order_dict(o: Any, e: Any) -> dict:
    """The API's order: ``o`` and ``e`` are rows (ORM or Core) of an order and its entitlement."""
    return {
        "id": o.id,
        "quote_id": o.quote_id,
        "listing_id": o.listing_id,
        "amount": o.amount,
        "amount_text": format_amount(o.amount, o.currency),
        "fee": o.fee,
        "currency": o.currency,
        "status": o.status,
        "created_at": aware(o.created_at),
        "entitlement": Entitlement.of(e).to_dict() if e else None,
    }


_O, _E, _Q, _L = OrderRow.__table__, EntitlementRow.__table__, QuoteRow.__table__, ListingRow.__table__
_K = ApiKeyRow.__table__
# the quotes with the listing fields an order needs (Core rows, no ORM objects); no listing: its fields are NULL
_QUOTES = (select(_Q.c.id, _Q.c.listing_id, _Q.c.buyer_id, _Q.c.selection, _Q.c.selection_id, _Q.c.records,
                  _Q.c.tokens, _Q.c.amount, _Q.c.currency, _Q.c.expires_at, _Q.c.price_version,
                  _L.c.id.label("l_id"), _L.c.provider_id, _L.c.status, _L.c.version_id, _L.c.schedule)
           .select_from(_Q.outerjoin(_L, _L.c.id == _Q.c.listing_id))
           .where(_Q.c.id.in_(bindparam("qs", expanding=True))))
_KEYS = select(_K.c.id, _K.c.revoked_at, _K.c.expires_at).where(_K.c.id.in_(bindparam("ks", expanding=True)))
_OCOLS = ", ".join(c.name for c in _O.c)
_ECOLS = ", ".join(c.name for c in _E.c)
_INSERT_PG = text(  # the orders and their entitlements in one round trip
    f"WITH o AS (INSERT INTO ex_orders ({_OCOLS}) SELECT {_OCOLS} "
    "FROM json_populate_recordset(NULL::ex_orders, CAST(:o AS json))) "
    f"INSERT INTO ex_entitlements ({_ECOLS}) SELECT {_ECOLS} "
    "FROM json_populate_recordset(NULL::ex_entitlements, CAST(:e AS json))")


def _insert_orders(conn: Connection, made: list[tuple[dict, dict]]) -> None:
    """Insert orders and their entitlements (one statement on PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_INSERT_PG, {"o": json.dumps([o for o, _ in made], default=_iso),
                                  "e": json.dumps([e for _, e in made], default=_iso)})
    else:
        conn.execute(insert(_O), [o for o, _ in made])
        conn.execute(insert(_E), [e for _, e in made])


def _iso(v: object) -> str:
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(type(v).__name__)


def _request_hash(quote_id: str, billing: str = PREPAID) -> str:
    body = {"quote_id": quote_id} if billing == PREPAID else {"quote_id": quote_id, "billing": METERED}
    return hashlib.sha256(json.dumps(body).encode()).hexdigest()


@dataclass(frozen=True)
class OrderRequest:
    """One order of :func:`place_orders`: who pays which quote, under which idempotency key.

    ``key_id``: the caller's API key, verified a moment ago and cached (see
    :mod:`ciyuan.api.fast_orders`); the order's transaction re-reads it.
    """

    buyer_id: str
    quote_id: str
    idempotency_key: str
    billing: str = PREPAID
    key_id: str | None = None

    def check(self) -> OrderRequest:
        """The request's own rules, before any database work (the same errors as ever)."""
        if not isinstance(self.idempotency_key, str) or not 1 <= len(self.idempotency_key) <= 200:
            raise InvalidInput(
                "Idempotency-Key must be 1 to 200 characters",
                hint="send a unique Idempotency-Key header per order, e.g. a UUID",
                code="bad_idempotency_key",
            )
        if self.billing not in (PREPAID, METERED):
            raise InvalidInput(f"billing {self.billing!r} is unknown", hint=f"use {PREPAID} or {METERED}")
        return self


def _check_key(key: Any, t: datetime) -> None:
    """A cached key as the order's transaction sees it: revoked, expired or gone is a 401."""
    if key is None:
        raise Unauthenticated("the API key is not valid", hint="check the key; keys are shown only once")
    if key.revoked_at is not None:
        raise Unauthenticated("the API key was revoked", hint="create a new key")
    if key.expires_at is not None and aware(key.expires_at) <= t:
        raise Unauthenticated("the API key has expired", hint="create a new key")


def _payable(r: OrderRequest, quote: Any, seen: list, t: datetime) -> Any:
    """The order a replay answers with, or None when the quote can be paid now; else the refusal.

    ``seen``: orders of this buyer under this key, and orders of this quote, read under the buyer's lock.
    """
    prior = next((o for o in seen if o.buyer_id == r.buyer_id and o.idempotency_key == r.idempotency_key), None)
    if prior is not None:
        if prior.request_hash != _request_hash(r.quote_id, r.billing):
            raise Conflict(
                f"Idempotency-Key {r.idempotency_key!r} was used for another request",
                hint="use a new Idempotency-Key for a new order",
                code="idempotency_conflict",
            )
        return prior
    taken = next((o for o in seen if o.quote_id == r.quote_id), None)
    if taken is not None:
        raise Conflict(
            f"quote {r.quote_id} was already paid by order {taken.id}",
            hint="get a new quote to buy again",
            code="quote_used",
        )
    if aware(quote.expires_at) <= t:
        raise QuoteExpired(f"quote {r.quote_id} expired at {aware(quote.expires_at).isoformat()}",
                           hint="ask for a new quote")
    if quote.l_id is None or quote.status != ACTIVE:
        raise NotFound(
            f"listing {quote.listing_id} was delisted and takes no new orders; quote {r.quote_id} cannot be paid",
            hint="search the catalog: GET /v1/listings",
            code="listing_delisted",
        )
    return None


def _rows(r: OrderRequest, quote: Any, t: datetime) -> tuple[dict, dict]:
    """A new order row and its entitlement row (amount and fee filled in once charged)."""
    order_id = "ord_" + secrets.token_hex(10)
    order = dict(id=order_id, buyer_id=r.buyer_id, idempotency_key=r.idempotency_key,
                 request_hash=_request_hash(r.quote_id, r.billing), quote_id=r.quote_id, listing_id=quote.l_id,
                 amount=0, fee=0, currency=quote.currency, status="paid" if r.billing == PREPAID else METERED,
                 created_at=t)
    ent = dict(id="ent_" + secrets.token_hex(10), order_id=order_id, buyer_id=r.buyer_id, listing_id=quote.l_id,
               version_id=quote.version_id, schedule=quote.schedule, selection=quote.selection,
               selection_id=quote.selection_id, records=quote.records, tokens=quote.tokens, tokens_drawn=0,
               status="active", created_at=t, price_version=quote.price_version)
    return order, ent


def place_orders(sess: Session, reqs: list[OrderRequest], *, fee_bps: int,
                 now: datetime | None = None) -> list[tuple[dict, bool] | CiyuanError]:
    """Many orders in one unit of work, each answered on its own: ``(order, replayed)`` or its refusal.

    Each gets what it would get alone, in the order given: one statement reads every quote (with
    its listing), one the cached keys, one the replays and paid quotes, one locks every buyer with
    the shards its charge passes through (a replay committed meanwhile: see :func:`_round`), then each order is checked
    in memory and the ledger takes every charge in one operation (:func:`ledger.charges`), and
    one statement writes the orders. A refused order writes nothing. Requests that name a key
    or a quote an earlier request of the batch names wait for a later round in the same unit of
    work, so they see that one's outcome (a replay, ``quote_used``) exactly as one after another.
    """
    t = utc_now(now)
    conn = sess.connection()
    out: list[Any] = [None] * len(reqs)
    qids = sorted({r.quote_id for r in reqs if is_id(r.quote_id)})
    quotes = {q.id: q for q in conn.execute(_QUOTES, {"qs": qids})} if qids else {}
    kids = sorted({r.key_id for r in reqs if r.key_id is not None})
    keys = {k.id: k for k in conn.execute(_KEYS, {"ks": kids})} if kids else {}
    todo: list[int] = []
    for i, r in enumerate(reqs):
        try:
            if r.key_id is not None:
                _check_key(keys.get(r.key_id), t)
            q = quotes.get(r.quote_id)
            if q is None or q.buyer_id != r.buyer_id:
                raise NotFound(f"quote {r.quote_id} does not exist", hint="create one: POST /v1/quotes")
            todo.append(i)
        except CiyuanError as exc:
            out[i] = exc
    # the buyers and the shards their charges pass through, in one sorted lock (a metered order: the buyer),
    # taken after the first round's read of replays and paid quotes: the shards are shared by every
    # batch of every worker, so they are held only for what must be under them (see _round)
    specs = [(reqs[i].buyer_id, quotes[reqs[i].quote_id].provider_id
              if reqs[i].billing == PREPAID and quotes[reqs[i].quote_id].l_id else None,
              quotes[reqs[i].quote_id].currency) for i in todo]
    def lock_all() -> object:
        return ledger.lock_for_charges(sess, specs)

    lock: Callable[[], object] | None = lock_all
    while todo:
        names: set = set()
        this_round, later = [], []
        for i in todo:  # a request naming a key or quote an earlier one of this round names waits a round
            mine = {("k", reqs[i].buyer_id, reqs[i].idempotency_key), ("q", reqs[i].quote_id)}
            (later if names & mine else this_round).append(i)
            names |= mine
        _round(sess, [(i, reqs[i], quotes[reqs[i].quote_id]) for i in this_round], out, fee_bps, t, lock)
        todo, lock = later, None
    return out


def _round(sess: Session, batch: list[tuple[int, OrderRequest, Any]], out: list, fee_bps: int, t: datetime,
           lock: Callable[[], object] | None) -> None:
    """One round of :func:`place_orders`: requests that share no key and no quote.

    Replays and paid quotes are read first, then ``lock`` (the first round's) takes the accounts.
    An order committed in between by another unit of work (a racing replay, the same quote under
    another key) makes this one's insert fail on the unique indexes of ``ex_orders``; ``tx.run``
    then runs the whole batch again, and this read finds it.
    """
    conn = sess.connection()
    seen = conn.execute(select(*_O.c).where(or_(
        tuple_(_O.c.buyer_id, _O.c.idempotency_key).in_([(r.buyer_id, r.idempotency_key) for _, r, _ in batch]),
        _O.c.quote_id.in_([r.quote_id for _, r, _ in batch])))).all()
    if lock is not None:
        lock()
    by_key = {(o.buyer_id, o.idempotency_key): o for o in seen}
    by_quote = {o.quote_id: o for o in seen}
    made: list[tuple[int, OrderRequest, Any, dict, dict]] = []
    replays: dict[int, Any] = {}
    for i, r, q in batch:
        mine = [by_key.get((r.buyer_id, r.idempotency_key)), by_quote.get(r.quote_id)]
        try:
            prior = _payable(r, q, [o for o in mine if o is not None], t)
        except CiyuanError as exc:
            out[i] = exc
            continue
        if prior is not None:
            replays[i] = prior
        else:
            made.append((i, r, q, *_rows(r, q, t)))
    if replays:
        ents = {e.order_id: e for e in conn.execute(
            select(*_E.c).where(_E.c.order_id.in_([o.id for o in replays.values()])))}
        for i, o in replays.items():
            out[i] = (_order_dict(o, ents[o.id]), True)
    paid = [m for m in made if m[1].billing == PREPAID]
    charges = [ledger.ChargeRequest(f"order:{o['id']}", r.buyer_id, q.provider_id, q.amount, q.currency,
                                    ref=f"order:{o['id']}") for _, r, q, o, _ in paid]
    answers = ledger.charges(sess, charges, fee_bps=fee_bps, now=t) if charges else []
    refused = set()
    for (i, _, q, o, _), a in zip(paid, answers, strict=True):
        if isinstance(a, CiyuanError):
            out[i] = a
            refused.add(i)
        else:
            o["amount"], o["fee"] = q.amount, sum(tr.amount for tr in a if tr.leg == "fee")
    made = [m for m in made if m[0] not in refused]
    for _i, r, q, o, _e in made:
        if r.billing == METERED:  # the accounts each posted batch will move money between exist before streaming
            for kind, owner in ((ledger.HOLDS, None), (ledger.PROVIDER, q.provider_id), (ledger.PLATFORM, None)):
                ledger.ensure_account(sess, kind, owner, q.currency)
            audit.append(sess, "order.metered", f"order:{o['id']}",
                         {"order": o["id"], "quote": r.quote_id, "tokens": q.tokens, "cap": q.amount})
    if made:
        _insert_orders(conn, [(o, e) for *_, o, e in made])
    for i, r, q, o, e in made:
        d = _order_dict(SimpleNamespace(**o), SimpleNamespace(**e))
        if r.billing == METERED:
            d["billing"], d["quoted_amount"] = METERED, q.amount
        out[i] = (d, False)


def place_order(
    buyer_id: str,
    quote_id: str,
    idempotency_key: str,
    *,
    billing: str = PREPAID,
    s: Settings | None = None,
    now: datetime | None = None,
    key_id: str | None = None,
) -> tuple[dict, bool]:
    """Order a quote once: (order with its entitlement, whether this was a replay of an earlier call).

    ``prepaid`` charges the quote now; ``metered`` charges nothing now and lets delivery charge each
    posted batch (the entitlement caps the tokens). The buyer's balance row is locked first, so every
    order of one buyer is serialised; a replay with the same key returns the stored order, the same
    key for another quote (or the other billing) is a conflict.

    With ``key_id`` (a caller whose key was verified a moment ago and cached, see
    :mod:`ciyuan.api.fast_orders`) the order's unit of work re-reads that key before it locks or
    writes anything: revoked, expired or gone is :class:`~ciyuan.errors.Unauthenticated` and
    nothing is written, so a revocation committed before the order's transaction is honoured
    exactly as by a fresh key check.
    This is :func:`place_orders` for one order in its own unit of work;
    :func:`ciyuan.market.order_group.submit_order` shares the unit of work with concurrent callers.
    """
    s = s or settings()
    req = OrderRequest(buyer_id, quote_id, idempotency_key, billing, key_id).check()
    return tx.run(lambda sess: answer_of(place_orders(sess, [req], fee_bps=s.platform_fee_bps, now=now)[0]), s)


def answer_of(a: tuple[dict, bool] | CiyuanError) -> tuple[dict, bool]:
    """An order's answer, its refusal raised (inside its unit of work, so nothing it did is kept)."""
    if isinstance(a, CiyuanError):
        raise a
    return a


def get_order(sess: Session, order_id: str, buyer_id: str) -> dict:
    """An order of this buyer; anyone else's (or a missing one) is the same 404."""
    row = get_row(sess, OrderRow, order_id)
    if row is None or row.buyer_id != buyer_id:
        raise NotFound(f"order {order_id} does not exist", hint="list your orders: GET /v1/orders")
    ent = sess.execute(select(EntitlementRow).where(EntitlementRow.order_id == row.id)).scalar_one_or_none()
    return _order_dict(row, ent)


def list_orders(sess: Session, buyer_id: str, limit: int = 50, offset: int = 0) -> list[dict]:
    rows = sess.execute(
        select(OrderRow)
        .where(OrderRow.buyer_id == buyer_id)
        .order_by(OrderRow.created_at.desc(), OrderRow.id)
        .limit(limit)
        .offset(offset)
    )
    out = []
    for r in rows.scalars():
        ent = sess.execute(select(EntitlementRow).where(EntitlementRow.order_id == r.id)).scalar_one_or_none()
        out.append(_order_dict(r, ent))
    return out


def get_entitlement(sess: Session, entitlement_id: str, buyer_id: str) -> Entitlement:
    """The buyer's entitlement (404 for anyone else's)."""
    row = get_row(sess, EntitlementRow, entitlement_id)
    if row is None or row.buyer_id != buyer_id:
        raise NotFound(f"entitlement {entitlement_id} does not exist", hint="see your orders: GET /v1/orders")
    return Entitlement.of(row)


def entitlement_selection(sess: Session, ent: Entitlement) -> selection.SelectionResult:
    """The exact records an entitlement covers (re-evaluated, checked against the quoted selection id)."""
    listing = sess.get(ListingRow, ent.listing_id)
    result = evaluate_listing(listing, selection.Selection.parse(ent.selection))
    if result.selection_id != ent.selection_id or result.tokens != ent.tokens:
        raise Conflict(
            f"entitlement {ent.id} no longer matches its listing's index",
            hint="contact the operator; the listing index changed",
            code="selection_mismatch",
        )
    return result


def entitlement_schedule(sess: Session, ent: Entitlement) -> PriceSchedule:
    """The price an entitlement was bought at: its quote's price version, not the listing's current one."""
    return price_schedule_of(sess, ent.listing_id, ent.price_version)


def record_draw(sess: Session, entitlement_id: str, tokens: int) -> Entitlement:
    """Count ``tokens`` as delivered; refuses to draw more than the entitlement covers."""
    row = sess.get(EntitlementRow, entitlement_id, with_for_update=True, populate_existing=True)
    if row is None:
        raise NotFound(f"entitlement {entitlement_id} does not exist", hint="check the id")
    if tokens < 0 or row.tokens_drawn + tokens > row.tokens:
        raise Conflict(
            f"drawing {tokens} tokens would exceed entitlement {entitlement_id} ({row.tokens - row.tokens_drawn} left)",
            hint="buy a new selection",
            code="entitlement_exhausted",
        )
    row.tokens_drawn += tokens
    if row.tokens_drawn == row.tokens:
        row.status = "exhausted"
    sess.flush()
    return Entitlement.of(row)
