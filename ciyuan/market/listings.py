"""Listings: publishing a version for sale, its lifecycle, and what the catalog shows of it.

* A **listing** offers one immutable version under one token schedule and one price schedule.
  Publishing builds its selection index (see :mod:`ciyuan.market.selection`) and keeps a free
  sample of at most N records.
* Lifecycle (migration 0006): one *active* listing per provider and version (publishing it again
  is a Conflict naming the listing); :func:`change_price` adds a new **price version** (a quote and
  the entitlement made from it keep the version they were priced with, see
  :func:`price_schedule_of`); :func:`delist` stops new quotes and orders and hides the listing from
  the catalog while existing entitlements keep working; :func:`relist` offers it again.
* ``--price-per-mtok suggested`` asks the appraisal layer below (:mod:`ciyuan.appraise.pricing`).
  The public Croissant card, its free sample file and the full data's shards for entitled buyers
  are in :mod:`ciyuan.market.listing_files`.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from fractions import Fraction
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ciyuan.appraise.pricing import suggest_rate
from ciyuan.clock import aware
from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.db.ids import get_row
from ciyuan.errors import Conflict, InvalidInput, NotFound
from ciyuan.ledger.money import format_amount
from ciyuan.market import selection
from ciyuan.market.accounts import Forbidden, get_account
from ciyuan.market.pricing import PriceSchedule, build_schedule
from ciyuan.market.tables import AccountRow, ListingPriceRow, ListingRow, ListingTagRow

MAX_SAMPLE = 100
SAMPLE_TEXT_CHARS = 4000
ACTIVE, DELISTED = "active", "delisted"


def suggested_rate(version: Any, schedule: str, currency: str) -> Fraction:
    """The appraisal's rate for ``--price-per-mtok suggested``, to the micro unit a listing stores."""
    return Fraction(suggest_rate(version, schedule, currency)).limit_denominator(10**6)


# -- publishing ------------------------------------------------------------------------------------


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
    if schedule is None and version.tokenizers and not version.has_tokens(tokenizer) \
            and version.tokenizers[0] == "ntriples":  # a graph is priced as it was counted at ingest
        tokenizer = version.tokenizers[0]
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
    # retrieval-ready at publish (issue 15): the chunk, BM25 and vector index beside the version,
    # reused when it is already there; a failure stops the publish before any listing is written
    from ciyuan.knowledge.retrieval import ensure_index

    kb = ensure_index(s, version)
    card["retrieval"] = {"index": kb["key"], "chunks": kb["chunks"], "modes": kb["modes"],
                         "chunker": kb["chunker"], "vectors": kb["vectors"], "note": kb["vectors_note"]}

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
        return listing_dict(row, sess, detail=True)

    listing = tx.run(write, s)
    # Listed versions join the catalog's near-duplicate index, so a later appraisal can tell data that
    # is new to the market from a re-listing of someone else's (uniqueness against the catalog).
    from ciyuan.appraise import register_listing

    register_listing(f"{version.dataset}@{version.id}", listing_id, provider_id, s)
    return listing


def listing_schedule(row: ListingRow) -> PriceSchedule:
    return PriceSchedule.from_dict(json.loads(row.price_schedule))


def listing_dict(row: ListingRow, sess: Session, detail: bool = False) -> dict:
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
        "full_price": format_amount(listing_schedule(row).price(row.tokens), row.currency),
        "modalities": sorted(card["facets"].get("modality", {})),
        "languages": sorted(card["facets"].get("language", {})),
        "domains": sorted(card["facets"].get("domain", {})),
        "status": row.status,
        "price_version": row.price_version,
        "created_at": aware(row.created_at),
        "delisted_at": aware(row.delisted_at),
    }
    if detail:
        out["card"] = card
        out["sample"] = json.loads(row.sample)
        out["price_history"] = price_history(sess, row.id)
    return out


def get_listing(sess: Session, listing_id: str) -> ListingRow:
    row = get_row(sess, ListingRow, listing_id)
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
    row = get_row(sess, ListingRow, listing_id, with_for_update=lock, populate_existing=lock)
    if row is None or (acc is not None and acc.role != "operator" and row.provider_id != acc.id):
        raise NotFound(
            f"listing {listing_id} does not exist or is not yours",
            hint="list your listings: ciyuan listing list (GET /v1/provider/listings)",
        )
    return row


def own_listing(sess: Session, listing_id: str, actor: str | None) -> dict:
    """A listing as its provider sees it, delisted or not, with its price history."""
    return listing_dict(_owned(sess, listing_id, actor, lock=False), sess, detail=True)


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
            "price": sched, "created_at": aware(r.created_at),
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
        return listing_dict(row, sess, detail=True)

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
        return listing_dict(row, sess, detail=True)

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
        return listing_dict(row, sess, detail=True)

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
    return [listing_dict(r, sess) for r in rows]


def listing_detail(sess: Session, listing_id: str) -> dict:
    return listing_dict(get_listing(sess, listing_id), sess, detail=True)
