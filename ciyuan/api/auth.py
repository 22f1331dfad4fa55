"""Bearer-key authentication: every route but the public catalog reads depends on :func:`principal`."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from ciyuan.config import Settings
from ciyuan.db import tx
from ciyuan.market.accounts import Principal, authenticate

PRINCIPAL_STATE = "ciyuan_principal"  # request.state attribute where the limits middleware leaves the principal

bearer = HTTPBearer(auto_error=False, description="An API key from `ciyuan key create`")


def app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def principal(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(bearer)) -> Principal:
    """The caller. For a request with a body :mod:`ciyuan.api.limits` checked the key before reading it: reuse that.

    Async, so that a principal found already costs no trip through the thread pool; only a
    lookup goes there.
    """
    found = getattr(request.state, PRINCIPAL_STATE, None)
    if isinstance(found, Principal):
        return found
    s = app_settings(request)
    secret = creds.credentials if creds is not None and creds.scheme.lower() == "bearer" else None
    return await run_in_threadpool(tx.read, lambda sess: authenticate(sess, secret), s)


def requires(*, roles: tuple[str, ...] = (), scope: str | None = None) -> Callable[..., Principal]:
    """A dependency: the caller's principal, after checking its role and scope (403 otherwise)."""

    async def dep(p: Principal = Depends(principal)) -> Principal:  # no I/O: no thread pool
        p.require(roles=roles, scope=scope)
        return p

    return dep
