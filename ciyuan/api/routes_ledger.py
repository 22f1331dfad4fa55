"""Ledger: balances for every account, deposits and the consistency check for the operator."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, Request

from ciyuan.api.auth import app_settings, principal, requires
from ciyuan.api.errors import responses
from ciyuan.api.schemas import AccountOut, BalanceOut, CheckOut, DepositIn, MeOut, TransferOut
from ciyuan.db import tx
from ciyuan.ledger import ledger
from ciyuan.ledger.money import parse_amount
from ciyuan.market import funds
from ciyuan.market.accounts import Principal, balances_owner

router = APIRouter(tags=["ledger"])


@router.get("/me", response_model=MeOut, responses=responses(401))
def me(request: Request, who: Principal = Depends(principal)) -> dict:
    """The calling account, its key's scopes and its balances."""
    bals = tx.run(lambda s: ledger.balances(s, who.account.id), app_settings(request))
    return {
        "account": AccountOut(**who.account.to_dict()),
        "key_id": who.key_id,
        "scopes": sorted(who.scopes),
        "balances": [b.to_dict() for b in bals],
    }


@router.get("/ledger/balances", response_model=list[BalanceOut], responses=responses(401, 403))
def balances(request: Request, who: Principal = Depends(requires(scope="ledger:read"))) -> list[dict]:
    """Balances of the calling account (all accounts for the operator)."""
    owner = balances_owner(who.account)
    return [b.to_dict() for b in tx.run(lambda s: ledger.balances(s, owner), app_settings(request))]


@router.post("/ledger/deposits", response_model=TransferOut, status_code=201, responses=responses(401, 403, 404, 409))
def deposit(
    request: Request, body: DepositIn, who: Principal = Depends(requires(roles=("operator",), scope="ledger:write"))
) -> dict:
    """Credit a buyer's balance from outside funds (operator only); ``transfer_id`` makes it replayable."""
    amount = parse_amount(body.amount, body.currency)
    tid = body.transfer_id or "deposit:" + secrets.token_hex(10)

    return tx.run(lambda s: funds.deposit(s, body.account, tid, amount, body.currency).to_dict(),
                  app_settings(request))


@router.get("/ledger/check", response_model=CheckOut, responses=responses(401, 403))
def check(request: Request, who: Principal = Depends(requires(roles=("operator",), scope="ledger:read"))) -> dict:
    """Recompute every balance from the transfers and list any difference."""
    return tx.run(ledger.check, app_settings(request))
