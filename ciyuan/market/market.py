"""Listings, the catalog, quotes, orders and entitlements: the market on top of the ledger.

* A **listing** offers one immutable version under one token schedule and one price schedule.
  Publishing builds its selection index (see :mod:`ciyuan.market.selection`) and keeps a free
  sample of at most N records.
* A **quote** prices exactly one selection of a listing from the stored per-record token counts
  and names the covered records by a stable selection id; it expires after ``quote_ttl_s``.
* An **order** pays a quote once (``Idempotency-Key``) and creates an **entitlement**: the buyer's
  right to draw exactly the quoted records and tokens. Delivery reads entitlements through
  :func:`get_entitlement`, :func:`entitlement_selection` and :func:`record_draw`.

Listing lifecycle (migration 0006): one *active* listing per provider and version (publishing it
again is a Conflict naming the listing); :func:`change_price` adds a new **price version** (a quote
and the entitlement made from it keep the version they were priced with, see
:func:`entitlement_schedule`); :func:`delist` stops new quotes and orders and hides the listing
from the catalog while existing entitlements keep working; :func:`relist` offers it again.
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
from ciyuan.db import tx
from ciyuan.errors import CiyuanError, Conflict, InvalidInput, NotFound
from ciyuan.ledger import ledger
from ciyuan.ledger.money import CURRENCIES, format_amount, format_rate
from ciyuan.market import selection
from ciyuan.market.accounts import Forbidden, get_account
from ciyuan.market.pricing import PriceSchedule, build_schedule
from ciyuan.market.tables import (
    AccountRow,
    EntitlementRow,
    ListingPriceRow,
    ListingRow,
    ListingTagRow,
    OrderRow,
    QuoteRow,
)

MAX_SAMPLE = 100
SAMPLE_TEXT_CHARS = 4000
ACTIVE, DELISTED = "active", "delisted"


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

    if not isinstance(provider, str) or not provider.strip():
        raise InvalidInput(
            "a provider is required to publish", hint="name the provider account: --provider NAME", code="no_provider"
        )

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
    sched = build_schedule(rate, currency, tiers, mode)  # a bad price is a 422 whether listed or not
    tx.run(lambda sess: _refuse_second_active(sess, provider_id, version.id, version.dataset), s)
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
        _refuse_second_active(sess, provider_id, version.id, version.dataset)  # again, inside the writing unit
        now = datetime.now(UTC)
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
            status=ACTIVE,
            created_at=now,
            price_version=1,
        )
        sess.add(row)
        sess.flush()
        sess.add(_price_row(listing_id, 1, sched, now))
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
        "price_version": row.price_version,
        "created_at": _aware(row.created_at),
        "delisted_at": _aware(row.delisted_at),
    }
    if detail:
        out["card"] = card
        out["sample"] = json.loads(row.sample)
        out["price_history"] = price_history(sess, row.id)
    return out


def get_listing(sess: Session, listing_id: str) -> ListingRow:
    row = sess.get(ListingRow, listing_id) if isinstance(listing_id, str) and len(listing_id) <= 40 else None
    if row is None:
        raise NotFound(f"listing {listing_id} does not exist", hint="search the catalog: GET /v1/listings")
    if row.status != ACTIVE:
        raise NotFound(
            f"listing {listing_id} was delisted by its provider and takes no new quotes or orders",
            hint="search the catalog for other listings: GET /v1/listings",
            code="listing_delisted",
        )
    return row


# -- listing lifecycle -----------------------------------------------------------------------------


def _price_row(listing_id: str, version: int, sched: PriceSchedule, at: datetime) -> ListingPriceRow:
    return ListingPriceRow(
        listing_id=listing_id,
        version=version,
        currency=sched.currency,
        price_schedule=json.dumps(sched.to_dict()),
        base_rate_micro=int(sched.base_rate * 10**6),
        created_at=at,
    )


def _refuse_second_active(sess: Session, provider_id: str, version_id: str, dataset: str,
                          except_id: str | None = None) -> None:  # fmt: skip
    """One active listing per provider and version: a second one would split buyers over several prices."""
    q = select(ListingRow.id).where(
        ListingRow.provider_id == provider_id, ListingRow.version_id == version_id, ListingRow.status == ACTIVE
    )
    if except_id is not None:
        q = q.where(ListingRow.id != except_id)
    existing = sess.execute(q).scalars().first()
    if existing is not None:
        raise Conflict(
            f"version {dataset}@{version_id[:12]} is already listed by this provider as {existing}",
            hint=f"change its price instead: ciyuan listing price {existing} --price-per-mtok AMOUNT "
            f"(POST /v1/listings/{existing}/prices), or delist it first",
            code="already_listed",
        )


def _owned(sess: Session, listing_id: str, actor: str | None, lock: bool = True) -> ListingRow:
    """The listing if ``actor`` (an account name or id) is its provider or the operator; 404 otherwise.

    ``actor=None`` is the local CLI, which runs with the database's own rights (like ``ledger deposit``).
    """
    acc = get_account(sess, actor) if actor is not None else None
    row = (
        sess.get(ListingRow, listing_id, with_for_update=lock, populate_existing=lock)
        if isinstance(listing_id, str) and len(listing_id) <= 40
        else None
    )
    if row is None or (acc is not None and acc.role != "operator" and row.provider_id != acc.id):
        raise NotFound(
            f"listing {listing_id} does not exist or is not yours",
            hint="list your listings: ciyuan listing list (GET /v1/provider/listings)",
        )
    return row


def own_listing(sess: Session, listing_id: str, actor: str | None) -> dict:
    """A listing as its provider sees it, delisted or not, with its price history."""
    return _listing_dict(_owned(sess, listing_id, actor, lock=False), sess, detail=True)


def price_history(sess: Session, listing_id: str) -> list[dict]:
    """Every price version of a listing, oldest first (version, base rate, schedule, since when)."""
    rows = sess.execute(
        select(ListingPriceRow).where(ListingPriceRow.listing_id == listing_id).order_by(ListingPriceRow.version)
    ).scalars()
    out = []
    for r in rows:
        sched = json.loads(r.price_schedule)
        out.append({
            "version": r.version, "currency": r.currency, "price_per_mtok": sched["tiers"][0]["price_per_mtok"],
            "price": sched, "created_at": _aware(r.created_at),
        })  # fmt: skip
    return out


def price_schedule_of(sess: Session, listing_id: str, version: int) -> PriceSchedule:
    """The schedule of one price version (what a quote of that version was priced with)."""
    row = sess.execute(
        select(ListingPriceRow).where(ListingPriceRow.listing_id == listing_id, ListingPriceRow.version == version)
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"listing {listing_id} has no price version {version}", hint="see its price history")
    return PriceSchedule.from_dict(json.loads(row.price_schedule))


def entitlement_schedule(sess: Session, ent: Entitlement) -> PriceSchedule:
    """The price an entitlement was bought at: its quote's price version, not the listing's current one."""
    return price_schedule_of(sess, ent.listing_id, ent.price_version)


def change_price(
    listing_id: str,
    *,
    actor: str | None,
    price_per_mtok: str,
    tiers: list[dict] | None = None,
    mode: str = "graduated",
    currency: str | None = None,
    s: Settings | None = None,
) -> dict:
    """Give a listing a new price version; quotes already made keep theirs, new quotes use this one."""
    s = s or settings()
    head = tx.run(lambda sess: _owned(sess, listing_id, actor, lock=False), s)
    if currency is not None and currency.strip().upper() != head.currency:
        raise InvalidInput(
            f"listing {listing_id} is priced in {head.currency}; a price change cannot change the currency to "
            f"{currency.strip().upper()}",
            hint="publish the version in the other currency as a new listing after delisting this one",
        )
    if str(price_per_mtok).strip().lower() == "suggested":
        from ciyuan.store import resolve

        rate: str | Fraction = suggested_rate(resolve(f"{head.dataset}@{head.version_id}", s), head.schedule,
                                              head.currency)  # fmt: skip
    else:
        rate = price_per_mtok
    sched = build_schedule(rate, head.currency, tiers, mode)

    def work(sess: Session) -> dict:
        row = _owned(sess, listing_id, actor)
        if json.loads(row.price_schedule) == sched.to_dict():
            raise Conflict(
                f"listing {listing_id} already has this price (price version {row.price_version})",
                hint="give a different --price-per-mtok or --tiers",
                code="same_price",
            )
        now = datetime.now(UTC)
        row.price_version += 1
        row.price_schedule = json.dumps(sched.to_dict())
        row.base_rate_micro = int(sched.base_rate * 10**6)
        sess.add(_price_row(row.id, row.price_version, sched, now))
        sess.flush()
        return _listing_dict(row, sess, detail=True)

    return tx.run(work, s)


def delist(listing_id: str, *, actor: str | None, s: Settings | None = None) -> dict:
    """Stop offering a listing: no new quotes or orders, gone from the catalog; entitlements keep working."""

    def work(sess: Session) -> dict:
        row = _owned(sess, listing_id, actor)
        if row.status != ACTIVE:
            raise Conflict(f"listing {listing_id} is already delisted", hint=f"relist it: ciyuan listing relist "
                           f"{listing_id}", code="already_delisted")  # fmt: skip
        row.status, row.delisted_at = DELISTED, datetime.now(UTC)
        sess.flush()
        return _listing_dict(row, sess, detail=True)

    return tx.run(work, s or settings())


def relist(listing_id: str, *, actor: str | None, s: Settings | None = None) -> dict:
    """Offer a delisted listing again at its current price version (unless the version was listed again)."""

    def work(sess: Session) -> dict:
        row = _owned(sess, listing_id, actor)
        if row.status == ACTIVE:
            raise Conflict(f"listing {listing_id} is already active", hint="nothing to do", code="already_active")
        _refuse_second_active(sess, row.provider_id, row.version_id, row.dataset, except_id=row.id)
        row.status, row.delisted_at = ACTIVE, None
        sess.flush()
        return _listing_dict(row, sess, detail=True)

    return tx.run(work, s or settings())


def provider_listings(sess: Session, actor: str | None, status: str | None = None) -> list[dict]:
    """A provider's own listings, delisted ones included (the operator and the local CLI see all), newest first."""
    acc = get_account(sess, actor) if actor is not None else None
    q = select(ListingRow)
    if acc is not None and acc.role != "operator":
        q = q.where(ListingRow.provider_id == acc.id)
    if status is not None:
        if status not in (ACTIVE, DELISTED):
            raise InvalidInput(f"status {status!r} is unknown", hint=f"use {ACTIVE} or {DELISTED}")
        q = q.where(ListingRow.status == status)
    rows = sess.execute(q.order_by(ListingRow.created_at.desc(), ListingRow.id)).scalars()
    return [_listing_dict(r, sess) for r in rows]


