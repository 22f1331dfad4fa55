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
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, and_, bindparam, insert, or_, select, text
from sqlalchemy.orm import Session

from ciyuan.clock import aware, utc_now
from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.db.ids import get_row, is_id
from ciyuan.errors import Conflict, InvalidInput, NotFound
from ciyuan.ledger import ledger
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
_QUOTE = (select(_Q.c.id, _Q.c.listing_id, _Q.c.buyer_id, _Q.c.selection, _Q.c.selection_id, _Q.c.records,
                 _Q.c.tokens, _Q.c.amount, _Q.c.currency, _Q.c.expires_at, _Q.c.price_version,
                 _L.c.id.label("l_id"), _L.c.provider_id, _L.c.status, _L.c.version_id, _L.c.schedule)
          .select_from(_Q.outerjoin(_L, _L.c.id == _Q.c.listing_id)).where(_Q.c.id == bindparam("q")))
_K = ApiKeyRow.__table__
# the same, read through the caller's API key row: the key's revocation and expiry as the order's
# transaction sees them, in the same round trip (no row: the key is gone; no quote: its fields are NULL)
_KEYED_QUOTE = (select(_K.c.revoked_at.label("k_revoked"), _K.c.expires_at.label("k_expires"),
                       *_QUOTE.selected_columns)
                .select_from(_K.outerjoin(_Q.outerjoin(_L, _L.c.id == _Q.c.listing_id), _Q.c.id == bindparam("q")))
                .where(_K.c.id == bindparam("k")))
_OCOLS = ", ".join(c.name for c in _O.c)
_ECOLS = ", ".join(c.name for c in _E.c)
_INSERT_PG = text(  # the order and its entitlement in one round trip
    f"WITH o AS (INSERT INTO ex_orders ({_OCOLS}) VALUES ({', '.join(':o_' + c.name for c in _O.c)})) "
    f"INSERT INTO ex_entitlements ({_ECOLS}) VALUES ({', '.join(':e_' + c.name for c in _E.c)})")


