"""Metered orders and their usage records: what a buyer, a provider or the operator may read.

A metered order is the market's order with metered billing (it pays per posted batch); each post
writes one usage row (:func:`ciyuan.delivery.stream._post`), read here page by page.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ciyuan.clock import aware
from ciyuan.config import Settings
from ciyuan.delivery.plan import METERED
from ciyuan.ledger.money import format_amount
from ciyuan.ledger.tables import UsageRow
from ciyuan.market import orders


def place_metered_order(buyer_id: str, quote_id: str, idempotency_key: str, *, s: Settings | None = None,
                        now: datetime | None = None) -> tuple[dict, bool]:
    """An order that pays as it streams: nothing is charged now; each posted batch is charged.

    The quote's amount is what the whole selection will cost; the entitlement caps the tokens.
    Same idempotency rules as a paid order (it is the market's order with metered billing).
    """
    return orders.place_order(buyer_id, quote_id, idempotency_key, billing=METERED, s=s, now=now)


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
        "posted_at": aware(r.posted_at),
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
