"""Quotes, orders and entitlements for buyers; each is readable by its owner only."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response

from ciyuan.api.auth import app_settings, requires
from ciyuan.api.errors import responses
from ciyuan.api.schemas import ID, EntitlementOut, OrderIn, OrderOut, QuoteIn, QuoteOut
from ciyuan.db import tx
from ciyuan.market import orders, quotes
from ciyuan.market.accounts import Principal

router = APIRouter(tags=["market"])
BUYER = ("buyer",)


@router.post("/quotes", response_model=QuoteOut, status_code=201, responses=responses(401, 403, 404))
def create_quote(
    request: Request, body: QuoteIn, who: Principal = Depends(requires(roles=BUYER, scope="quotes:write"))
) -> dict:
    """Exact tokens and price of a selection of a listing; valid until ``expires_at``."""
    sel = body.selection.model_dump() if body.selection else None
    return quotes.create_quote(who.account.id, body.listing_id, sel, s=app_settings(request))


@router.get("/quotes/{quote_id}", response_model=QuoteOut, responses=responses(401, 403, 404))
def get_quote(
    request: Request,
    quote_id: str = Path(pattern=ID),
    who: Principal = Depends(requires(roles=BUYER, scope="quotes:write")),
) -> dict:
    return tx.run(lambda s: quotes.get_quote(s, quote_id, who.account.id), app_settings(request))


@router.post(
    "/orders",
    response_model=OrderOut,
    status_code=201,
    responses={
        **responses(401, 402, 403, 404, 409, 410),
        200: {"model": OrderOut, "description": "A replay of an earlier order with this key"},
    },
)
def create_order(
    request: Request,
    response: Response,
    body: OrderIn,
    idempotency_key: str = Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="unique per order; a replay returns the same order",
    ),
    who: Principal = Depends(requires(roles=BUYER, scope="orders:write")),
) -> dict:
    """Pay a quote and receive an entitlement to exactly its selection."""
    order, replayed = orders.place_order(who.account.id, body.quote_id, idempotency_key, s=app_settings(request))
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return order


@router.get("/orders", response_model=list[OrderOut], responses=responses(401, 403))
def list_orders(
    request: Request,
    limit: int = Query(50, ge=1, le=200),
    offset: int = Query(0, ge=0, le=10**9),
    who: Principal = Depends(requires(roles=BUYER, scope="orders:read")),
) -> list[dict]:
    return tx.run(lambda s: orders.list_orders(s, who.account.id, limit, offset), app_settings(request))


@router.get("/orders/{order_id}", response_model=OrderOut, responses=responses(401, 403, 404))
def get_order(
    request: Request,
    order_id: str = Path(pattern=ID),
    who: Principal = Depends(requires(roles=BUYER, scope="orders:read")),
) -> dict:
    return tx.run(lambda s: orders.get_order(s, order_id, who.account.id), app_settings(request))


@router.get("/entitlements/{entitlement_id}", response_model=EntitlementOut, responses=responses(401, 403, 404))
def get_entitlement(
    request: Request,
    entitlement_id: str = Path(pattern=ID),
    who: Principal = Depends(requires(roles=BUYER, scope="orders:read")),
) -> dict:
    return tx.run(lambda s: orders.get_entitlement(s, entitlement_id, who.account.id).to_dict(), app_settings(request))
