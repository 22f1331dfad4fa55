"""What the account pages show (buyer, provider, operator), gathered from the layers that own it.

Balances come from the ledger, orders from ``orders``, usage from delivery (filtered by
``accounts.usage_filter``), a provider's sales and a buyer's spend from ``settlement``: these pages
only shape them for tables and charts. The public pages (catalog, dataset) are :mod:`ciyuan.web.views`.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import Session

from ciyuan.clock import aware
from ciyuan.config import Settings
from ciyuan.db import tx
from ciyuan.delivery import receipts
from ciyuan.delivery.plan import plan
from ciyuan.delivery.usage import place_metered_order
from ciyuan.delivery.usage import usage as usage_page
from ciyuan.errors import CiyuanError
from ciyuan.ledger import audit, ledger, signing
from ciyuan.ledger.money import format_amount
from ciyuan.market import accounts, listings, orders, quotes, settlement
from ciyuan.market import catalog as market_catalog
from ciyuan.market.accounts import Principal
from ciyuan.web.views import major, report_links, when

# -- buyer -----------------------------------------------------------------------------------------


def _usage_rows(sess: Session, account: accounts.Account) -> list[dict]:
    """Every posted delivery batch (oldest first) that ``account`` may see (:func:`accounts.usage_filter`)."""
    rows: list[dict] = []
    after = 0
    while True:
        page = usage_page(sess, **accounts.usage_filter(account), after=after, limit=1000)
        rows += page["items"]
        if page["next_after"] is None or len(page["items"]) < 1000:
            return rows
        after = page["next_after"]


def _with_held(b: dict) -> dict:
    return {**b, "held_text": format_amount(b["held"], b["currency"])}


def cumulative(events: list[tuple[Any, int]]) -> list[tuple[datetime, float]]:
    """Running totals of (timestamp, amount) events, from zero just before the first, for the time charts."""
    evs = sorted(((aware(t), n) for t, n in events if isinstance(t, datetime)), key=lambda e: e[0])
    if not evs:
        return []
    out, run = [(evs[0][0], 0.0)], 0.0
    for t, n in evs:
        run += n
        if out[-1][0] == t and len(out) > 1:
            out[-1] = (t, run)
        else:
            out.append((t, run))
    return out


def buyer_page(s: Settings, who: Principal) -> dict:
    """Balance, entitlements (with what each has billed), usage summed per entitlement, orders."""
    bid = who.account.id

    def work(sess: Session) -> dict:
        bals = [b.to_dict() for b in ledger.balances(sess, bid)]
        bought = orders.list_orders(sess, bid, 200, 0)
        quoted = {}
        for o in bought:  # a metered order's cap is its quote's amount
            if o["status"] == "metered" and o.get("quote_id"):
                with contextlib.suppress(CiyuanError):
                    quoted[o["id"]] = quotes.get_quote(sess, o["quote_id"], bid)["amount"]
        usage = _usage_rows(sess, who.account)
        offers = market_catalog.search(sess, limit=100)["items"]
        spent = settlement.buyer_spend(sess, bid)["by_ref"]
        return {"balances": bals, "orders": bought, "usage": usage, "offers": offers, "quoted": quoted, "spent": spent}

    data = tx.run(work, s)
    usage = data["usage"]
    names = {it["id"]: it["dataset"] for it in data["offers"]}
    by_ent = usage_summary(usage)
    ents, order_rows = [], []
    for o in data["orders"]:
        ent = o.get("entitlement")
        used = by_ent.get(ent["id"]) if ent else None
        billed = data["spent"].get(f"order:{o['id']}", 0) + (data["spent"].get(f"ent:{ent['id']}", 0) if ent else 0)
        cap = data["quoted"].get(o["id"])
        row = o | {"billed": billed, "billed_text": format_amount(billed, o["currency"]),
                   "cap_text": format_amount(cap, o["currency"]) if cap is not None else None}  # fmt: skip
        order_rows.append(row)
        if ent:
            ents.append(ent | {"order": row, "streamed": used["tokens"] if used else 0, "charged": row["billed_text"],
                               "batches": used["batches"] if used else 0})  # fmt: skip
    summary = [u | {"dataset": names.get(u["listing_id"], u["listing_id"])} for u in by_ent.values()]
    return {
        "balances": [_with_held(b) for b in data["balances"] if b["kind"] == ledger.BUYER],
        "orders": order_rows,
        "entitlements": ents,
        "delivery": True,
        "usage_points": cumulative([(u["posted_at"], u["tokens"]) for u in usage]),
        "spend_points": [
            (k, major(v, u0["currency"])) for u0 in usage[:1]
            for k, v in cumulative([(u["posted_at"], u["amount"]) for u in usage])
        ],
        "usage_summary": summary,
        "usage_rows": [
            {"at": when(u["posted_at"]), "entitlement": u["entitlement_id"], "tokens": u["tokens"],
             "records": u["records"], "amount": u["amount_text"], "currency": u["currency"], "sha256": u["sha256"],
             "dataset": names.get(u["listing_id"], u["listing_id"])}
            for u in usage[-200:]
        ],  # fmt: skip
        "receipts": True,
        "offers": data["offers"],
        "names": names,
    }


def usage_summary(usage: list[dict]) -> dict[str, dict]:
    """Delivery batches summed per entitlement (first and last batch, records, tokens, amount), in first-use order."""
    out: dict[str, dict] = {}
    for u in usage:
        e = out.setdefault(u["entitlement_id"], {
            "entitlement_id": u["entitlement_id"], "listing_id": u["listing_id"], "currency": u["currency"],
            "batches": 0, "records": 0, "tokens": 0, "amount": 0, "first": u["posted_at"], "last": u["posted_at"],
        })  # fmt: skip
        e["batches"] += 1
        e["records"] += u["records"]
        e["tokens"] += u["tokens"]
        e["amount"] += u["amount"]
        e["last"] = u["posted_at"]
    for e in out.values():
        e["amount_text"] = format_amount(e["amount"], e["currency"])
    return out


def receipt_bytes(s: Settings, who: Principal, entitlement_id: str) -> bytes:
    """The signed receipt of one of the buyer's entitlements, exactly as ``GET /v1/entitlements/{id}/receipt``."""

    p = plan(entitlement_id, who.account.id, s)  # 404 for anyone else's
    return signing.to_bytes(signing.sign(tx.run(lambda sess: receipts.statement(sess, p), s), s))


