"""Quotes: the price of exactly one selection of a listing, good for ``quote_ttl_s`` seconds.

A quote prices the selection from the stored per-record token counts and names the covered records
by a stable selection id; the order that pays it (:mod:`ciyuan.market.orders`) gets exactly those.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from ciyuan.clock import aware, utc_now
from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.db.ids import get_row
from ciyuan.errors import CiyuanError, InvalidInput, NotFound
from ciyuan.ledger.money import format_amount
from ciyuan.market import selection
from ciyuan.market.listings import get_listing, listing_schedule
from ciyuan.market.tables import ListingRow, QuoteRow


class QuoteExpired(CiyuanError):
    code = "quote_expired"
    status = 410


def _quote_dict(row: QuoteRow) -> dict:
    return {
        "id": row.id,
        "listing_id": row.listing_id,
        "selection": json.loads(row.selection),
        "selection_id": row.selection_id,
        "records": row.records,
        "tokens": row.tokens,
        "amount": row.amount,
        "amount_text": format_amount(row.amount, row.currency),
        "currency": row.currency,
        "price_version": row.price_version,
        "created_at": aware(row.created_at),
        "expires_at": aware(row.expires_at),
    }


def evaluate_listing(row: ListingRow, sel: selection.Selection) -> selection.SelectionResult:
    return selection.evaluate(selection.load_index(row.index_location), sel)


def create_quote(
    buyer_id: str, listing_id: str, sel_obj: Any, *, s: Settings | None = None, now: datetime | None = None
) -> dict:
    """Price exactly the records a selection covers; the quote holds for ``quote_ttl_s`` seconds."""
    s = s or settings()
    sel = selection.Selection.parse(sel_obj)
    listing = tx.run(lambda sess: get_listing(sess, listing_id), s)
    result = evaluate_listing(listing, sel)
    if result.records == 0 or result.tokens == 0:
        raise InvalidInput(
            "the selection covers no tokens", hint="loosen the filter or raise the token budget", code="empty_selection"
        )
    amount = listing_schedule(listing).price(result.tokens)
    if amount <= 0:
        raise InvalidInput(
            "this selection is free under the listing's price", hint="free data needs no order", code="zero_price"
        )
    t = utc_now(now)

    def write(sess: Session) -> dict:
        row = QuoteRow(
            id="q_" + secrets.token_hex(10),
            listing_id=listing.id,
            buyer_id=buyer_id,
            selection=sel.canonical(),
            selection_id=result.selection_id,
            records=result.records,
            tokens=result.tokens,
            amount=amount,
            currency=listing.currency,
            created_at=t,
            expires_at=t + timedelta(seconds=s.quote_ttl_s),
            price_version=listing.price_version,  # the price this amount was computed with
        )
        sess.add(row)
        sess.flush()
        return _quote_dict(row)

    return tx.run(write, s)


def get_quote(sess: Session, quote_id: str, buyer_id: str) -> dict:
    row = get_row(sess, QuoteRow, quote_id)
    if row is None or row.buyer_id != buyer_id:
        raise NotFound(f"quote {quote_id} does not exist", hint="create one: POST /v1/quotes")
    return _quote_dict(row)
