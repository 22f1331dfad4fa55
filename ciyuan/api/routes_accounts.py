"""Accounts and API keys over HTTP, for the operator (the CLI does the same locally)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Request

from ciyuan.api.auth import app_settings, requires
from ciyuan.api.errors import responses
from ciyuan.api.schemas import ID, AccountIn, AccountOut, KeyIn, KeyOut, NewKeyOut
from ciyuan.db import tx
from ciyuan.market import accounts
from ciyuan.market.accounts import Principal

router = APIRouter(tags=["accounts"])
OPERATOR = requires(roles=("operator",))


@router.post("/accounts", response_model=AccountOut, status_code=201, responses=responses(401, 403, 409))
def create_account(request: Request, body: AccountIn, who: Principal = Depends(OPERATOR)) -> dict:
    return tx.run(lambda s: accounts.create_account(s, body.name, body.role).to_dict(), app_settings(request))


@router.post("/keys", response_model=NewKeyOut, status_code=201, responses=responses(401, 403, 404))
def create_key(request: Request, body: KeyIn, who: Principal = Depends(OPERATOR)) -> dict:
    """A new key; the secret is in this response only."""
    expires = accounts.parse_expiry(body.expires)

    def work(s):
        info, secret = accounts.create_key(s, body.account, body.scopes, expires)
        return {**info, "key": secret}

    return tx.run(work, app_settings(request))


@router.delete("/keys/{key_id}", response_model=KeyOut, responses=responses(401, 403, 404, 409))
def revoke_key(request: Request, key_id: str = Path(pattern=ID), who: Principal = Depends(OPERATOR)) -> dict:
    """Revoke a key at once; the last active operator key is refused (409) so operators cannot lock themselves out."""
    return tx.run(lambda s: accounts.revoke_key(s, key_id), app_settings(request))
