"""The plan of an entitlement: which records, in which order, with which token counts and price.

Everything here is fixed once an order is placed, so it is built from the database and the
selection index once and kept in a small per-process LRU; every request of a stream starts from it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.orm import Session

from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.db.ids import get_row
from ciyuan.errors import NotFound
from ciyuan.market import orders
from ciyuan.market.pricing import PriceSchedule
from ciyuan.market.tables import EntitlementRow, ListingRow, OrderRow

METERED = "metered"


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
        row = get_row(sess, EntitlementRow, entitlement_id)
        if row is None:
            raise NotFound(f"entitlement {entitlement_id} does not exist", hint="see your orders: GET /v1/orders")
        ent = orders.Entitlement.of(row)
        listing = sess.get(ListingRow, ent.listing_id)
        order = sess.get(OrderRow, ent.order_id)
        result = orders.entitlement_selection(sess, ent)
        return ent, listing, order, result, orders.entitlement_schedule(sess, ent)  # the price it was bought at

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
