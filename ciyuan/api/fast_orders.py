"""The hot path of ``POST /v1/orders``: a plain, small order request answered in at most one thread-pool trip.

Paying a quote is the exchange's busiest request, and most of its server CPU went to the
framework around it rather than to the order: the route table, dependency solving, four hops
through the thread pool (the key check, two dependencies, the endpoint) and the response model.
This ASGI middleware takes only the requests whose full handling is known in advance:

* ``POST /v1/orders``, a ``Content-Length`` of at most :data:`MAX_BODY` bytes, no
  ``Transfer-Encoding``, ``Content-Type: application/json``, an ``Authorization`` header and an
  ``Idempotency-Key`` of 1 to 200 characters;
* a body that is exactly ``{"quote_id": <id>}`` (an id as :data:`ciyuan.db.ids.ID_PATTERN`).

For those it does, in one thread-pool call (none for a key it verified lately, below) and in the
same order as the full path, what the full path does: the key check of :mod:`ciyuan.api.limits`
(same 401), the route's role and scope (same 403), the order through
:func:`ciyuan.market.order_group.submit_order` (the answer :func:`~ciyuan.market.orders.place_order`
gives, committed together with the worker's concurrent orders), and the response through the
route's ``OrderOut`` model (same bytes, ``201`` or ``200`` with ``Idempotent-Replayed: true``). Errors
leave as :mod:`ciyuan.api.errors` renders them. Any other request, including every malformed
one, goes on to the app unchanged (with the body it sent), so validation, limits and their error
bodies stay in one place. The route itself stays declared (and documented) in
:mod:`ciyuan.api.routes_market`.

A key this worker verified (and found to carry the route's role and scope) is remembered for
:data:`KEY_TTL` seconds by the sha256 of its secret, so the next orders with it skip the separate
key lookup: such an order is queued for its worker's group commit straight from the event loop
(:func:`~ciyuan.market.order_group.submit_order_async`) and its answer awaited there, with no thread
waiting for it. Revocation and expiry are still honoured on every order: the order's unit of work
re-reads the key row (``key_id=...``) and a revoked, expired or deleted key is the same 401 as the
key check gives, with nothing written, and drops the entry.
Role and scopes are fixed for a key's life, so what the cache skips cannot have changed.
"""

from __future__ import annotations

import json
import re
import time

from fastapi import FastAPI
from pydantic import TypeAdapter
from sqlalchemy.exc import DataError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ciyuan.api.auth import PRINCIPAL_STATE
from ciyuan.api.errors import data_error_body, error_response
from ciyuan.api.limits import LimitsMiddleware, _error
from ciyuan.api.schemas import OrderOut
from ciyuan.config import Settings
from ciyuan.db.ids import ID_PATTERN
from ciyuan.errors import CiyuanError
from ciyuan.market import order_group
from ciyuan.market.accounts import Principal, Unauthenticated, hash_key

MAX_BODY = 1024  # an order body is {"quote_id": "..."}: anything larger takes the full path
PATH = "/v1/orders"
ROLES, SCOPE = ("buyer",), "orders:write"  # as the route declares (routes_market.create_order)
_ID = re.compile(ID_PATTERN)
_OUT = TypeAdapter(OrderOut)
KEY_TTL = 5.0  # seconds a verified key skips the lookup (its revocation is re-read by each order anyway)
KEY_CACHE_MAX = 10_000  # entries per worker; the cache is emptied when full
_keys: dict[str, tuple[Principal, float]] = {}  # sha256 of the secret -> (principal, monotonic deadline)


def _secret(headers: Headers) -> str:
    scheme, _, secret = (headers.get("authorization") or "").partition(" ")  # as HTTPBearer splits it
    return secret if scheme.lower() == "bearer" else ""


def _refusal(failure: CiyuanError) -> list[Message]:
    """The limits middleware's refusal of a key, byte for byte."""
    status = failure.status if 400 <= failure.status < 500 else 400
    extra = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return _error(status, failure.code, failure.message, failure.hint, close=False, extra=extra)


def _plain(body: bytes) -> str | None:
    """The quote id of a body that is exactly ``{"quote_id": <id>}``, else None (the full path decides)."""
    try:
        obj = json.loads(body)
    except ValueError:
        return None
    if type(obj) is not dict or len(obj) != 1:
        return None
    q = obj.get("quote_id")
    return q if type(q) is str and _ID.match(q) else None


