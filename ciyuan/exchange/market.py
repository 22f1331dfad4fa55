"""Listings, the catalog, quotes, orders and entitlements: the market on top of the ledger.

* A **listing** offers one immutable version under one token schedule and one price schedule.
  Publishing builds its selection index (see :mod:`ciyuan.exchange.selection`) and keeps a free
  sample of at most N records.
* A **quote** prices exactly one selection of a listing from the stored per-record token counts
  and names the covered records by a stable selection id; it expires after ``quote_ttl_s``.
* An **order** pays a quote once (``Idempotency-Key``) and creates an **entitlement**: the buyer's
  right to draw exactly the quoted records and tokens. Delivery reads entitlements through
  :func:`get_entitlement`, :func:`entitlement_selection` and :func:`record_draw`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from ciyuan.config import Settings, settings
from ciyuan.errors import CiyuanError, Conflict, InvalidInput, NotFound
from ciyuan.exchange import ledger, selection, tx
from ciyuan.exchange.accounts import Forbidden, get_account
from ciyuan.exchange.money import CURRENCIES, format_amount, format_rate
from ciyuan.exchange.pricing import PriceSchedule, build_schedule
from ciyuan.exchange.tables import (
    AccountRow,
    EntitlementRow,
    ListingRow,
    ListingTagRow,
    OrderRow,
    QuoteRow,
)

MAX_SAMPLE = 100
SAMPLE_TEXT_CHARS = 4000


class QuoteExpired(CiyuanError):
    code = "quote_expired"
    status = 410


def _aware(ts: datetime | None) -> datetime | None:
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# -- price suggestion hook -------------------------------------------------------------------------

PriceSuggester = Callable[[Any, str, str], Fraction]
_suggester: PriceSuggester | None = None


def register_price_suggester(fn: PriceSuggester) -> None:
    """Let the appraisal layer answer ``--price-per-mtok suggested``: fn(version, schedule, currency) -> rate."""
    global _suggester
    _suggester = fn


def suggested_rate(version: Any, schedule: str, currency: str) -> Fraction:
    if _suggester is None:
        with contextlib.suppress(ImportError):  # the appraisal layer registers itself when imported
            import ciyuan.appraise.pricing  # noqa: F401
    if _suggester is None:
        raise InvalidInput(
            "no price suggestion is available yet",
            hint="give an explicit --price-per-mtok AMOUNT (the appraisal layer provides 'suggested')",
            code="no_price_suggestion",
        )
    rate = Fraction(_suggester(version, schedule, currency)).limit_denominator(10**6)
    return rate


# -- listings --------------------------------------------------------------------------------------


def _index_url(s: Settings, listing_id: str) -> str:
    return f"{s.store_root}/exchange/index/{listing_id}.parquet"


def _sample(version: Any, n: int) -> list[dict]:
    out = []
    if n <= 0:
        return out
    for rec in version.iter_records():
        r = {k: rec.get(k) for k in ("id", "modality", "text", "media_ref", "meta", "tokens")}
        if isinstance(r.get("text"), str) and len(r["text"]) > SAMPLE_TEXT_CHARS:
            r["text"] = r["text"][:SAMPLE_TEXT_CHARS]
            r["truncated"] = True
        out.append(r)
        if len(out) >= n:
            break
    return out


def publish(
    ref: str,
    *,
    provider: str,
    price_per_mtok: str,
    currency: str = "CNY",
    schedule: str | None = None,
    tiers: list[dict] | None = None,
    mode: str = "graduated",
    license: str = "",
    sample: int = 5,
    s: Settings | None = None,
) -> dict:
    """List version ``ref`` (NAME or NAME@V) for sale by ``provider``; returns the listing."""
    from ciyuan.store import resolve

    s = s or settings()
    tokenizer = schedule or s.default_tokenizer
    if isinstance(sample, bool) or not isinstance(sample, int) or not 0 <= sample <= MAX_SAMPLE:
        raise InvalidInput(f"sample {sample!r} must be 0 to {MAX_SAMPLE} records", hint="e.g. --sample 5")
    if not isinstance(license, str) or len(license) > 20_000:
        raise InvalidInput("license must be text of at most 20,000 characters", hint="give an SPDX id or text")

    def check_provider(sess: Session) -> str:
        acc = get_account(sess, provider)
        if acc.role not in ("provider", "operator"):
            raise Forbidden(f"{acc.name} is a {acc.role}; only providers publish", hint="use a provider account")
        return acc.id

    provider_id = tx.run(check_provider, s)
    version = resolve(ref, s)
    if str(price_per_mtok).strip().lower() == "suggested":
        rate: str | Fraction = suggested_rate(version, tokenizer, currency)
    else:
        rate = price_per_mtok
    sched = build_schedule(rate, currency, tiers, mode)
    counts = list(version.iter_token_counts(tokenizer))
    index = selection.build_index(counts, version.iter_batches(columns=["modality", "meta"]), version.id, tokenizer)
    listing_id = "lst_" + secrets.token_hex(8)
    url = _index_url(s, listing_id)
    selection.write_index(index, url)
    facets = {
        "modality": selection.facets(index, "modality"),
        "language": selection.facets(index, "meta.language"),
        "domain": selection.facets(index, "meta.domain"),
    }
    tokens = int(index.column("tokens").to_numpy().sum()) if index.num_rows else 0
    extra = version.manifest.get("extra") or {}
    declared = extra.get("card") or {}  # what the provider declared at ingest (ciyuan ingest --card)
    license = license or str(declared.get("license") or extra.get("license") or "")
    card = {
        "dataset": version.dataset,
        "version": version.id,
        "description": declared.get("description") or extra.get("description") or "",
        **{k: declared[k] for k in ("creator", "keywords") if k in declared},
        "made_by": version.manifest.get("made_by"),
        "records": index.num_rows,
        "tokens": tokens,
        "schedule": tokenizer,
        "tokenizer_version": version.manifest.get("tokenizers", {}).get(tokenizer),
        "facets": facets,
        "numeric": selection.numeric_stats(index),
        "fields": selection.fields(index),
        "license": license,
    }
    samp = _sample(version, sample)

    def write(sess: Session) -> dict:
        row = ListingRow(
            id=listing_id,
            provider_id=provider_id,
            dataset=version.dataset,
            version_id=version.id,
            schedule=tokenizer,
            currency=sched.currency,
            price_schedule=json.dumps(sched.to_dict()),
            base_rate_micro=int(sched.base_rate * 10**6),
            license=license,
            records=index.num_rows,
            tokens=tokens,
            card=json.dumps(card, ensure_ascii=False, default=str),
            sample=json.dumps(samp, ensure_ascii=False, default=str),
            index_location=url,
            status="active",
            created_at=datetime.now(UTC),
        )
        sess.add(row)
        for facet, counts_ in facets.items():
            for value in counts_:
                if isinstance(value, str) and 0 < len(value) <= 100 and "\x00" not in value:  # PG text refuses NUL
                    sess.add(ListingTagRow(listing_id=listing_id, facet=facet, value=value))
        sess.flush()
        return _listing_dict(row, sess, detail=True)

    listing = tx.run(write, s)
    # Listed versions join the catalog's near-duplicate index, so a later appraisal can tell data that
    # is new to the market from a re-listing of someone else's (uniqueness against the catalog).
    from ciyuan.appraise import register_listing

    register_listing(f"{version.dataset}@{version.id}", listing_id, provider_id, s)
    return listing


def _schedule(row: ListingRow) -> PriceSchedule:
    return PriceSchedule.from_dict(json.loads(row.price_schedule))


def _listing_dict(row: ListingRow, sess: Session, detail: bool = False) -> dict:
    sched = json.loads(row.price_schedule)
    prov = sess.get(AccountRow, row.provider_id)
    card = json.loads(row.card)
    out = {
        "id": row.id,
        "dataset": row.dataset,
        "version": row.version_id,
        "provider": prov.name if prov else row.provider_id,
        "schedule": row.schedule,
        "currency": row.currency,
        "price_per_mtok": sched["tiers"][0]["price_per_mtok"],
        "price": sched,
        "license": row.license,
        "records": row.records,
        "tokens": row.tokens,
        "full_price": format_amount(_schedule(row).price(row.tokens), row.currency),
        "modalities": sorted(card["facets"].get("modality", {})),
        "languages": sorted(card["facets"].get("language", {})),
        "domains": sorted(card["facets"].get("domain", {})),
        "status": row.status,
        "created_at": _aware(row.created_at),
    }
    if detail:
        out["card"] = card
        out["sample"] = json.loads(row.sample)
    return out


def get_listing(sess: Session, listing_id: str) -> ListingRow:
    row = sess.get(ListingRow, listing_id) if isinstance(listing_id, str) and len(listing_id) <= 40 else None
    if row is None or row.status != "active":
        raise NotFound(f"listing {listing_id} does not exist", hint="search the catalog: GET /v1/listings")
    return row


def listing_detail(sess: Session, listing_id: str) -> dict:
    return _listing_dict(get_listing(sess, listing_id), sess, detail=True)


def _price_micro(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    from ciyuan.exchange.money import parse_rate

    return int(parse_rate(text, what=what) * 10**6)


def search(
    sess: Session,
    *,
    q: str | None = None,
    modality: str | None = None,
    language: str | None = None,
    domain: str | None = None,
    currency: str | None = None,
    min_price: str | None = None,
    max_price: str | None = None,
    min_tokens: int | None = None,
    max_tokens: int | None = None,
    limit: int = 20,
    offset: int = 0,
) -> dict:
    """Active listings matching every given filter, newest first; all values are bound parameters."""
    if not 1 <= limit <= 100 or offset < 0:
        raise InvalidInput("limit must be 1..100 and offset 0 or more", hint="page with offset += limit")
    L = ListingRow
    conds = [L.status == "active"]
    if q:
        conds.append(L.dataset.contains(q[:200], autoescape=True))
    for facet, value in (("modality", modality), ("language", language), ("domain", domain)):
        if value:
            conds.append(
                exists().where(
                    and_(
                        ListingTagRow.listing_id == L.id,
                        ListingTagRow.facet == facet,
                        ListingTagRow.value == value[:100],
                    )
                )
            )
    if currency:
        conds.append(L.currency == currency.upper()[:3])
    lo, hi = _price_micro(min_price, "min_price"), _price_micro(max_price, "max_price")
    if lo is not None:
        conds.append(L.base_rate_micro >= lo)
    if hi is not None:
        conds.append(L.base_rate_micro <= hi)
    if min_tokens is not None:
        conds.append(L.tokens >= min_tokens)
    if max_tokens is not None:
        conds.append(L.tokens <= max_tokens)
    where = and_(*conds)
    total = sess.execute(select(func.count()).select_from(L).where(where)).scalar_one()
    rows = sess.execute(select(L).where(where).order_by(L.created_at.desc(), L.id).limit(limit).offset(offset))
    items = [_listing_dict(r, sess) for r in rows.scalars()]
    nxt = offset + limit if offset + limit < total else None
    return {"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": nxt}


# -- quotes ----------------------------------------------------------------------------------------


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
        "created_at": _aware(row.created_at),
        "expires_at": _aware(row.expires_at),
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
    amount = _schedule(listing).price(result.tokens)
    if amount <= 0:
        raise InvalidInput(
            "this selection is free under the listing's price", hint="free data needs no order", code="zero_price"
        )
    t = _now(now)

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
        )
        sess.add(row)
        sess.flush()
        return _quote_dict(row)

    return tx.run(write, s)


def get_quote(sess: Session, quote_id: str, buyer_id: str) -> dict:
    row = sess.get(QuoteRow, quote_id) if isinstance(quote_id, str) and len(quote_id) <= 40 else None
    if row is None or row.buyer_id != buyer_id:
        raise NotFound(f"quote {quote_id} does not exist", hint="create one: POST /v1/quotes")
    return _quote_dict(row)


# -- orders and entitlements -----------------------------------------------------------------------


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

    @classmethod
    def of(cls, r: EntitlementRow) -> Entitlement:
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
            _aware(r.created_at),
        )

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["tokens_remaining"] = self.tokens - self.tokens_drawn
        return d


def _order_dict(o: OrderRow, e: EntitlementRow | None) -> dict:
    return {
        "id": o.id,
        "quote_id": o.quote_id,
        "listing_id": o.listing_id,
        "amount": o.amount,
        "amount_text": format_amount(o.amount, o.currency),
        "fee": o.fee,
        "currency": o.currency,
        "status": o.status,
        "created_at": _aware(o.created_at),
        "entitlement": Entitlement.of(e).to_dict() if e else None,
    }


def _request_hash(quote_id: str) -> str:
    return hashlib.sha256(json.dumps({"quote_id": quote_id}).encode()).hexdigest()


PREPAID, METERED = "prepaid", "metered"


def place_order(
    buyer_id: str,
    quote_id: str,
    idempotency_key: str,
    *,
    billing: str = PREPAID,
    s: Settings | None = None,
    now: datetime | None = None,
) -> tuple[dict, bool]:
    """Order a quote once: (order with its entitlement, whether this was a replay of an earlier call).

    ``prepaid`` charges the quote now; ``metered`` charges nothing now and lets delivery charge each
    posted batch (the entitlement caps the tokens). The buyer's balance row is locked first, so every
    order of one buyer is serialised; a replay with the same key returns the stored order, the same
    key for another quote (or the other billing) is a conflict.
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
        t = _now(now)
        quote = sess.get(QuoteRow, quote_id) if isinstance(quote_id, str) and len(quote_id) <= 40 else None
        if quote is None or quote.buyer_id != buyer_id:
            raise NotFound(f"quote {quote_id} does not exist", hint="create one: POST /v1/quotes")
        buyer_acct = ledger.ensure_account(sess, ledger.BUYER, buyer_id, quote.currency)
        ledger._lock(sess, [buyer_acct])
        prior = sess.execute(
            select(OrderRow).where(OrderRow.buyer_id == buyer_id, OrderRow.idempotency_key == idempotency_key)
        ).scalar_one_or_none()
        if prior is not None:
            if prior.request_hash != req:
                raise Conflict(
                    f"Idempotency-Key {idempotency_key!r} was used for another request",
                    hint="use a new Idempotency-Key for a new order",
                    code="idempotency_conflict",
                )
            ent = sess.execute(select(EntitlementRow).where(EntitlementRow.order_id == prior.id)).scalar_one()
            return _order_dict(prior, ent), True
        taken = sess.execute(select(OrderRow.id).where(OrderRow.quote_id == quote_id)).first()
        if taken is not None:
            raise Conflict(
                f"quote {quote_id} was already paid by order {taken[0]}",
                hint="get a new quote to buy again",
                code="quote_used",
            )
        if _aware(quote.expires_at) <= t:
            raise QuoteExpired(
                f"quote {quote_id} expired at {_aware(quote.expires_at).isoformat()}", hint="ask for a new quote"
            )
        listing = sess.get(ListingRow, quote.listing_id)
        if listing is None or listing.status != "active":
            raise NotFound(f"listing {quote.listing_id} is no longer offered", hint="search the catalog")
        order_id = "ord_" + secrets.token_hex(10)
        if billing == PREPAID:
            transfers = ledger.charge(
                sess,
                f"order:{order_id}",
                buyer_id,
                listing.provider_id,
                quote.amount,
                quote.currency,
                fee_bps=s.platform_fee_bps,
                ref=f"order:{order_id}",
                now=t,
            )
            amount, fee = quote.amount, sum(tr.amount for tr in transfers if tr.id.endswith(":fee"))
        else:  # the accounts each posted batch will move money between must exist before streaming
            for kind, owner in ((ledger.HOLDS, None), (ledger.PROVIDER, listing.provider_id), (ledger.PLATFORM, None)):
                ledger.ensure_account(sess, kind, owner, quote.currency)
            amount = fee = 0
        order = OrderRow(
            id=order_id,
            buyer_id=buyer_id,
            idempotency_key=idempotency_key,
            request_hash=req,
            quote_id=quote_id,
            listing_id=listing.id,
            amount=amount,
            fee=fee,
            currency=quote.currency,
            status="paid" if billing == PREPAID else METERED,
            created_at=t,
        )
        sess.add(order)
        sess.flush()
        ent = EntitlementRow(
            id="ent_" + secrets.token_hex(10),
            order_id=order_id,
            buyer_id=buyer_id,
            listing_id=listing.id,
            version_id=listing.version_id,
            schedule=listing.schedule,
            selection=quote.selection,
            selection_id=quote.selection_id,
            records=quote.records,
            tokens=quote.tokens,
            tokens_drawn=0,
            status="active",
            created_at=t,
        )
        sess.add(ent)
        sess.flush()
        out = _order_dict(order, ent)
        if billing == METERED:
            from ciyuan.exchange import audit

            audit.append(sess, "order.metered", f"order:{order_id}",
                         {"order": order_id, "quote": quote_id, "tokens": quote.tokens, "cap": quote.amount})
            out["billing"], out["quoted_amount"] = METERED, quote.amount
        return out, False

    return tx.run(work, s)


def get_order(sess: Session, order_id: str, buyer_id: str) -> dict:
    """An order of this buyer; anyone else's (or a missing one) is the same 404."""
    row = sess.get(OrderRow, order_id) if isinstance(order_id, str) and len(order_id) <= 40 else None
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
    row = (
        sess.get(EntitlementRow, entitlement_id)
        if isinstance(entitlement_id, str) and len(entitlement_id) <= 40
        else None
    )
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


def example_prices(row_schedule: dict) -> dict[str, str]:
    """Prices of a few round token counts, for cards."""
    sched = PriceSchedule.from_dict(row_schedule)
    return {f"{n:,}": format_amount(sched.price(n), sched.currency) for n in (10**6, 10**8, 10**9)}


__all__ = [
    "CURRENCIES",
    "Entitlement",
    "QuoteExpired",
    "create_quote",
    "entitlement_selection",
    "example_prices",
    "format_rate",
    "get_entitlement",
    "get_listing",
    "get_order",
    "get_quote",
    "list_orders",
    "listing_detail",
    "place_order",
    "publish",
    "record_draw",
    "register_price_suggester",
    "search",
    "suggested_rate",
]
