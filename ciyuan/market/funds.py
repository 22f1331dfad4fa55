"""Outside money entering the market: deposits, and the rule of who may receive one.

The ledger moves money between any two of its accounts; which *market participant* may be
credited from outside funds is a market rule, kept here once so the API, the CLI and the web
cannot disagree: only buyers get deposits (providers are paid by sales, the operator by fees).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from ciyuan.errors import InvalidInput
from ciyuan.ledger import ledger
from ciyuan.market.accounts import Account, get_account


def deposit_account(sess: Session, account_ref: str) -> Account:
    """The buyer account ``account_ref`` names; any other role is refused with a hint."""
    acc = get_account(sess, account_ref)
    if acc.role != "buyer":
        raise InvalidInput(
            f"{acc.name} is a {acc.role}; deposits go to buyers",
            hint="name a buyer account",
            code="deposit_not_buyer",
        )
    return acc


def deposit(sess: Session, account_ref: str, transfer_id: str, amount: int, currency: str) -> ledger.Transfer:
    """Credit a buyer's balance from outside funds; ``transfer_id`` makes a replay harmless."""
    acc = deposit_account(sess, account_ref)
    return ledger.deposit(sess, transfer_id, acc.id, amount, currency)