def _insert_order(conn: Connection, order: dict, ent: dict) -> None:
    """Insert an order row and its entitlement (one statement on PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        conn.execute(_INSERT_PG, {**{f"o_{k}": v for k, v in order.items()}, **{f"e_{k}": v for k, v in ent.items()}})
    else:
        conn.execute(insert(_O), order)
        conn.execute(insert(_E), ent)


def _request_hash(quote_id: str) -> str:
    return hashlib.sha256(json.dumps({"quote_id": quote_id}).encode()).hexdigest()


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
    :mod:`ciyuan.api.fast_orders`) the order's own first statement re-reads that key: revoked,
    expired or gone is :class:`~ciyuan.errors.Unauthenticated` and nothing is written, so a revocation
    committed before the order's transaction is honoured exactly as by a fresh key check.
    """
    s = s or settings()
    if not isinstance(idempotency_key, str) or not 1 <= len(idempotency_key) <= 200:
        raise InvalidInput(
            "Idempotency-Key must be 1 to 200 characters",
            hint="send a unique Idempotency-Key header per order, e.g. a UUID",
            code="bad_idempotency_key",
        )
    if billing not in (PREPAID, METERED):
        raise InvalidInput(f"billing {billing!r} is unknown", hint=f"use {PREPAID} or {METERED}")
    req = _request_hash(quote_id) if billing == PREPAID else hashlib.sha256(
        json.dumps({"quote_id": quote_id, "billing": METERED}).encode()).hexdigest()

    def work(sess: Session) -> tuple[dict, bool]:
        t = utc_now(now)
        conn = sess.connection()
        # one statement: the quote with the listing fields an order needs (Core rows, no ORM objects)
        if key_id is not None:
            quote = conn.execute(_KEYED_QUOTE, {"k": key_id, "q": quote_id if is_id(quote_id) else None}).first()
            if quote is None:
                raise Unauthenticated("the API key is not valid", hint="check the key; keys are shown only once")
            if quote.k_revoked is not None:
                raise Unauthenticated("the API key was revoked", hint="create a new key")
            if quote.k_expires is not None and aware(quote.k_expires) <= t:
                raise Unauthenticated("the API key has expired", hint="create a new key")
            quote = quote if quote.id is not None else None
        else:
            quote = conn.execute(_QUOTE, {"q": quote_id}).first() if is_id(quote_id) else None
        if quote is None or quote.buyer_id != buyer_id:
            raise NotFound(f"quote {quote_id} does not exist", hint="create one: POST /v1/quotes")
        if quote.l_id is not None and billing == PREPAID:  # the buyer and the shards its charge passes through
            ledger.lock_for_charge(sess, buyer_id, quote.provider_id, quote.currency)
        else:
            ledger._lock(sess, [ledger.ensure_account(sess, ledger.BUYER, buyer_id, quote.currency)])
        # under the buyer's lock, one read answers both: a replay of this key, and a quote already paid
        # (the unique indexes on (buyer_id, idempotency_key) and quote_id back it: a racing twin fails
        # to insert, this unit of work is re-run and finds it here)
        seen = conn.execute(select(*_O.c).where(
            or_(and_(_O.c.buyer_id == buyer_id, _O.c.idempotency_key == idempotency_key),
                _O.c.quote_id == quote_id))).all()
        prior = next((o for o in seen if o.buyer_id == buyer_id and o.idempotency_key == idempotency_key), None)
        if prior is not None:
            if prior.request_hash != req:
                raise Conflict(
                    f"Idempotency-Key {idempotency_key!r} was used for another request",
                    hint="use a new Idempotency-Key for a new order",
                    code="idempotency_conflict",
                )
            ent = conn.execute(select(*_E.c).where(_E.c.order_id == prior.id)).one()
            return _order_dict(prior, ent), True
        taken = next((o for o in seen if o.quote_id == quote_id), None)
        if taken is not None:
            raise Conflict(
                f"quote {quote_id} was already paid by order {taken.id}",
                hint="get a new quote to buy again",
                code="quote_used",
            )
        if aware(quote.expires_at) <= t:
            raise QuoteExpired(
                f"quote {quote_id} expired at {aware(quote.expires_at).isoformat()}", hint="ask for a new quote"
            )
        if quote.l_id is None or quote.status != ACTIVE:
            raise NotFound(
                f"listing {quote.listing_id} was delisted and takes no new orders; quote {quote_id} cannot be paid",
                hint="search the catalog: GET /v1/listings",
                code="listing_delisted",
            )
        order_id = "ord_" + secrets.token_hex(10)
        if billing == PREPAID:
            transfers = ledger.charge(
                sess,
                f"order:{order_id}",
                buyer_id,
                quote.provider_id,
                quote.amount,
                quote.currency,
                fee_bps=s.platform_fee_bps,
                ref=f"order:{order_id}",
                now=t,
            )
            amount, fee = quote.amount, sum(tr.amount for tr in transfers if tr.leg == "fee")
        else:  # the accounts each posted batch will move money between must exist before streaming
            for kind, owner in ((ledger.HOLDS, None), (ledger.PROVIDER, quote.provider_id), (ledger.PLATFORM, None)):
                ledger.ensure_account(sess, kind, owner, quote.currency)
            amount = fee = 0
        order = dict(id=order_id, buyer_id=buyer_id, idempotency_key=idempotency_key, request_hash=req,
                     quote_id=quote_id, listing_id=quote.l_id, amount=amount, fee=fee, currency=quote.currency,
                     status="paid" if billing == PREPAID else METERED, created_at=t)
        ent = dict(id="ent_" + secrets.token_hex(10), order_id=order_id, buyer_id=buyer_id, listing_id=quote.l_id,
                   version_id=quote.version_id, schedule=quote.schedule, selection=quote.selection,
                   selection_id=quote.selection_id, records=quote.records, tokens=quote.tokens, tokens_drawn=0,
                   status="active", created_at=t, price_version=quote.price_version)
        _insert_order(conn, order, ent)
        out = _order_dict(SimpleNamespace(**order), SimpleNamespace(**ent))
        if billing == METERED:
            from ciyuan.ledger import audit

            audit.append(sess, "order.metered", f"order:{order_id}",
                         {"order": order_id, "quote": quote_id, "tokens": quote.tokens, "cap": quote.amount})
            out["billing"], out["quoted_amount"] = METERED, quote.amount
        return out, False

    return tx.run(work, s)


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
