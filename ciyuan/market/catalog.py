"""The catalog: active listings found by name, facet, currency, price and size, sorted, one page at a time.

Sorting and paging happen here, in one query, so every face (API, web, CLI) shows the same order
and the same pages; ties are broken by the listing id so a page boundary never repeats or skips one.
"""

from __future__ import annotations

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session

from ciyuan.errors import InvalidInput
from ciyuan.market.listings import ACTIVE, listing_dict
from ciyuan.market.tables import ListingRow, ListingTagRow

L = ListingRow
# sort name -> ORDER BY; each ends in the id, so the order is total
SORTS = {
    "newest": (L.created_at.desc(), L.id),
    "price_asc": (L.base_rate_micro, L.dataset, L.id),
    "price_desc": (L.base_rate_micro.desc(), L.dataset.desc(), L.id),
    "tokens_desc": (L.tokens.desc(), L.dataset.desc(), L.id),
    "tokens_asc": (L.tokens, L.dataset, L.id),
    "name": (L.dataset, L.id),
}
FACETS = ("modality", "language", "domain")


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
    sort: str = "newest",
    limit: int = 20,
    offset: int = 0,
) -> dict:
    """Active listings matching every given filter in ``sort`` order (:data:`SORTS`); all values are bound."""
    if not 1 <= limit <= 100 or offset < 0:
        raise InvalidInput("limit must be 1..100 and offset 0 or more", hint="page with offset += limit")
    if sort not in SORTS:
        raise InvalidInput(f"sort {sort!r} is unknown", hint=f"use one of {', '.join(SORTS)}", code="bad_sort")
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
    rows = sess.execute(select(L).where(where).order_by(*SORTS[sort]).limit(limit).offset(offset))
    items = [listing_dict(r, sess) for r in rows.scalars()]
    nxt = offset + limit if offset + limit < total else None
    return {"items": items, "total": total, "limit": limit, "offset": offset, "next_offset": nxt, "sort": sort}


def facet_values(sess: Session) -> dict[str, list[str]]:
    """Every value of each facet (modality, language, domain) among active listings, sorted: the filter menus."""
    rows = sess.execute(
        select(ListingTagRow.facet, ListingTagRow.value)
        .join(L, L.id == ListingTagRow.listing_id)
        .where(L.status == ACTIVE, ListingTagRow.facet.in_(FACETS))
        .distinct()
    )
    out: dict[str, set[str]] = {f: set() for f in FACETS}
    for facet, value in rows:
        out[facet].add(value)
    return {f: sorted(v) for f, v in out.items()}
