"""``ciyuan mcp``: a Model Context Protocol server (the official ``mcp`` SDK) over the exchange.

Tools: ``search_catalog``, ``describe_listing``, ``retrieve`` and ``sparql``. The last two are metered
calls (:mod:`ciyuan.delivery.calls`) billed to the buyer whose API key the server was given: on
stdio the key comes from ``--key`` or ``CIYUAN_KEY`` (checked at start); over streamable HTTP every
request carries its own ``Authorization: Bearer <key>`` (a request without a valid key gets 401
before it reaches MCP). Every tool result carries ``usage`` (free tools say ``billed: false``).
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.delivery import calls
from ciyuan.errors import CiyuanError
from ciyuan.market import catalog, listings
from ciyuan.market.accounts import Principal, authenticate

INSTRUCTIONS = (
    "ciyuan (词元) data exchange. search_catalog finds listings (knowledge graphs: modality graph; knowledge "
    "bases: text); describe_listing shows one and what is left of your call budget; retrieve returns the best "
    "chunks for a question; sparql runs a read-only SPARQL query on a graph listing. retrieve and sparql are "
    "billed per returned token from an entitlement you bought; pass an idempotency_key to retry safely."
)
FREE = {"billed": False, "tokens": 0, "amount": 0}


def _principal(s: Settings, secret: str | None) -> Principal:
    p = tx.read(lambda sess: authenticate(sess, secret), s)
    p.require(roles=("buyer",), scope="delivery:read")
    return p


def _bearer(headers: Any) -> str | None:
    value = headers.get("authorization") if headers is not None else None
    if value and value.lower().startswith("bearer "):
        return value[7:].strip()
    return None


def _fail(exc: CiyuanError) -> ToolError:
    return ToolError(json.dumps({"error": exc.to_dict()}, ensure_ascii=False))


def build(s: Settings | None = None, key: str | None = None) -> MCPServer:
    """The server; ``key`` is the buyer's API key for stdio (HTTP requests bring their own)."""
    s = s or settings()
    fixed = _principal(s, key) if key else None
    mcp = MCPServer("ciyuan", instructions=INSTRUCTIONS, version="1")

    def who(ctx: Context) -> Principal:
        req = getattr(ctx.request_context, "request", None)
        secret = _bearer(getattr(req, "headers", None))
        if secret:
            return _principal(s, secret)
        if fixed is not None:
            return fixed
        raise _fail(CiyuanError("no API key", hint="start `ciyuan mcp --key` (or set CIYUAN_KEY), or send "
                                "'Authorization: Bearer <key>'", code="unauthenticated", status=401))

    async def run(fn, *args, **kw) -> dict:
        try:
            return await anyio.to_thread.run_sync(lambda: fn(*args, **kw))
        except CiyuanError as exc:
            raise _fail(exc) from None

    @mcp.tool(description="Search the catalog of listings by words, modality (text, graph, image...) and language.")
    async def search_catalog(ctx: Context, query: str = "", modality: str | None = None,
                             language: str | None = None, limit: int = 10) -> dict:
        who(ctx)

        def find() -> dict:
            page = tx.read(lambda sess: catalog.search(sess, q=query or None, modality=modality, language=language,
                                                       limit=max(1, min(limit, 50))), s)
            items = [{k: it.get(k) for k in ("id", "dataset", "title", "description", "modality", "modalities",
                                              "languages", "tokens", "records", "price_per_mtok", "currency")
                      if k in it} for it in page["items"]]
            return {"items": items, "total": page.get("total", len(items)), "usage": FREE}

        return await run(find)

    @mcp.tool(description="Describe one listing: dataset, schedule, price, tokens, and your call budget on it.")
    async def describe_listing(ctx: Context, listing_id: str) -> dict:
        p = who(ctx)

        def describe() -> dict:
            d = tx.read(lambda sess: listings.listing_detail(sess, listing_id), s)
            try:
                plan_ = calls.resolve_plan(p.account.id, listing_id, None, s)
                budget = tx.read(lambda sess: calls.budget(sess, plan_), s)
            except CiyuanError as exc:
                budget = {"error": exc.to_dict()}
            return {"listing": json.loads(json.dumps(d, default=str)), "budget": budget, "usage": FREE}

        return await run(describe)

    @mcp.tool(description="The best chunks (or a graph's subjects with their triples) for a question, "
                          "within max_tokens; billed per returned token.")
    async def retrieve(ctx: Context, listing_id: str, query: str, top_k: int = 5, max_tokens: int = 2048,
                       idempotency_key: str | None = None) -> dict:
        p = who(ctx)
        return await run(calls.retrieve_call, p.account.id, listing_id, query, top_k=top_k, max_tokens=max_tokens,
                         idempotency_key=idempotency_key, s=s)

    @mcp.tool(description="A read-only SPARQL 1.1 query (SELECT, ASK, CONSTRUCT, DESCRIBE) on a graph listing; "
                          "SPARQL JSON or N-Triples; billed per returned token.")
    async def sparql(ctx: Context, listing_id: str, query: str, max_rows: int = 100, max_tokens: int = 2048,
                     timeout_s: float = 10.0, idempotency_key: str | None = None) -> dict:
        p = who(ctx)
        return await run(calls.sparql_call, p.account.id, listing_id, query, max_rows=max_rows, timeout_s=timeout_s,
                         max_tokens=max_tokens, idempotency_key=idempotency_key, s=s)

    return mcp


def http_app(s: Settings | None = None, *, path: str = "/mcp"):
    """The streamable-HTTP app, behind a check that every request carries a valid buyer key."""
    s = s or settings()
    inner = build(s).streamable_http_app(streamable_http_path=path, stateless_http=True, json_response=True)

    async def app(scope, receive, send):
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
            try:
                await anyio.to_thread.run_sync(lambda: _principal(s, _bearer(headers)))
            except CiyuanError as exc:
                body = json.dumps({"error": exc.to_dict()}).encode()
                await send({"type": "http.response.start", "status": exc.status if exc.status < 500 else 401,
                            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")]})
                await send({"type": "http.response.body", "body": body})
                return
        await inner(scope, receive, send)

    return app
