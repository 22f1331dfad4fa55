"""Catalog: public listing search and detail; publishing for providers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request

from ciyuan.api.auth import app_settings, requires
from ciyuan.api.errors import responses
from ciyuan.api.schemas import ID, ListingDetail, ListingPage, PublishIn
from ciyuan.exchange import market, tx
from ciyuan.exchange.accounts import Principal

router = APIRouter(tags=["catalog"])


@router.get("/listings", response_model=ListingPage, responses=responses())
def list_listings(
    request: Request,
    q: str | None = Query(None, max_length=200, description="text in the dataset name"),
    modality: str | None = Query(None, max_length=100),
    language: str | None = Query(None, max_length=100, description="e.g. zh"),
    domain: str | None = Query(None, max_length=100),
    currency: str | None = Query(None, min_length=3, max_length=3),
    min_price: str | None = Query(None, max_length=40, description="per million tokens, major units"),
    max_price: str | None = Query(None, max_length=40),
    min_tokens: int | None = Query(None, ge=0, le=10**15),
    max_tokens: int | None = Query(None, ge=0, le=10**15),
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=10**9),
) -> dict:
    """Search active listings (public, no key needed)."""
    return tx.run(
        lambda s: market.search(
            s,
            q=q,
            modality=modality,
            language=language,
            domain=domain,
            currency=currency,
            min_price=min_price,
            max_price=max_price,
            min_tokens=min_tokens,
            max_tokens=max_tokens,
            limit=limit,
            offset=offset,
        ),
        app_settings(request),
    )


@router.get("/listings/{listing_id}", response_model=ListingDetail, responses=responses(404))
def get_listing(request: Request, listing_id: str = Path(pattern=ID)) -> dict:
    """A listing with its card and free sample (public, not billed)."""
    return tx.run(lambda s: market.listing_detail(s, listing_id), app_settings(request))


@router.post("/listings", response_model=ListingDetail, status_code=201, responses=responses(401, 403, 404))
def publish(
    request: Request, body: PublishIn, who: Principal = Depends(requires(roles=("provider",), scope="listings:write"))
) -> dict:
    """Publish a version for sale as the calling provider."""
    return market.publish(
        body.dataset,
        provider=who.account.id,
        price_per_mtok=body.price_per_mtok,
        currency=body.currency,
        schedule=body.schedule,
        tiers=[t.model_dump() for t in body.tiers],
        mode=body.mode,
        license=body.license,
        sample=body.sample,
        s=app_settings(request),
    )
