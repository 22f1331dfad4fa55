"""Catalog: public listing search, detail and Croissant card; publishing and the listing lifecycle for providers."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from ciyuan.api.auth import app_settings, principal, requires
from ciyuan.api.errors import responses
from ciyuan.api.schemas import ID, ListingDetail, ListingOut, ListingPage, PriceIn, PublishIn
from ciyuan.db import tx
from ciyuan.market import catalog, listing_files, listings
from ciyuan.market.accounts import Principal

router = APIRouter(tags=["catalog"])


class JSONLDResponse(JSONResponse):
    """JSON-LD: the same body as JSON, but typed so mlcroissant and linked-data tools accept it."""

    media_type = "application/ld+json"


def _json_errors(*codes: int) -> dict[int | str, dict]:
    """``responses(*codes)`` with each error body declared as ``application/json`` explicitly.

    FastAPI documents a ``model=`` response under the route's own media type, which for the card
    route is JSON-LD; errors still leave as plain JSON, so the schema must say so. ``ErrorBody``
    is in the components because every other route here declares it with ``model=``.
    """
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    return {
        code: {"description": entry["description"], "content": {"application/json": {"schema": ref}}}
        for code, entry in responses(*codes).items()
    }


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
    sort: str = Query("newest", pattern="^(" + "|".join(catalog.SORTS) + ")$", description="order of the pages"),
    limit: int = Query(20, ge=1, le=100),
    offset: int = Query(0, ge=0, le=10**9),
) -> dict:
    """Search active listings (public, no key needed), sorted and paged by the catalog."""
    return tx.run(
        lambda s: catalog.search(
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
            sort=sort,
            limit=limit,
            offset=offset,
        ),
        app_settings(request),
    )


@router.get("/listings/{listing_id}", response_model=ListingDetail, responses=responses(404))
def get_listing(request: Request, listing_id: str = Path(pattern=ID)) -> dict:
    """A listing with its card and free sample (public, not billed)."""
    return tx.run(lambda s: listings.listing_detail(s, listing_id), app_settings(request))


@router.get(
    "/listings/{listing_id}/card",
    response_model=None,
    response_class=JSONLDResponse,
    responses={
        200: {
            "description": "Croissant 1.0 JSON-LD with the RAI fields and the token and appraisal facts",
            "content": {"application/ld+json": {"schema": {"type": "object", "additionalProperties": True}}},
        },
        **_json_errors(404),
    },
)
def get_listing_card(request: Request, listing_id: str = Path(pattern=ID)) -> JSONLDResponse:
    """The listed version's Croissant card (public, not billed), as the web page and `ciyuan card` serve it.

    Made by the appraisal layer's ``card`` (not the web module), so the API, the web page and the
    CLI give one card for one version. Its shard URLs are relative to this server's origin.
    """
    base = f"{request.url.scheme}://{request.url.netloc}"
    return JSONLDResponse(listing_files.listing_card(listing_id, base, app_settings(request)))


PARQUET_MEDIA = "application/x-parquet"


@router.get(
    "/listings/{listing_id}/sample.parquet",
    response_model=None,
    responses={200: {"content": {PARQUET_MEDIA: {}}, "description": "the free sample as Parquet"},
               **_json_errors(404)},
)  # fmt: skip
def get_sample_parquet(request: Request, listing_id: str = Path(pattern=ID)) -> Response:
    """The free sample the card names (public, not billed): the same records as the listing's ``sample``."""
    body, _n = listing_files.sample_parquet(listing_id, app_settings(request))
    return Response(body, media_type=PARQUET_MEDIA)


@router.get(
    "/listings/{listing_id}/shards/{name}",
    response_model=None,
    responses={200: {"content": {PARQUET_MEDIA: {}}, "description": "one shard of the full data"},
               **_json_errors(401, 403, 404)},
)  # fmt: skip
def get_shard(
    request: Request,
    listing_id: str = Path(pattern=ID),
    name: str = Path(pattern=r"^[A-Za-z0-9_-]{1,100}\.parquet$"),
    who: Principal = Depends(principal),
) -> StreamingResponse:
    """A shard of the full data the card names: for buyers who paid for every record, and the provider."""
    s = app_settings(request)
    version, rel = listing_files.full_data_shard(listing_id, name, who.account.id, s)
    fs, path = version.fs(), version.path(rel)

    def chunks():
        with fs.open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                yield block

    size = fs.size(path)
    return StreamingResponse(chunks(), media_type=PARQUET_MEDIA, headers={"Content-Length": str(size)})


@router.post("/listings", response_model=ListingDetail, status_code=201, responses=responses(401, 403, 404, 409))
def publish(
    request: Request, body: PublishIn, who: Principal = Depends(requires(roles=("provider",), scope="listings:write"))
) -> dict:
    """Publish a version for sale as the calling provider."""
    return listings.publish(
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


# -- listing lifecycle (the listing's own provider, or the operator; anyone else gets 404) ---------

PROVIDER = ("provider", "operator")


@router.get("/provider/listings", response_model=list[ListingOut], responses=responses(401, 403))
def my_listings(
    request: Request,
    status: str | None = Query(None, pattern="^(active|delisted)$"),
    who: Principal = Depends(requires(roles=PROVIDER, scope="listings:write")),
) -> list[dict]:
    """The calling provider's listings, delisted ones included, with their current price version."""
    return tx.run(lambda s: listings.provider_listings(s, who.account.id, status), app_settings(request))


@router.post(
    "/listings/{listing_id}/prices", response_model=ListingDetail, status_code=201,
    responses=responses(401, 403, 404, 409),
)  # fmt: skip
def change_price(
    request: Request,
    body: PriceIn,
    listing_id: str = Path(pattern=ID),
    who: Principal = Depends(requires(roles=PROVIDER, scope="listings:write")),
) -> dict:
    """A new price version: quotes made before keep the price they were made with; new quotes use this one."""
    return listings.change_price(
        listing_id,
        actor=who.account.id,
        price_per_mtok=body.price_per_mtok,
        tiers=[x.model_dump() for x in body.tiers],
        mode=body.mode,
        s=app_settings(request),
    )


@router.post("/listings/{listing_id}/delist", response_model=ListingDetail, responses=responses(401, 403, 404, 409))
def delist(
    request: Request,
    listing_id: str = Path(pattern=ID),
    who: Principal = Depends(requires(roles=PROVIDER, scope="listings:write")),
) -> dict:
    """Stop new quotes and orders and hide the listing from the catalog; entitlements keep working."""
    return listings.delist(listing_id, actor=who.account.id, s=app_settings(request))


@router.post("/listings/{listing_id}/relist", response_model=ListingDetail, responses=responses(401, 403, 404, 409))
def relist(
    request: Request,
    listing_id: str = Path(pattern=ID),
    who: Principal = Depends(requires(roles=PROVIDER, scope="listings:write")),
) -> dict:
    """Offer a delisted listing again at its current price version."""
    return listings.relist(listing_id, actor=who.account.id, s=app_settings(request))
