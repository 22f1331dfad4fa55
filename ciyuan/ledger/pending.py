"""Two-phase transfers resolved: a hold posted (for at most what it reserved) or voided, and with
``pay`` a post that also passes the money on from the escrow to the provider and the platform fee.
:func:`split` is the fee rule (rounded down, so share and fee add up exactly).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ciyuan.errors import Conflict, InvalidInput, NotFound
from ciyuan.ledger import audit
from ciyuan.ledger.accounts import (
    PLATFORM,
    PROVIDER,
    _Acct,
    _fits,
    _limit,
    _lock,
    _shard_in,
    _write_accounts,
    ensure_accounts,
    now_utc,
)
from ciyuan.ledger.transfers import (
    _T,
    Transfer,
    _apply,
    _aware,
    _check_id,
    _copies,
    _expiry_event,
    _hash,
    _leg,
    _replay,
    _stored,
)


def _resolve(
    sess: Session, transfer_id: str, pending_id: str, op: str, amount: int | None, now: datetime | None,
    *, pay: tuple[str, int] | None = None,
) -> list[Transfer]:
    """Post or void a hold; with ``pay`` (provider, fee bps) a post also passes the money on."""
    _check_id(transfer_id)
    now = now or now_utc()
    body = {"op": op, "pending_id": pending_id, "amount": amount}
    conn = sess.connection()
    head = conn.execute(select(_T.c.kind, _T.c.debit_account_id, _T.c.credit_account_id, _T.c.currency)
                        .where(_T.c.id == pending_id)).first()
    if head is None or head.kind != "pending":
        raise NotFound(f"pending transfer {pending_id} does not exist", hint="post or void the id of a hold")
    ids = [head.debit_account_id, head.credit_account_id]
    leg_ids = [transfer_id]
    if pay is not None:
        k = _shard_in(head.credit_account_id)
        prov, plat = ensure_accounts(sess, [(PROVIDER, pay[0], head.currency, k), (PLATFORM, None, head.currency, k)])
        ids += [prov, plat]
        leg_ids += [f"{transfer_id}:provider", f"{transfer_id}:fee"]
    locked = _lock(sess, ids)
    rows = {r.id: r for r in _stored(sess, [pending_id, *leg_ids])}  # read under the locks
    if transfer_id in rows:
        found = [rows[i] for i in leg_ids if i in rows]
        want = [dict(id=transfer_id, body_hash=_hash(body))]
        return [*_replay([rows[transfer_id]], want), *(Transfer.of(r) for r in found[1:])]
    pend = rows[pending_id]
    w = _copies(locked)
    debit, credit = w[pend.debit_account_id], w[pend.credit_account_id]
    state = pend.state
    if state == "pending" and _aware(pend.expires_at) <= now:
        debit.debits_pending -= pend.amount
        credit.credits_pending -= pend.amount
        conn.execute(update(_T).where(_T.c.seq == pend.seq).values(state="expired", resolved_at=now))
        for a in (debit, credit):
            locked[a.id].debits_pending = a.debits_pending
            locked[a.id].credits_pending = a.credits_pending
        _write_accounts(sess, [locked[debit.id], locked[credit.id]])
        audit.append_many(sess, [_expiry_event(pending_id, pend.amount)], at=now)
        state = "expired"
    if state != "pending":
        err = Conflict(
            f"pending transfer {pending_id} is already {state}",
            hint="a hold can be posted or voided once, and not after it expired",
            code=f"pending_{state}",
        )
        err.commit_first = state == "expired"  # keep the expiry just applied
        raise err
    value = pend.amount if amount is None else amount
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= pend.amount:
        raise InvalidInput(
            f"post amount {amount!r} must be a whole number from 0 to the held {pend.amount}",
            hint="a hold can be posted for less than it reserved, never more",
        )
    if op == "post":
        _fits(debit, "debits_posted", value)
        _fits(credit, "credits_posted", value)
    debit.debits_pending -= pend.amount
    credit.credits_pending -= pend.amount
    if op == "post":
        debit.debits_posted += value
        credit.credits_posted += value
    else:
        value = pend.amount
    legs = [_leg(transfer_id, op, "posted" if op == "post" else "voided", pend.debit_account_id,
                 pend.credit_account_id, value, pend.currency, body, now, pending_id=pending_id, ref=pend.ref,
                 charge_id=transfer_id if op == "post" and pay is not None else None,
                 leg="buyer" if op == "post" and pay is not None else None)]
    if pay is not None and op == "post":
        legs += _pass_on(w, credit.id, ids[2], ids[3], transfer_id, value, pend.currency, pay[1], pend.ref, now)
    conn.execute(update(_T).where(_T.c.seq == pend.seq).values(state=legs[0]["state"], resolved_at=now))
    return _apply(sess, legs, list(w.values()), locked, checked=True)


def _pass_on(w: dict[str, _Acct], holds: str, prov: str, plat: str, charge_id: str, amount: int, currency: str,
             fee_bps: int, ref: str | None, now: datetime) -> list[dict]:
    """The provider's share and the platform's fee out of the escrow (totals changed in ``w``)."""
    share, fee = split(amount, fee_bps)
    legs = []
    for part, dest, value in (("provider", prov, share), ("fee", plat, fee)):
        if not value:
            continue
        tid = f"{charge_id}:{part}"
        body = {"op": "single", "debit": holds, "credit": dest, "amount": value, "currency": currency,
                "timeout_s": None, "ref": ref}
        _limit(w[holds], value, w[dest])
        w[holds].debits_posted += value
        w[dest].credits_posted += value
        legs.append(_leg(tid, "single", "posted", holds, dest, value, currency, body, now, ref=ref,
                         charge_id=charge_id, leg=part))
    return legs


def post_pending(
    sess: Session, transfer_id: str, pending_id: str, amount: int | None = None, *, now: datetime | None = None
) -> Transfer:
    """Settle a hold for ``amount`` (default all of it, never more); the rest returns to the payer."""
    return _resolve(sess, transfer_id, pending_id, "post", amount, now)[0]


def void_pending(sess: Session, transfer_id: str, pending_id: str, *, now: datetime | None = None) -> Transfer:
    """Release a hold in full."""
    return _resolve(sess, transfer_id, pending_id, "void", None, now)[0]


def split(amount: int, fee_bps: int) -> tuple[int, int]:
    """(provider share, platform fee): the fee is rounded down, so the two always add up exactly."""
    if not 0 <= fee_bps <= 10_000:
        raise InvalidInput(f"platform fee {fee_bps} bps is outside 0..10000", hint="set platform_fee_bps")
    fee = amount * fee_bps // 10_000
    return amount - fee, fee
