"""Settlement: per-provider statements for a period, tied to the ledger to the minor unit.

Every sale leaves the same trace in the ledger: the buyer's money reaches the ``holds`` escrow and
is passed on as the charge's ``provider`` leg (the provider's share) and its ``fee`` leg (the
platform's fee), linked to the buyer's leg by ``charge_id`` (columns of ``ex_transfers``). A
statement groups those transfers of the period by provider and listing (through the charge's
``ref``: ``order:<id>`` for paid orders, ``ent:<id>`` for metered batches), with the tokens sold
from the quote or the usage record. It then ties: the statements' net must equal every
credit to provider earnings in the period, and their fees every credit to platform fees.

Each statement also carries ``audit_checkpoint``: the seq and hash of the last audit entry
stamped before the period's end. The file is the statement signed with the exchange's receipt
key (``{"statement", "signature"}``, checked by ``ciyuan receipt verify``), so the provider who
keeps it holds a signed checkpoint of the log, and ``ciyuan audit verify --checkpoint FILE``
fails if the log was later cut back or rewritten before that entry.

A statement holds no creation time (and Ed25519 signatures are deterministic), so settling the
same closed period again gives the same bytes and the same statement id (the sha256 of its
canonical JSON).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from ciyuan.canonical import canonical_bytes
from ciyuan.clock import aware as _aware
from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.errors import InvalidInput
from ciyuan.ledger import audit, ledger, signing
from ciyuan.ledger.money import format_amount
from ciyuan.ledger.tables import LedgerAccountRow, TransferRow, UsageRow
from ciyuan.market.tables import AccountRow, EntitlementRow, ListingRow, OrderRow, QuoteRow


def parse_date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text)
    except (TypeError, ValueError):
        raise InvalidInput(f"{what} {text!r} is not a date", hint="write it as YYYY-MM-DD") from None


def period(date_from: str, date_to: str) -> tuple[datetime, datetime]:
    """``[from 00:00 UTC, the day after to 00:00 UTC)``: both dates are included."""
    a, b = parse_date(date_from, "--from"), parse_date(date_to, "--to")
    if b < a:
        raise InvalidInput(f"--to {b} is before --from {a}", hint="give the period's first and last day")
    return datetime.combine(a, time(), UTC), datetime.combine(b + timedelta(days=1), time(), UTC)


def _listing_of(sess: Session, ref: str | None, cache: dict) -> str | None:
    if ref in cache:
        return cache[ref]
    listing = None
    if ref and ref.startswith("order:"):
        o = sess.get(OrderRow, ref[6:])
        listing = o.listing_id if o else None
    elif ref and ref.startswith("ent:"):
        e = sess.get(EntitlementRow, ref[4:])
        listing = e.listing_id if e else None
    cache[ref] = listing
    return listing


def _tokens_of(sess: Session, charge_id: str, ref: str | None) -> int:
    if ref and ref.startswith("order:"):
        o = sess.get(OrderRow, ref[6:])
        q = sess.get(QuoteRow, o.quote_id) if o else None
        return int(q.tokens) if q else 0
    u = sess.execute(select(UsageRow.tokens).where(UsageRow.transfer_id == charge_id)).scalar_one_or_none()
    return int(u or 0)


def compute(sess: Session, start: datetime, end: datetime) -> dict:
    """Statements of every provider with sales in ``[start, end)`` and the tie to the ledger."""
    kinds = {r.id: (r.kind, r.owner_id) for r in sess.execute(select(LedgerAccountRow)).scalars()}
    rows = sess.execute(
        select(TransferRow)
        .where(TransferRow.kind.in_(["single", "post"]), TransferRow.created_at >= start,
               TransferRow.created_at < end)
        .order_by(TransferRow.seq)
    ).scalars().all()
    rows = [r for r in rows if start <= _aware(r.created_at) < end]
    charges: dict[str, dict] = {}
    ledger_net: dict[str, int] = defaultdict(int)
    ledger_fee: dict[str, int] = defaultdict(int)
    for r in rows:
        kind, owner = kinds.get(r.credit_account_id, (None, None))
        from_holds = kinds.get(r.debit_account_id, (None,))[0] == ledger.HOLDS
        if kind == ledger.PROVIDER:
            ledger_net[r.currency] += r.amount
        elif kind == ledger.PLATFORM:
            ledger_fee[r.currency] += r.amount
        if not from_holds or kind not in (ledger.PROVIDER, ledger.PLATFORM) or r.leg not in ("provider", "fee"):
            continue
        base = r.charge_id  # the charge this leg belongs to (column, migration 0007)
        c = charges.setdefault(base, {"ref": r.ref, "currency": r.currency, "net": 0, "fee": 0, "provider": None})
        if kind == ledger.PROVIDER:
            c["net"] += r.amount
            c["provider"] = owner
        else:
            c["fee"] += r.amount
    cache: dict = {}
    lines: dict[tuple[str, str, str], dict] = {}
    for base, c in sorted(charges.items()):
        listing_id = _listing_of(sess, c["ref"], cache)
        provider = c["provider"]
        if provider is None and listing_id is not None:  # a 100 % fee leaves no provider transfer
            provider = sess.get(ListingRow, listing_id).provider_id
        key = (provider or "unknown", listing_id or "unknown", c["currency"])
        line = lines.setdefault(key, {"listing_id": key[1], "currency": key[2], "sales": 0, "tokens": 0,
                                      "gross": 0, "fee": 0, "net": 0})
        line["sales"] += 1
        line["tokens"] += _tokens_of(sess, base, c["ref"])
        line["gross"] += c["net"] + c["fee"]
        line["fee"] += c["fee"]
        line["net"] += c["net"]
    mark = audit.checkpoint_of(sess, audit.seq_before(sess, end))
    statements: dict[str, dict] = {}
    for (provider, _listing, _cur), line in sorted(lines.items()):
        st = statements.setdefault(provider, {"provider_id": provider, "lines": []})
        listing = sess.get(ListingRow, line["listing_id"])
        line["dataset"] = listing.dataset if listing else None
        st["lines"].append(line)
    for provider, st in statements.items():
        acc = sess.get(AccountRow, provider)
        st["provider_name"] = acc.name if acc else None
        st["period"] = {"from": start.date().isoformat(), "to": (end - timedelta(days=1)).date().isoformat()}
        totals: dict[str, dict] = {}
        for line in st["lines"]:
            t = totals.setdefault(line["currency"], {"tokens": 0, "gross": 0, "fee": 0, "net": 0})
            for k in t:
                t[k] += line[k]
            for k in ("gross", "fee", "net"):
                line[f"{k}_text"] = format_amount(line[k], line["currency"])
        st["totals"] = totals
        st["audit_checkpoint"] = mark
        st["statement_id"] = hashlib.sha256(canonical_bytes(st)).hexdigest()
    sum_net: dict[str, int] = defaultdict(int)
    sum_fee: dict[str, int] = defaultdict(int)
    for st in statements.values():
        for cur, t in st["totals"].items():
            sum_net[cur] += t["net"]
            sum_fee[cur] += t["fee"]
    currencies = sorted(set(ledger_net) | set(ledger_fee) | set(sum_net) | set(sum_fee))
    tie = {
        cur: {
            "statements_net": sum_net[cur],
            "ledger_provider_credits": ledger_net[cur],
            "statements_fee": sum_fee[cur],
            "ledger_platform_fees": ledger_fee[cur],
            "ok": sum_net[cur] == ledger_net[cur] and sum_fee[cur] == ledger_fee[cur],
        }
        for cur in currencies
    }
    return {
        "period": {"from": start.date().isoformat(), "to": (end - timedelta(days=1)).date().isoformat()},
        "statements": [statements[k] for k in sorted(statements)],
        "tie": tie,
        "audit_checkpoint": mark,
        "ok": all(t["ok"] for t in tie.values()),
    }


def settle(date_from: str, date_to: str, *, out_dir: str | Path | None = None, s: Settings | None = None) -> dict:
    """Compute the period's statements and write one signed JSON file per provider (same period, same bytes).

    The period's audit checkpoint is also stored (signed) with the exchange's checkpoints.
    """
    s = s or settings()
    start, end = period(date_from, date_to)
    result = tx.run(lambda sess: compute(sess, start, end), s)
    mark = result["audit_checkpoint"]
    signed_mark = audit.sign_checkpoint(mark["seq"], mark["hash"], s)
    tx.run(lambda sess: audit.store(sess, signed_mark, s), s)
    folder = Path(out_dir) if out_dir else Path(s.home) / "settlements" / f"{date_from}_{date_to}"
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for st in result["statements"]:
        path = folder / f"{st['provider_id']}.json"
        path.write_bytes(signing.to_bytes(signing.sign_doc("statement", st, s)))
        files.append(str(path))
    result["files"] = files
    return result


# -- one account's view: a provider's sales, a buyer's spend (the same attribution as the statements) --


def _posted(sess: Session, *, debit: list[str] | None = None, credit: list[str] | None = None) -> list[TransferRow]:
    """Posted single and post transfers into ``credit`` or out of ``debit`` accounts, oldest first."""
    q = select(TransferRow).where(TransferRow.kind.in_(["single", "post"]), TransferRow.state == "posted")
    if credit is not None:
        q = q.where(TransferRow.credit_account_id.in_(credit))
    if debit is not None:
        q = q.where(TransferRow.debit_account_id.in_(debit))
    return list(sess.execute(q.order_by(TransferRow.seq)).scalars())


def _accounts_of(sess: Session, kind: str, owner_id: str) -> list[str]:
    return list(sess.execute(
        select(LedgerAccountRow.id).where(LedgerAccountRow.kind == kind, LedgerAccountRow.owner_id == owner_id)
    ).scalars())  # fmt: skip


def provider_sales(sess: Session, provider_id: str) -> dict:
    """Every sale credited to a provider, attributed to its listing and tokens as statements are.

    ``sales``: one line per credit to the provider's earnings (oldest first) with the listing (from
    the charge's ref), the tokens sold (a paid order's quoted tokens, a metered batch's usage) and
    the amount; ``by_listing``: those summed per listing id (``None`` for a credit no listing explains).
    """
    cache: dict = {}
    sales = []
    by_listing: dict[str | None, dict] = {}
    for r in _posted(sess, credit=_accounts_of(sess, ledger.PROVIDER, provider_id)):
        base = r.charge_id if r.leg == "provider" else r.id  # the charge it is a leg of (column, 0007)
        listing_id = _listing_of(sess, r.ref, cache)
        tokens = _tokens_of(sess, base, r.ref) if r.ref else 0
        at = _aware(r.created_at)
        sales.append({"transfer_id": r.id, "ref": r.ref, "listing_id": listing_id, "tokens": tokens,
                      "amount": r.amount, "currency": r.currency, "at": at})  # fmt: skip
        line = by_listing.setdefault(listing_id, {"listing_id": listing_id, "sales": 0, "tokens": 0, "amount": 0,
                                                  "currency": r.currency, "last": at})  # fmt: skip
        line["sales"] += 1
        line["tokens"] += tokens
        line["amount"] += r.amount
        line["last"] = at
    for line in by_listing.values():
        line["amount_text"] = format_amount(line["amount"], line["currency"])
    return {"sales": sales, "by_listing": by_listing}


def buyer_spend(sess: Session, buyer_id: str) -> dict:
    """What a buyer paid, per charge ref (``order:<id>`` paid at once, ``ent:<id>`` per posted batch).

    ``by_ref`` sums the posted debits of the buyer's balances by ref; ``charges`` lists them (oldest
    first) with the listing each paid for. Held (pending) and voided amounts are not spent.
    """
    cache: dict = {}
    by_ref: dict[str, int] = defaultdict(int)
    charges = []
    for r in _posted(sess, debit=_accounts_of(sess, ledger.BUYER, buyer_id)):
        if not r.ref or not r.ref.startswith(("order:", "ent:")):
            continue  # not a purchase (a transfer the operator made by hand)
        by_ref[r.ref] += r.amount
        charges.append({"transfer_id": r.id, "ref": r.ref, "listing_id": _listing_of(sess, r.ref, cache),
                        "amount": r.amount, "currency": r.currency, "at": _aware(r.created_at)})  # fmt: skip
    return {"by_ref": dict(by_ref), "charges": charges}
