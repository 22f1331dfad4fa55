"""Limits before work: one ASGI middleware that refuses a bad request before the app spends memory on it.

In order, for every HTTP request with a body, when the app first asks for it (routing is done by then,
no body byte has been taken from the server yet):

1. **Authentication first.** A route that depends on :func:`ciyuan.api.auth.principal` gets its
   bearer key checked here, before one byte of the body is read; a missing or bad key is a 401
   at once (a 1 GiB POST without a key used to be read and parsed first). The principal found is
   kept in the request state, so the route does not look the key up again.
2. **Body size.** A ``Content-Length`` above ``max_body_bytes`` is a 413 without reading; a
   streamed (chunked) body is counted as it arrives and answered 413 the moment it passes the cap.
   Nothing ever holds more than the cap.
3. **Strict JSON.** A JSON body (``application/json`` or ``+json``) is parsed once here and refused
   with 422, naming the field, for what Python's ``json`` would otherwise let through: ``NaN`` and
   ``Infinity`` literals, numbers that overflow a float (``1e400`` became ``inf``), integers
   outside 64 bits, nesting deeper than ``max_json_depth``, text that is not UTF-8, and strings
   with NUL or unpaired surrogates (PostgreSQL cannot store them). Then the app reads the same bytes.

Every refusal is the API's error body ``{"error": {"code", "message", "hint"}}``; when the body was
not read to its end the answer carries ``Connection: close`` so the server drops the rest unread.
"""

from __future__ import annotations

import json
import math
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ciyuan.api.auth import PRINCIPAL_STATE, principal
from ciyuan.config import Settings
from ciyuan.db import tx
from ciyuan.errors import CiyuanError
from ciyuan.market.accounts import authenticate

INT64 = 2**63


class _Refused(Exception):
    """Raised inside the app's ``receive`` after a refusal (401, 413, 422) was sent, to stop the app."""


class _Bad:
    """Stands for a ``NaN``/``Infinity`` literal while parsing, so the walk can say where it was."""

    def __init__(self, name: str):
        self.name = name


