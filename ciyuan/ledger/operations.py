"""The market's operations on the ledger: deposit, charge, hold, capture, release, and adopting a
home's transfers that predate the audit log.

A charge's legs (buyer -> holds, holds -> provider, holds -> platform fee) carry ``charge_id`` (the
buyer leg's id) and ``leg`` (``buyer``, ``provider``, ``fee``) and pass through the buyer's shard.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ciyuan.config import Settings, settings
from ciyuan.errors import CiyuanError, Conflict
from ciyuan.ledger import audit
from ciyuan.ledger.accounts import (
    BUYER,
    FUNDING,
    HOLDS,
    PLATFORM,
    PROVIDER,
    _limit,
    _lock,
    ensure_account,
    ensure_accounts,
    now_utc,
    shard_of,
)
from ciyuan.ledger.money import check_currency
from ciyuan.ledger.pending import _pass_on, _resolve, split, void_pending
from ciyuan.ledger.tables import AuditInboxRow, AuditRow, TransferRow
from ciyuan.ledger.transfers import (
    Transfer,
    _apply,
    _check_amount,
    _check_id,
    _copies,
    _leg,
    _replay,
    _stored,
    create_transfer,
    expire_due,
)


def deposit(
    sess: Session, transfer_id: str, buyer_id: str, amount: int, currency: str, *, now: datetime | None = None
) -> Transfer:
    """The operator credits a buyer's balance from outside funds."""
    cur = check_currency(currency)
    src, dst = ensure_accounts(sess, [(FUNDING, None, cur, 0), (BUYER, buyer_id, cur, 0)])
    return create_transfer(sess, transfer_id, src, dst, amount, cur, ref=f"deposit:{buyer_id}", now=now)


def _charge_accounts(sess: Session, specs: list[tuple[str, str | None, str]]) -> list[list[str]]:
    """The accounts of charges ``(buyer, provider, currency)``, created if missing, in one statement.

    A charge's are the buyer's balance and the buyer's shard of the escrow, the provider's
    earnings and the platform fees; a spec without a provider names the buyer's balance only.
    """
    flat: list[tuple[str, str | None, str, int]] = []
    sizes = []
    for buyer_id, provider_id, currency in specs:
        cur = check_currency(currency)
        if provider_id is None:
            flat.append((BUYER, buyer_id, cur, 0))
            sizes.append(1)
            continue
        k = shard_of(buyer_id)
        flat += [(BUYER, buyer_id, cur, 0), (HOLDS, None, cur, k), (PROVIDER, provider_id, cur, k),
                 (PLATFORM, None, cur, k)]
        sizes.append(4)
    ids = ensure_accounts(sess, flat) if flat else []
    out, at = [], 0
    for n in sizes:
        out.append(ids[at : at + n])
        at += n
    return out


def _first_leg(accts: list[str], transfer_id: str, amount: int, cur: str, ref: str | None, now: datetime) -> dict:
    """The buyer leg of a charge (its id is the charge's; a replay is matched by its body)."""
    body = {"op": "single", "debit": accts[0], "credit": accts[1], "amount": amount, "currency": cur,
            "timeout_s": None, "ref": ref}
    return _leg(transfer_id, "single", "posted", accts[0], accts[1], amount, cur, body, now, ref=ref,
                charge_id=transfer_id, leg="buyer")


def _charge_legs(w: dict, accts: list[str], transfer_id: str, amount: int, cur: str, fee_bps: int,
                 ref: str | None, now: datetime) -> list[dict]:
    """A charge's three legs, its totals changed in the working copies ``w`` (funds rule first)."""
    buyer, holds, prov, plat = accts
    first = _first_leg(accts, transfer_id, amount, cur, ref, now)
    _limit(w[buyer], amount, w[holds])
    w[buyer].debits_posted += amount
    w[holds].credits_posted += amount
    return [first, *_pass_on(w, holds, prov, plat, transfer_id, amount, cur, fee_bps, ref, now)]


