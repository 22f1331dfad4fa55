"""The knowledge-base page of a listing: a query box, the chunks it finds, and the call's cost first.

Why a page of its own (``GET /listings/{id}/kb``): the billed call (``POST /v1/listings/{id}/retrieve``)
charges the tokens of the chunks it returns; a buyer should see those chunks and that price before
paying for anything. The page runs the same ``ciyuan.knowledge.retrieval.retrieve`` the API runs,
counts the returned chunks under the listing's token schedule and prices them with the listing's
price schedule (the code quotes use), and bills nothing. It is public, like the listing page, and
works without JavaScript (a GET form). ``GET /listings/{id}/kb/preview`` gives the same answer as
JSON for scripts and the other faces.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from ciyuan.config import Settings
from ciyuan.errors import CiyuanError, InvalidInput

router = APIRouter(include_in_schema=False)


def _top_k(raw: str | None) -> int:
    raw = (raw or "5").strip()
    if not raw.isdigit():
        raise InvalidInput(f"results {raw!r} is not a whole number", hint="give 1 to 100, e.g. 5", code="bad_top_k")
    return int(raw)


def preview(s: Settings, listing_id: str, query: str, top_k: int = 5, mode: str = "hybrid") -> dict:
    """What a retrieve call would return and cost: chunks, their tokens under the listing's schedule, price."""
    from ciyuan.db import tx
    from ciyuan.knowledge.retrieval import retrieve
    from ciyuan.ledger.money import format_amount
    from ciyuan.market.listings import get_listing, listing_schedule
    from ciyuan.tokens import get_schedule

    row = tx.run(lambda sess: get_listing(sess, listing_id), s)
    out = retrieve(s, row.version_id, query, top_k, mode)
    sched = get_schedule(row.schedule)
    counts = sched.count_records([{"id": r["chunk_id"], "modality": sched.modality, "text": r["text"], "meta": {}}
                                  for r in out["results"]]) if out["results"] else []
    for r, n in zip(out["results"], counts, strict=True):
        r["tokens"] = int(n)
    tokens = int(sum(counts))
    price = listing_schedule(row)
    return {**out, "listing": row.id, "schedule": row.schedule, "tokens": tokens, "currency": price.currency,
            "price_minor": price.price(tokens), "price": format_amount(price.price(tokens), price.currency),
            "billed": False}


@router.get("/listings/{listing_id}/kb/preview", response_model=None)
def preview_json(request: Request, listing_id: str) -> Response:
    """The page's answer as JSON (unbilled): ``?q=...&top_k=5&mode=hybrid``."""
    from ciyuan.api.errors import error_response

    q = request.query_params
    try:
        body = preview(request.app.state.settings, listing_id, q.get("q", ""), _top_k(q.get("top_k")),
                       q.get("mode", "hybrid"))
    except CiyuanError as exc:
        return error_response(exc)
    return JSONResponse(body)


@router.get("/listings/{listing_id}/kb", response_class=HTMLResponse)
def kb_page(request: Request, listing_id: str) -> HTMLResponse:
    from ciyuan.web import routes, views

    s = routes._settings(request)
    try:
        data = views.listing_page(s, listing_id)
    except CiyuanError as exc:
        return routes._error(request, exc)
    q = request.query_params
    query, mode = (q.get("q") or "").strip(), q.get("mode", "hybrid")
    answer, error = None, None
    if query:
        try:
            answer = preview(s, listing_id, query, _top_k(q.get("top_k")), mode)
        except CiyuanError as exc:
            error = exc
    retrieval = (data["card"] or {}).get("retrieval") or {}
    return routes.render(request, "kb.html", query=query, mode=mode, top_k=q.get("top_k") or "5", answer=answer,
                         error=error, retrieval=retrieval, **data)