def _error(status: int, code: str, message: str, hint: str, *, close: bool, extra: dict | None = None) -> list[Message]:
    body = json.dumps({"error": {"code": code, "message": message, "hint": hint}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    for k, v in (extra or {}).items():
        headers.append((k.lower().encode(), v.encode()))
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


def _depends_on(dep: Dependant, target: Any, seen: set[int]) -> bool:
    if dep.call is target:
        return True
    for sub in dep.dependencies:
        if id(sub) not in seen:
            seen.add(id(sub))
            if _depends_on(sub, target, seen):
                return True
    return False


def _is_json(content_type: str | None) -> bool:
    """The same test FastAPI applies before it parses a body as JSON."""
    if not content_type:
        return False
    main = content_type.split(";", 1)[0].strip().lower()
    return main == "application/json" or (main.startswith("application/") and main.endswith("+json"))


def _where(path: list[str | int]) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "body"


def check_json(body: bytes, max_depth: int) -> str | None:
    """Why a JSON body is refused (naming the field), or None when it is plain, finite, bounded JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"body is not UTF-8 (bad byte at offset {exc.start})"

    def big_int(s: str) -> int | _Bad:
        if len(s.lstrip("-")) > 19:  # checked on the text: a 4000-digit number is never converted
            return _Bad(f"the integer {s[:24]}... is outside 64 bits")
        n = int(s)
        return n if -INT64 <= n < INT64 else _Bad(f"the integer {s} is outside 64 bits")

    try:
        obj = json.loads(text, parse_constant=_Bad, parse_int=big_int)
    except RecursionError:
        return f"body: JSON nested deeper than {max_depth} levels"
    except json.JSONDecodeError as exc:
        return f"body: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    except ValueError as exc:  # anything else the decoder refuses
        return f"body: invalid JSON: {exc}"
    stack: list[tuple[Any, list[str | int]]] = [(obj, [])]
    while stack:
        value, path = stack.pop()
        if len(path) > max_depth:
            return f"{_where(path)}: JSON nested deeper than {max_depth} levels"
        if isinstance(value, _Bad):
            why = value.name if value.name.startswith("the integer") else f"{value.name} is not a JSON number"
            return f"{_where(path)}: {why}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"{_where(path)}: the number is too large (beyond a 64-bit float)"
        if isinstance(value, str):
            if "\x00" in value:
                return f"{_where(path)}: text contains a NUL character"
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return f"{_where(path)}: text contains an unpaired surrogate (e.g. \\ud800)"
        elif isinstance(value, dict):
            for k, v in value.items():
                if "\x00" in k:
                    return f"{_where(path)}: a key contains a NUL character"
                stack.append((v, [*path, k]))
        elif isinstance(value, list):
            stack.extend((v, [*path, i]) for i, v in enumerate(value))
    return None


class LimitsMiddleware:
    """See the module docstring; settings come from ``app.state.settings`` of the app serving the request.

    The checks run when the app first asks for the body (``receive``): routing is done by then, so
    ``scope["route"]`` says whether the route needs a key, yet no body byte has been taken from the
    server. A request without a body passes straight through; a route that never reads its body
    (a 404, say) gets ``Connection: close`` so the server never drains a huge unread body.
    """

    def __init__(self, app: ASGIApp):
        self.app = app
        self._auth_routes: dict[int, bool] = {}

    def _needs_auth(self, scope: Scope) -> bool:
        route = scope.get("route")
        dependant = getattr(route, "dependant", None)
        if not isinstance(dependant, Dependant):
            return False
        key = id(route)
        if key not in self._auth_routes:
            self._auth_routes[key] = _depends_on(dependant, principal, set())
        return self._auth_routes[key]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = (headers.get("content-length") or "").strip()
        if not headers.get("transfer-encoding") and length in ("", "0"):
            await self.app(scope, receive, send)  # no body: nothing to limit
            return
        s: Settings = scope["app"].state.settings
        cap = s.max_body_bytes
        started = responded = checked = done = False
        seen = 0
        buffered: Message | None = None

        async def refuse(status: int, code: str, message: str, hint: str, extra: dict | None = None) -> None:
            nonlocal responded
            responded = True
            for msg in _error(status, code, message, hint, close=not done, extra=extra):
                await send(msg)
            raise _Refused

        async def counted() -> Message:
            nonlocal seen, done
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                done = not msg.get("more_body", False)
                if seen > cap and not started:
                    await refuse(
                        413,
                        "body_too_large",
                        f"the request body passed the limit of {cap:,} bytes",
                        "send a smaller body (the limit is the max_body_bytes setting)",
                    )
            return msg

        async def first_checks() -> Message | None:
            """Key, declared size, strict JSON: in this order, before the app gets a byte."""
            if self._needs_auth(scope):
                failure = await run_in_threadpool(self._authenticate, scope, headers, s)
                if failure is not None:
                    status = failure.status if 400 <= failure.status < 500 else 400
                    extra = {"WWW-Authenticate": "Bearer"} if status == 401 else None
                    await refuse(status, failure.code, failure.message, failure.hint, extra)
            if length.isdigit() and int(length) > cap:
                await refuse(
                    413,
                    "body_too_large",
                    f"the request body is {int(length):,} bytes; the limit is {cap:,}",
                    "send a smaller body (the limit is the max_body_bytes setting)",
                )
            if not _is_json(headers.get("content-type")):
                return None
            chunks: list[bytes] = []
            while True:
                msg = await counted()
                if msg["type"] != "http.request":  # the client went away
                    return msg
                chunks.append(msg.get("body", b""))
                if done:
                    break
            body = b"".join(chunks)
            chunks.clear()
            problem = check_json(body, s.max_json_depth) if body else None
            if problem is not None:
                await refuse(422, "invalid_input", problem, "send plain JSON: finite numbers, UTF-8 text, no NaN")
            return {"type": "http.request", "body": body, "more_body": False}

        async def guarded() -> Message:
            nonlocal checked, buffered
            if not checked and not started:
                checked = True
                buffered = await first_checks()
            if buffered is not None:
                msg, buffered = buffered, None
                return msg
            return await counted()

        async def tracked(msg: Message) -> None:
            nonlocal started
            if responded:  # our refusal went out; whatever the app says after it is dropped
                return
            if msg["type"] == "http.response.start":
                started = True
                if not done:  # the body was not read to its end: close rather than drain it
                    hs = list(msg.get("headers", []))
                    if not any(k.lower() == b"connection" for k, _ in hs):
                        msg = {**msg, "headers": [*hs, (b"connection", b"close")]}
            await send(msg)

        try:
            await self.app(scope, guarded, tracked)
        except Exception:
            if not responded:
                raise

    @staticmethod
    def _authenticate(scope: Scope, headers: Headers, s: Settings) -> CiyuanError | None:
        """Check the bearer key as :func:`ciyuan.api.auth.principal` would; keep the principal for the route."""
        scheme, _, secret = (headers.get("authorization") or "").partition(" ")  # as HTTPBearer splits it
        secret = secret if scheme.lower() == "bearer" else ""
        try:
            who = tx.read(lambda sess: authenticate(sess, secret or None), s)
        except CiyuanError as exc:
            return exc
        scope.setdefault("state", {})[PRINCIPAL_STATE] = who
        return None


def install(app: FastAPI) -> None:
    """Add the middleware (settings are read per request from ``app.state.settings``)."""
    app.add_middleware(LimitsMiddleware)