def charge(
    sess: Session,
    transfer_id: str,
    buyer_id: str,
    provider_id: str,
    amount: int,
    currency: str,
    *,
    fee_bps: int | None = None,
    ref: str | None = None,
    now: datetime | None = None,
) -> list[Transfer]:
    """Take ``amount`` from a buyer at once: buyer -> holds, then holds -> provider share and platform fee.

    The three legs share ``charge_id`` (this transfer id) and name their ``leg``; they pass through
    the buyer's shard of the escrow, fee and provider accounts, so charges of different buyers do
    not queue on one shared row. One lock statement, one insert, one account update, one log insert.
    """
    _check_id(transfer_id)
    _check_amount(amount)
    now = now or now_utc()
    cur = check_currency(currency)
    fee_bps = settings().platform_fee_bps if fee_bps is None else fee_bps
    split(amount, fee_bps)  # the fee rule first
    accts = _charge_accounts(sess, [(buyer_id, provider_id, cur)])[0]
    expire_due(sess, now=now, debit_account_id=accts[0])
    locked = _lock(sess, accts)
    ids = [transfer_id, f"{transfer_id}:provider", f"{transfer_id}:fee"]
    w = _copies(locked)
    try:
        legs = _charge_legs(w, accts, transfer_id, amount, cur, fee_bps, ref, now)
    except CiyuanError:
        if stored := _stored(sess, ids):
            return _charge_replay(stored, _first_leg(accts, transfer_id, amount, cur, ref, now))
        raise
    out = _apply(sess, legs, list(w.values()), locked)
    if out is None:
        return _charge_replay(_stored(sess, ids), legs[0])
    return out


@dataclass(frozen=True)
class ChargeRequest:
    """One charge of :func:`charges`: a new transfer id, the buyer, the provider, the amount."""

    id: str
    buyer_id: str
    provider_id: str
    amount: int
    currency: str
    ref: str | None = None


def charges(sess: Session, reqs: list[ChargeRequest], *, fee_bps: int | None = None,
            now: datetime | None = None) -> list[list[Transfer] | CiyuanError]:
    """Many charges in one operation, each taken or refused on its own (the orders' group commit).

    Like :func:`charge` for each, in order, but with one lock statement for all their accounts
    (those locked earlier in the transaction are not read again) and one write of every leg,
    total and audit event. A refused charge (funds, 64-bit totals, a bad amount, an id twice)
    changes nothing and answers with its error. The ids must be new: this is for callers that
    make them in the same unit of work (an id that exists is a Conflict for the whole operation;
    :func:`charge` answers replays).
    """
    now = now or now_utc()
    fee_bps = settings().platform_fee_bps if fee_bps is None else fee_bps
    split(0, fee_bps)
    out: list[list[Transfer] | CiyuanError | None] = [None] * len(reqs)
    live: list[int] = []
    for i, r in enumerate(reqs):
        try:
            _check_id(r.id)
            _check_amount(r.amount)
            check_currency(r.currency)
            live.append(i)
        except CiyuanError as exc:
            out[i] = exc
    accts = _charge_accounts(sess, [(reqs[i].buyer_id, reqs[i].provider_id, reqs[i].currency) for i in live])
    locked = _lock(sess, sorted({a for group in accts for a in group}))
    for buyer in {group[0] for group in accts}:  # holds due on a buyer (none are if it holds nothing)
        if locked[buyer].debits_pending:
            expire_due(sess, now=now, debit_account_id=buyer)
    w = _copies(locked)
    legs: list[dict] = []
    made: list[tuple[int, int]] = []
    seen: set[str] = set()
    for i, group in zip(live, accts, strict=True):
        r = reqs[i]
        before = {a: replace(w[a]) for a in group}
        try:
            if r.id in seen:
                raise Conflict(f"transfer {r.id} appears twice in one batch", hint="use a new transfer id",
                               code="idempotency_conflict")
            mine = _charge_legs(w, group, r.id, r.amount, check_currency(r.currency), fee_bps, r.ref, now)
        except CiyuanError as exc:
            w.update(before)  # a refused charge leaves every total as it was
            out[i] = exc
            continue
        seen.add(r.id)
        legs += mine
        made.append((i, len(mine)))
    if legs:
        done = _apply(sess, legs, list(w.values()), locked, checked=True)
        if done is None:  # SQLite, without a lookup: an id existed
            raise Conflict(f"transfer {legs[0]['id']} already exists", hint="use a new transfer id",
                           code="idempotency_conflict")
        at = 0
        for i, n in made:
            out[i] = done[at : at + n]
            at += n
    return out  # type: ignore[return-value]


def lock_for_charges(sess: Session, specs: list[tuple[str, str | None, str]]) -> list[str]:
    """Lock the accounts of charges ``(buyer, provider, currency)`` in one statement; their buyer accounts.

    An order locks its buyer first (its idempotency check runs under that lock); taking the
    escrow, fee and provider shards in the same statement saves the charge a round trip. A spec
    without a provider (an order that charges nothing now) locks the buyer's balance only.
    """
    accts = _charge_accounts(sess, specs)
    _lock(sess, sorted({a for group in accts for a in group}))
    return [group[0] for group in accts]