def listing_detail(sess: Session, listing_id: str) -> dict:
    return _listing_dict(get_listing(sess, listing_id), sess, detail=True)


def _price_micro(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    from ciyuan.ledger.money import parse_rate

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
    conds = [L.status == ACTIVE]
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


# -- the public Croissant card and the files it names -----------------------------------------------


def sample_parquet(listing_id: str, s: Settings | None = None) -> tuple[bytes, int]:
    """The free sample as Parquet (the card's public ``sample`` file) and its record count.

    Made from the sample stored at publishing, so it holds exactly what the catalog shows, and the
    same bytes every time (the card names their sha256).
    """
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ciyuan.store import resolve
    from ciyuan.store.records import token_column

    s = s or settings()
    row = tx.run(lambda sess: get_listing(sess, listing_id), s)
    recs = json.loads(row.sample)
    tokenizers = list(resolve(f"{row.dataset}@{row.version_id}", s).manifest.get("tokenizers", {}))
    cols: dict[str, pa.Array] = {
        k: pa.array([r.get(k) for r in recs], pa.string()) for k in ("id", "modality", "text", "media_ref")
    }
    cols["meta"] = pa.array([json.dumps(r.get("meta") or {}, ensure_ascii=False, sort_keys=True) for r in recs],
                            pa.string())  # fmt: skip
    for tok in tokenizers:
        cols[token_column(tok)] = pa.array([(r.get("tokens") or {}).get(tok) for r in recs], pa.int64())
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf, compression="zstd")
    return buf.getvalue(), len(recs)


