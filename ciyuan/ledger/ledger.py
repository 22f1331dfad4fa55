"""Double-entry ledger in integer minor units, modelled on TigerBeetle's accounts and transfers.

Every transfer debits one account and credits another by the same amount, so posted debits equal
posted credits and pending debits equal pending credits across the ledger at all times. An
account keeps four running totals (debits/credits, pending/posted) that are only a cache: they
are derivable from the transfers, and :func:`check` recomputes and compares them.

Transfers have client-chosen ids and are idempotent: the same id with the same body returns the
stored transfer; the same id with a different body is a :class:`~ciyuan.errors.Conflict`.

Two-phase transfers: a ``pending`` transfer reserves money (a hold); later a ``post`` transfer
settles it for at most the held amount, a ``void`` transfer releases it, or it ``expires`` after
its timeout. A buyer's balance account refuses any debit that would take
``debits_posted + debits_pending`` above ``credits_posted``, so pending holds count.

Account kinds: ``buyer_balance`` (per buyer and currency), ``provider_earnings`` (per provider),
``platform_fees`` and ``holds`` (per currency; ``holds`` is the escrow a charge passes through),
and ``operator_funding`` (the outside world that deposits come from; it may go negative).

Shards: ``holds``, ``platform_fees`` and ``provider_earnings`` are each :data:`SHARDS` real
accounts (``<id>`` is shard 0, ``<id>#k`` shard k); a buyer's charges pass through the shard
:func:`shard_of` gives their id, so orders of different buyers rarely wait on one shared row.
Each shard keeps every rule on its own (the escrow balances per shard); :func:`balance` and
:func:`balances` sum the shards, :func:`check` checks each.

Charges: the legs of one charge (buyer -> holds, holds -> provider, holds -> platform fee) carry
``charge_id`` (the buyer leg's id) and ``leg`` (``buyer``, ``provider``, ``fee``).

The ledger is the only writer of money and of its audit events: every transfer it writes and
every hold it expires is queued for the audit chain in the same transaction (``ciyuan.ledger.audit``).

Concurrency: the accounts an operation changes are locked in one ``SELECT ... ORDER BY id FOR
UPDATE`` (no deadlocks between orderings); an operation is a handful of statements (lock, one
multi-row insert, one pipelined account update, one log insert). On SQLite the whole transaction
holds the write lock from ``BEGIN IMMEDIATE``. Functions taking ``sess`` compose inside a caller's
transaction; run them through :func:`ciyuan.db.tx.run` so races retry.

This module is the ledger's public API, gathered from the modules that do one job each:
:mod:`~ciyuan.ledger.accounts` (kinds, ids, shards, creating and locking accounts, the funds rule),
:mod:`~ciyuan.ledger.transfers` (a transfer's legs written with their totals and audit events,
expiry), :mod:`~ciyuan.ledger.batch` (many transfers per unit of work, :func:`submit_transfer`),
:mod:`~ciyuan.ledger.pending` (posting and voiding holds), :mod:`~ciyuan.ledger.operations` (the
market's deposit, charge, hold, capture, release, adopt) and :mod:`~ciyuan.ledger.reading`
(balances, transfers, :func:`check`). Callers import this one: ``from ciyuan.ledger import ledger``.
"""

from __future__ import annotations

from ciyuan.ledger.accounts import (
    BUYER,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    FUNDING,
    HOLDS,
    INT64_MAX,
    KINDS,
    PLATFORM,
    PROVIDER,
    SHARDED,
    SHARDS,
    TOTALS,
    Balance,
    InsufficientFunds,
    LedgerOverflow,
    account_id,
    base_account,
    ensure_account,
    ensure_accounts,
    now_utc,
    remember_created,
    shard_account,
    shard_of,
)

# re-exported for ciyuan.market.orders, which locks a buyer's account before its idempotency check
from ciyuan.ledger.accounts import _lock as _lock
from ciyuan.ledger.batch import (
    TransferRequest,
    create_transfers,
    submit_transfer,
)
from ciyuan.ledger.operations import (
    ChargeRequest,
    adopt,
    available_to_hold,
    capture,
    charge,
    charges,
    deposit,
    hold,
    lock_for_charge,
    lock_for_charges,
    release,
    settings_fee_bps,
)
from ciyuan.ledger.pending import (
    post_pending,
    split,
    void_pending,
)
from ciyuan.ledger.reading import (
    balance,
    balances,
    charge_legs,
    check,
    get_transfer,
    transfers,
)
from ciyuan.ledger.transfers import (
    Transfer,
    create_transfer,
    expire_due,
    transfer_event,
)

__all__ = [
    "BUYER",
    "Balance",
    "ChargeRequest",
    "DEBITS_MUST_NOT_EXCEED_CREDITS",
    "FUNDING",
    "HOLDS",
    "INT64_MAX",
    "InsufficientFunds",
    "KINDS",
    "LedgerOverflow",
    "PLATFORM",
    "PROVIDER",
    "SHARDED",
    "SHARDS",
    "TOTALS",
    "Transfer",
    "TransferRequest",
    "account_id",
    "adopt",
    "available_to_hold",
    "balance",
    "balances",
    "base_account",
    "capture",
    "charge",
    "charge_legs",
    "charges",
    "check",
    "create_transfer",
    "create_transfers",
    "deposit",
    "ensure_account",
    "ensure_accounts",
    "expire_due",
    "get_transfer",
    "hold",
    "lock_for_charge",
    "lock_for_charges",
    "now_utc",
    "post_pending",
    "release",
    "remember_created",
    "settings_fee_bps",
    "shard_account",
    "shard_of",
    "split",
    "submit_transfer",
    "transfer_event",
    "transfers",
    "void_pending",
]