def lock_for_charge(sess: Session, buyer_id: str, provider_id: str, currency: str) -> str:
    """:func:`lock_for_charges` for one charge."""
    return lock_for_charges(sess, [(buyer_id, provider_id, currency)])[0]


def _charge_replay(stored: list, first: dict) -> list[Transfer]:
    by_id = {r.id: r for r in stored}
    head = _replay([r for r in stored if r.id == first["id"]], [first])
    return [*head, *(Transfer.of(by_id[i]) for i in (f"{first['id']}:provider", f"{first['id']}:fee") if i in by_id)]


def hold(
    sess: Session,
    transfer_id: str,
    buyer_id: str,
    amount: int,
    currency: str,
    *,
    timeout_s: int | None = None,
    ref: str | None = None,
    now: datetime | None = None,
) -> Transfer:
    """Reserve ``amount`` of a buyer's balance (a pending transfer buyer -> holds) until posted, voided or expired."""
    cur = check_currency(currency)
    buyer, holds = ensure_accounts(sess, [(BUYER, buyer_id, cur, 0), (HOLDS, None, cur, shard_of(buyer_id))])
    return create_transfer(
        sess, transfer_id, buyer, holds, amount, cur, pending=True, timeout_s=timeout_s, ref=ref, now=now
    )


def available_to_hold(sess: Session, buyer_id: str, currency: str, *, now: datetime | None = None) -> int:
    """What a buyer can still hold or spend, read under the lock of their balance account (after
    their due holds expire), so a caller can size a hold to fit instead of failing it."""
    cur = check_currency(currency)
    aid = ensure_account(sess, BUYER, buyer_id, cur)
    expire_due(sess, now=now, debit_account_id=aid)
    row = _lock(sess, [aid])[aid]
    return row.credits_posted - row.debits_posted - row.debits_pending


def capture(
    sess: Session,
    transfer_id: str,
    hold_id: str,
    provider_id: str,
    amount: int | None = None,
    *,
    fee_bps: int | None = None,
    now: datetime | None = None,
) -> list[Transfer]:
    """Post a hold for ``amount`` (at most what it reserved) and pay the provider and platform from it.

    The post is the charge's ``buyer`` leg; the provider's share and the fee leave the escrow shard
    the hold was made in, all in one operation.
    """
    fee_bps = settings().platform_fee_bps if fee_bps is None else fee_bps
    split(0, fee_bps)
    return _resolve(sess, transfer_id, hold_id, "post", amount, now, pay=(provider_id, fee_bps))


def release(sess: Session, transfer_id: str, hold_id: str, *, now: datetime | None = None) -> Transfer:
    """Void a hold: the whole reserved amount becomes available again."""
    return void_pending(sess, transfer_id, hold_id, now=now)


def adopt(sess: Session) -> dict:
    """Operator step for a home whose transfers predate the audit log: log them, and holds that expired.

    Only transfers older (by ledger ``seq``) than the first transfer already in the chain are
    adopted; an unlogged transfer made after the chain began was not written by the ledger
    (every ledger insert logs itself) and is refused, listed, for the operator to investigate.
    The adoption itself is logged as an ``audit.adopt`` entry naming what was adopted. It is the
    ledger's step (these are ledger events), run by ``ciyuan audit adopt``.
    """
    T = TransferRow
    refs = set(sess.execute(select(AuditRow.ref).where(AuditRow.kind.in_(["ledger.transfer", "ledger.expired"])))
               .scalars())
    refs |= set(sess.execute(select(AuditInboxRow.ref)).scalars())
    rows = sess.execute(select(T).order_by(T.seq)).scalars().all()
    first = next((r.seq for r in rows if f"transfer:{r.id}" in refs), None)
    adopted: list[str] = []
    refused: list[str] = []
    events = []
    for row in rows:
        if f"transfer:{row.id}" in refs:
            continue
        if first is not None and row.seq > first:
            refused.append(row.id)
            continue
        events.append(("ledger.transfer", f"transfer:{row.id}", row.audited()))
        adopted.append(row.id)
    expiries = [("ledger.expired", f"expired:{r.id}", {"id": r.id, "amount": int(r.amount)}) for r in rows
                if r.kind == "pending" and r.state == "expired" and f"expired:{r.id}" not in refs]
    events += expiries
    if adopted:
        n = sess.execute(select(func.count()).select_from(AuditRow).where(AuditRow.kind == "audit.adopt")).scalar_one()
        events.append(("audit.adopt", f"adopt:{n + 1}", {"transfers": adopted}))
    audit.append_many(sess, events)
    return {"adopted": adopted, "expiries": len(expiries), "refused": refused}


def settings_fee_bps(s: Settings | None = None) -> int:
    return (s or settings()).platform_fee_bps