def listing_card(listing_id: str, origin: str, s: Settings | None = None) -> dict:
    """The listing's public Croissant card: shards named at this exchange, plus the free sample.

    Every URL it names answers: ``{origin}/v1/listings/{id}`` (the listing), ``.../sample.parquet``
    (public) and ``.../shards/<file>`` (the full data: 401 without a key, 403 unless entitled, see
    :func:`full_data_shard`).
    """
    from ciyuan.appraise.engine import card  # not `ciyuan.appraise.card`: that name is also a module

    s = s or settings()
    row = tx.run(lambda sess: get_listing(sess, listing_id), s)
    base = f"{origin.rstrip('/')}/v1/listings/{row.id}"
    body, n = sample_parquet(listing_id, s)
    sample = {"url": f"{base}/sample.parquet", "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body),
              "records": n} if n else None  # fmt: skip
    return card(f"{row.dataset}@{row.version_id}", base_url=base, s=s, sample=sample)


def full_data_shard(listing_id: str, name: str, account_id: str, s: Settings | None = None) -> tuple[Any, str]:
    """(version, shard path) if the account may fetch this shard of the listing's full data.

    Allowed: the listing's provider, the operator, and a buyer holding a *paid* entitlement that
    covers every record of the listing (the whole data is already paid for). A metered or partial
    entitlement streams through delivery instead, which bills and limits it; it gets 403 here.
    A delisted listing still serves those who bought it.
    """
    from ciyuan.store import resolve

    s = s or settings()
    ref = tx.run(lambda sess: _full_data_ref(sess, listing_id, account_id), s)
    version = resolve(ref, s)  # after the unit of work: resolve opens its own
    for sh in version.manifest.get("shards", []):
        if sh["path"] == f"shards/{name}":
            return version, sh["path"]
    raise NotFound(f"listing {listing_id} has no shard {name!r}", hint="use the contentUrl values of its card")


