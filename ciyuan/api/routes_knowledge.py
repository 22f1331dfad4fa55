"""Query APIs of knowledge listings: SPARQL on graphs, retrieval on knowledge bases and graphs, metered per
returned token (:mod:`ciyuan.delivery.calls`).

Each answer is JSON with the result and its ``usage`` (tokens, cap, amount, call id, whether it was a
replay); the same figures travel in ``Ciyuan-*`` headers. ``Accept: application/sparql-results+json``
(SELECT/ASK) or ``application/n-triples`` (CONSTRUCT/DESCRIBE) gets the bare SPARQL result instead,
usage in the headers only. An ``Idempotency-Key`` header makes a retry return the first answer unbilled.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Header, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from ciyuan.api.auth import app_settings, requires
from ciyuan.api.errors import responses
from ciyuan.api.schemas import ID
from ciyuan.delivery import calls
from ciyuan.market.accounts import Principal

router = APIRouter(tags=["knowledge"])
BUYER = ("buyer",)
KEY = Header(None, alias="Idempotency-Key", min_length=1, max_length=200,
             description="a retry with the same key returns the first answer and is not billed again")
RAW = {"application/sparql-results+json", "application/n-triples"}


class SparqlIn(BaseModel):
    query: str = Field(min_length=1, max_length=100_000, description="SELECT, ASK, CONSTRUCT or DESCRIBE")
    max_rows: int = Field(1000, ge=1, le=100_000, description="rows (or triples) at most")
    max_tokens: int = Field(calls.DEFAULT_MAX_TOKENS, ge=1, le=calls.MAX_MAX_TOKENS,
                            description="the call's token cap: reserved first, only what is returned is billed")
    timeout_s: float = Field(10.0, gt=0, le=300, description="the query is stopped past this")
    entitlement_id: str | None = Field(None, pattern=ID, description="which entitlement pays; default your newest")


class RetrieveIn(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    top_k: int = Field(5, ge=1, le=100)
    max_tokens: int = Field(calls.DEFAULT_MAX_TOKENS, ge=1, le=calls.MAX_MAX_TOKENS)
    mode: str = Field("hybrid", pattern="^(hybrid|bm25|vector)$")
    entitlement_id: str | None = Field(None, pattern=ID)


def usage_headers(out: dict) -> dict[str, str]:
    u = out["usage"]
    return {"Ciyuan-Call-Id": u["call_id"], "Ciyuan-Tokens": str(u["tokens"]),
            "Ciyuan-Cap-Tokens": str(u["cap_tokens"]),
            "Ciyuan-Amount": str(u["amount"]), "Ciyuan-Currency": u["currency"],
            "Ciyuan-Entitlement": u["entitlement_id"], "Idempotent-Replayed": "true" if u["replayed"] else "false"}


@router.post("/listings/{listing_id}/sparql", responses=responses(401, 402, 403, 404, 408, 409))
def sparql(
    request: Request,
    body: SparqlIn,
    listing_id: str = Path(pattern=ID),
    idempotency_key: str | None = KEY,
    who: Principal = Depends(requires(roles=BUYER, scope="delivery:read")),
) -> Response:
    """A read-only SPARQL query on a graph listing, billed for the tokens of the rows it returns."""
    out = calls.sparql_call(who.account.id, listing_id, body.query, max_rows=body.max_rows,
                            timeout_s=body.timeout_s, idempotency_key=idempotency_key,
                            entitlement_id=body.entitlement_id, max_tokens=body.max_tokens, s=app_settings(request))
    headers = usage_headers(out)
    accept = request.headers.get("accept", "").split(";")[0].strip().lower()
    if accept in RAW:
        if out["media_type"] != accept:
            headers["Ciyuan-Note"] = f"this query's result is {out['media_type']}"
        body_ = out["result"] if isinstance(out["result"], str) else json.dumps(out["result"], ensure_ascii=False)
        return Response(body_, media_type=out["media_type"], headers=headers)
    return JSONResponse(out, headers=headers)


@router.post("/listings/{listing_id}/retrieve", responses=responses(401, 402, 403, 404, 409))
def retrieve(
    request: Request,
    body: RetrieveIn,
    listing_id: str = Path(pattern=ID),
    idempotency_key: str | None = KEY,
    who: Principal = Depends(requires(roles=BUYER, scope="delivery:read")),
) -> JSONResponse:
    """The best chunks (or graph records: a subject's triples) for a query, within ``max_tokens``."""
    out = calls.retrieve_call(who.account.id, listing_id, body.query, top_k=body.top_k, mode=body.mode,
                              idempotency_key=idempotency_key, entitlement_id=body.entitlement_id,
                              max_tokens=body.max_tokens, s=app_settings(request))
    return JSONResponse(out, headers=usage_headers(out))
