"""What a receipt states for an entitlement: every posted batch, the totals and the audit head.

Signing and verifying the statement is :mod:`ciyuan.ledger.signing`'s job; this module only gathers
the facts from delivery's usage rows.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from ciyuan.config import Settings
from ciyuan.delivery.usage import usage_dict
from ciyuan.ledger import audit
from ciyuan.ledger.money import format_amount
from ciyuan.ledger.tables import UsageRow
from ciyuan.market.tables import OrderRow


def statement(sess, p, *, now=None, s: Settings | None = None) -> dict:
    """The facts a receipt states for an entitlement: every posted batch, the totals, and the audit head.

    The head (seq and hash) is also stored as a signed checkpoint (:func:`ciyuan.ledger.audit.checkpoint`),
    so the receipt the buyer keeps and the exchange's own record both pin the log up to that entry.
    """
    rows = sess.execute(
        select(UsageRow).where(UsageRow.entitlement_id == p.entitlement_id).order_by(UsageRow.seq)
    ).scalars().all()
    batches = []
    for r in rows:
        d = usage_dict(r)
        d["posted_at"] = d["posted_at"].isoformat()
        d.pop("entitlement_id")
        d.pop("listing_id")
        batches.append(d)
    order = sess.get(OrderRow, p.order_id)
    cp = audit.checkpoint(sess, s)["checkpoint"]
    tokens = sum(b["tokens"] for b in batches)
    amount = sum(b["amount"] for b in batches)
    return {
        "type": "ciyuan.receipt.v1",
        "issued_at": (now or datetime.now(UTC)).isoformat(),
        "entitlement_id": p.entitlement_id,
        "order_id": p.order_id,
        "buyer_id": p.buyer_id,
        "provider_id": p.provider_id,
        "listing_id": p.listing_id,
        "version_id": p.version.id,
        "billing": "metered" if p.metered else "prepaid",
        "order_amount": order.amount,
        "currency": p.currency,
        "tokenizer": {"name": p.tokenizer, "version": p.tokenizer_version},
        "price_schedule": p.schedule.to_dict(),
        "entitled": {"records": p.records, "tokens": p.tokens},
        "batches": batches,
        "totals": {
            "batches": len(batches),
            "records": sum(b["records"] for b in batches),
            "tokens": tokens,
            "amount": amount,
            "amount_text": format_amount(amount, p.currency),
            "price_of_tokens": p.price(tokens) if p.metered else 0,
        },
        "audit_head": cp["hash"],
        "audit_checkpoint": {"seq": cp["seq"], "hash": cp["hash"]},
    }