def _full_data_ref(sess: Session, listing_id: str, account_id: str) -> str:
    row = sess.get(ListingRow, listing_id) if isinstance(listing_id, str) and len(listing_id) <= 40 else None
    if row is None:
        raise NotFound(f"listing {listing_id} does not exist", hint="search the catalog: GET /v1/listings")
    acc = sess.get(AccountRow, account_id)
    allowed = acc is not None and (acc.role == "operator" or acc.id == row.provider_id)
    if not allowed:
        allowed = sess.execute(
            select(EntitlementRow.id)
            .join(OrderRow, OrderRow.id == EntitlementRow.order_id)
            .where(EntitlementRow.listing_id == row.id, EntitlementRow.buyer_id == account_id,
                   EntitlementRow.records == row.records, OrderRow.status == "paid")  # fmt: skip
        ).first() is not None
    if not allowed:
        raise Forbidden(
            f"the full data of listing {listing_id} is for buyers who paid for all {row.records:,} of its records",
            hint="buy the whole listing (POST /v1/quotes with no filter and no token budget, then POST /v1/orders), "
            "or stream the records of your entitlement: GET /v1/entitlements/{id}/records",
        )
    return f"{row.dataset}@{row.version_id}"


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
        "price_version": row.price_version,
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
            price_version=listing.price_version,  # the price this amount was computed with
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
    price_version: int = 1

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
            r.price_version or 1,
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
        if listing is None or listing.status != ACTIVE:
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
            price_version=quote.price_version,
        )
        sess.add(ent)
        sess.flush()
        out = _order_dict(order, ent)
        if billing == METERED:
            from ciyuan.ledger import audit

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
    "change_price",
    "create_quote",
    "delist",
    "entitlement_schedule",
    "entitlement_selection",
    "example_prices",
    "format_rate",
    "full_data_shard",
    "get_entitlement",
    "get_listing",
    "get_order",
    "get_quote",
    "own_listing",
    "list_orders",
    "listing_card",
    "listing_detail",
    "place_order",
    "price_history",
    "price_schedule_of",
    "provider_listings",
    "publish",
    "record_draw",
    "register_price_suggester",
    "relist",
    "sample_parquet",
    "search",
    "suggested_rate",
]