def place_order(s: Settings, who: Principal, quote_id: str, idem: str, billing: str) -> dict:
    """Pay a quote now (``prepaid``) or as the tokens stream (``metered``), as the two order APIs do."""
    if billing == "metered":
        return place_metered_order(who.account.id, quote_id, idem, s=s)[0]
    return orders.place_order(who.account.id, quote_id, idem, s=s)[0]


# -- provider --------------------------------------------------------------------------------------


def provider_page(s: Settings, who: Principal) -> dict:
    """The provider's listings, what each sold and earned (settlement's attribution) and delivered."""
    pid = who.account.id

    def work(sess: Session) -> dict:
        mine = listings.provider_listings(sess, pid)  # delisted ones too, so they can be relisted
        earn = [b for b in ledger.balances(sess, pid) if b.kind == ledger.PROVIDER]
        return {"listings": mine, "sales": settlement.provider_sales(sess, pid), "earn": earn,
                "usage": _usage_rows(sess, who.account)}  # fmt: skip

    d = tx.run(work, s)
    sales, by_listing = d["sales"]["sales"], d["sales"]["by_listing"]
    delivered: dict[str, int] = defaultdict(int)
    for u in d["usage"]:
        delivered[u["listing_id"]] += u["tokens"]
    currency = d["earn"][0].currency if d["earn"] else (d["listings"][0]["currency"] if d["listings"] else "CNY")
    names = {it["id"]: it["dataset"] for it in d["listings"]}
    earned = {
        lid or "": {"listing_id": lid or "", "dataset": names.get(lid or "", ""), "credits": line["sales"],
                    "amount": line["amount"], "amount_text": line["amount_text"], "last": when(line["last"])}
        for lid, line in by_listing.items()
    }  # fmt: skip
    credits = [
        {"at": when(c["at"]), "ref": c["ref"] or c["transfer_id"], "dataset": names.get(c["listing_id"] or "", ""),
         "amount": format_amount(c["amount"], c["currency"])}
        for c in sales
    ]  # fmt: skip
    sold = {lid: line["tokens"] for lid, line in by_listing.items() if lid}
    return {
        "earned": {k: v for k, v in earned.items() if k},
        "earned_other": earned.get(""),
        "listings": d["listings"],
        "reports": {it["id"]: report_links(s, it) for it in d["listings"]},
        "sold": sold,
        "delivered": dict(delivered),
        "delivery": True,
        "tokens_sold": sum(sold.values()),
        "earnings": [b.to_dict() for b in d["earn"]],
        "currency": currency,
        "earnings_points": [(k, major(v, currency)) for k, v in cumulative([(c["at"], c["amount"]) for c in sales])],
        "sold_points": cumulative([(c["at"], c["tokens"]) for c in sales if c["tokens"]]),
        "credits": credits[-200:],
    }


# -- operator --------------------------------------------------------------------------------------


def operator_page(s: Settings, limit: int = 100) -> dict:
    def work(sess: Session) -> dict:
        people = {a.id: a for a in accounts.list_accounts(sess)}
        bals = []
        for bal in ledger.balances(sess):
            who = people.get(bal.account_id.split(":")[1])
            bals.append(_with_held(bal.to_dict()) | {"owner": f"{who.name} ({who.role})" if who else "platform",
                                                     "owner_name": who.name if who else None,
                                                     "owner_role": who.role if who else None})  # fmt: skip
        chk = ledger.check(sess)
        try:
            with sess.begin_nested():
                ver = audit.verify(sess)
                head = ver["entries"]
                entries = [e.to_dict() for e in audit.entries(sess, after=max(0, head - limit), limit=limit)]
        except (OperationalError, ProgrammingError):
            ver, entries = None, []
        return {"balances": bals, "check": chk, "audit": ver, "entries": list(reversed(entries))}

    return tx.run(work, s)


def sync_audit(s: Settings) -> int:
    """Adopt a legacy home's transfers that predate the audit chain (``ciyuan audit adopt``).

    Verification never writes; transfers made after the chain began and missing from it are
    refused by ``ledger.adopt`` and stay findings of ``audit verify``.
    """
    out = tx.run(ledger.adopt, s)
    return len(out["adopted"]) + out["expiries"]