def _cached(headers: Headers) -> tuple[str, Principal | None]:
    """The sha256 of the request's key, and its principal if this worker verified it a moment ago."""
    secret = _secret(headers)
    digest = hash_key(secret) if secret else ""
    hit = _keys.get(digest) if digest else None
    return digest, (hit[0] if hit is not None and hit[1] > time.monotonic() else None)


def _respond(digest: str, result: tuple[dict, bool] | BaseException) -> Response | list[Message]:
    """The order's answer, or its refusal, as the full path renders it."""
    if isinstance(result, Unauthenticated):  # revoked, expired or deleted since it was cached
        _keys.pop(digest, None)
        return _refusal(result)
    if isinstance(result, CiyuanError):
        return error_response(result)
    if isinstance(result, DataError):
        return JSONResponse(data_error_body(), status_code=422)
    if isinstance(result, BaseException):
        raise result
    order, replayed = result
    body = _OUT.dump_json(_OUT.validate_python(order))
    if replayed:
        return Response(body, status_code=200, media_type="application/json",
                        headers={"Idempotent-Replayed": "true"})
    return Response(body, status_code=201, media_type="application/json")


def _answer(scope: Scope, headers: Headers, s: Settings, quote_id: str, key: str) -> Response | list[Message]:
    """A key not verified lately: the key check, role and scope, the order, the response, in one thread."""
    digest, _ = _cached(headers)
    failure = LimitsMiddleware._authenticate(scope, headers, s)
    if failure is not None:
        _keys.pop(digest, None)
        return _refusal(failure)
    who: Principal = scope["state"][PRINCIPAL_STATE]
    try:
        who.require(roles=ROLES, scope=SCOPE)
        if len(_keys) >= KEY_CACHE_MAX:  # only keys that pass the route's checks are remembered
            _keys.clear()
        _keys[digest] = (who, time.monotonic() + KEY_TTL)
        result: tuple[dict, bool] | BaseException = order_group.submit_order(who.account.id, quote_id, key, s=s)
    except (CiyuanError, DataError) as exc:
        result = exc
    return _respond(digest, result)


async def _answer_cached(scope: Scope, digest: str, who: Principal, s: Settings, quote_id: str,
                         key: str) -> Response | list[Message]:
    """A key verified lately: nothing to look up first, so the order is queued from the event loop
    and its answer awaited there (no thread-pool trip; the order's unit of work re-reads the key)."""
    scope.setdefault("state", {})[PRINCIPAL_STATE] = who
    try:
        who.require(roles=ROLES, scope=SCOPE)
        result: tuple[dict, bool] | BaseException = await order_group.submit_order_async(
            who.account.id, quote_id, key, s=s, key_id=who.key_id)
    except (CiyuanError, DataError) as exc:
        result = exc
    return _respond(digest, result)


class FastOrders:
    """See the module docstring. Installed outside :class:`~ciyuan.api.limits.LimitsMiddleware`."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != PATH:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length") or ""
        key = headers.get("idempotency-key")
        ctype = (headers.get("content-type") or "").strip().lower()
        if (not length.isdigit() or int(length) > MAX_BODY or "transfer-encoding" in headers
                or ctype != "application/json" or "authorization" not in headers
                or key is None or not 1 <= len(key) <= 200):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # the client went away
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False) or sum(map(len, chunks)) > MAX_BODY:
                break
        body = b"".join(chunks)
        quote_id = _plain(body) if len(body) <= MAX_BODY and not msg.get("more_body", False) else None
        if quote_id is None:  # the full path, with the body as it came
            replay: list[Message] = [{"type": "http.request", "body": body, "more_body": msg.get("more_body", False)}]

            async def again() -> Message:
                return replay.pop() if replay else await receive()

            await self.app(scope, again, send)
            return
        s: Settings = scope["app"].state.settings
        digest, who = _cached(headers)
        if who is not None:
            out = await _answer_cached(scope, digest, who, s, quote_id, key)
        else:
            out = await run_in_threadpool(_answer, scope, headers, s, quote_id, key)
        if isinstance(out, list):
            for m in out:
                await send(m)
        else:
            await out(scope, receive, send)


def install(app: FastAPI) -> None:
    """Add the middleware; call it after :func:`ciyuan.api.limits.install` so it runs first."""
    app.add_middleware(FastOrders)
