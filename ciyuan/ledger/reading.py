"""Reading the ledger: balances (a shared account's shards summed), transfers, charge legs, and
:func:`check`, which recomputes every account's totals from the transfers and reports each
difference and broken rule.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ciyuan.errors import NotFound
from ciyuan.ledger.accounts import DEBITS_MUST_NOT_EXCEED_CREDITS, HOLDS, SHARDED, Balance, account_id, base_account
from ciyuan.ledger.money import check_currency
from ciyuan.ledger.tables import LedgerAccountRow, TransferRow
from ciyuan.ledger.transfers import Transfer


def balances(sess: Session, owner_id: str | None = None) -> list[Balance]:
    """Every account's totals, the shards of a shared account summed under its base id."""
    q = select(LedgerAccountRow).order_by(LedgerAccountRow.id)
    if owner_id is not None:
        q = q.where(LedgerAccountRow.owner_id == owner_id)
    sums: dict[str, list] = {}
    for r in sess.execute(q).scalars():
        base = base_account(r.id)
        got = sums.setdefault(base, [r.kind, r.currency, 0, 0, 0, 0])
        for i, c in enumerate(("debits_posted", "credits_posted", "debits_pending", "credits_pending")):
            got[2 + i] += getattr(r, c)
    return [Balance(aid, *v) for aid, v in sorted(sums.items())]


def balance(sess: Session, kind: str, owner_id: str | None, currency: str) -> Balance:
    """One account's totals (all its shards summed)."""
    cur = check_currency(currency)
    aid = account_id(kind, owner_id, cur)
    A = LedgerAccountRow
    if kind in SHARDED:
        q = select(func.coalesce(func.sum(A.debits_posted), 0), func.coalesce(func.sum(A.credits_posted), 0),
                   func.coalesce(func.sum(A.debits_pending), 0), func.coalesce(func.sum(A.credits_pending), 0))
        q = q.where(A.kind == kind, A.currency == cur)
        q = q.where(A.owner_id.is_(None) if owner_id is None else A.owner_id == owner_id)
        dp, cp, dpe, cpe = sess.execute(q).one()
        return Balance(aid, kind, cur, int(dp), int(cp), int(dpe), int(cpe))
    r = sess.get(A, aid)
    if r is None:
        return Balance(aid, kind, cur, 0, 0, 0, 0)
    return Balance(r.id, r.kind, r.currency, r.debits_posted, r.credits_posted, r.debits_pending, r.credits_pending)


def get_transfer(sess: Session, transfer_id: str) -> Transfer:
    row = sess.execute(select(TransferRow).where(TransferRow.id == transfer_id)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"transfer {transfer_id} does not exist", hint="check the id")
    return Transfer.of(row)


def _shards_of(sess: Session, account: str) -> list[str]:
    """An account id and the ids of its shards (``account`` may name the base or one shard)."""
    base = base_account(account)
    A = LedgerAccountRow
    found = sess.execute(select(A.id).where((A.id == base) | A.id.startswith(base + "#", autoescape=True))).scalars()
    return sorted(set(found) | {account})


def transfers(sess: Session, ref: str | None = None, account: str | None = None) -> list[Transfer]:
    """Transfers in ledger order, by ref and/or by account (an account's shards included)."""
    q = select(TransferRow).order_by(TransferRow.seq)
    if ref is not None:
        q = q.where(TransferRow.ref == ref)
    if account is not None:
        ids = _shards_of(sess, account)
        q = q.where(TransferRow.debit_account_id.in_(ids) | TransferRow.credit_account_id.in_(ids))
    return [Transfer.of(r) for r in sess.execute(q).scalars()]


def charge_legs(sess: Session, *, leg: str, owner_id: str | None = None, kind: str | None = None) -> list[Transfer]:
    """The ``leg`` legs (buyer, provider, fee) of every charge, optionally only those crediting
    (provider, fee) or debiting (buyer) the accounts of ``owner_id``/``kind``: read from the
    ``charge_id``/``leg`` columns, never from ids."""
    T, A = TransferRow, LedgerAccountRow
    q = select(T).where(T.leg == leg, T.charge_id.is_not(None)).order_by(T.seq)
    side = T.debit_account_id if leg == "buyer" else T.credit_account_id
    if owner_id is not None or kind is not None:
        accts = select(A.id)
        if owner_id is not None:
            accts = accts.where(A.owner_id == owner_id)
        if kind is not None:
            accts = accts.where(A.kind == kind)
        q = q.where(side.in_(accts))
    return [Transfer.of(r) for r in sess.execute(q).scalars()]


def check(sess: Session) -> dict:
    """Recompute every account's totals from the transfers and report each difference and broken rule."""
    sums: dict[str, dict[str, int]] = {}

    def add(aid: str, col: str, value: int) -> None:
        sums.setdefault(aid, {"debits_posted": 0, "credits_posted": 0, "debits_pending": 0, "credits_pending": 0})[
            col
        ] += int(value or 0)

    T = TransferRow
    posted = T.kind.in_(["single", "post"])
    pending = (T.kind == "pending") & (T.state == "pending")
    for cond, suffix in ((posted, "posted"), (pending, "pending")):
        for aid, total in sess.execute(
            select(T.debit_account_id, func.sum(T.amount)).where(cond).group_by(T.debit_account_id)
        ):
            add(aid, f"debits_{suffix}", total)
        for aid, total in sess.execute(
            select(T.credit_account_id, func.sum(T.amount)).where(cond).group_by(T.credit_account_id)
        ):
            add(aid, f"credits_{suffix}", total)
    differences: list[dict] = []
    totals = {"debits_posted": 0, "credits_posted": 0, "debits_pending": 0, "credits_pending": 0}
    accounts = sess.execute(select(LedgerAccountRow).order_by(LedgerAccountRow.id)).scalars().all()
    for r in accounts:
        want = sums.pop(r.id, {k: 0 for k in totals})
        for col in totals:
            have = getattr(r, col)
            totals[col] += have
            if have != want[col]:
                differences.append({"account": r.id, "field": col, "stored": have, "from_transfers": want[col]})
        if r.flags & DEBITS_MUST_NOT_EXCEED_CREDITS and r.debits_posted + r.debits_pending > r.credits_posted:
            differences.append(
                {
                    "account": r.id,
                    "field": "limit",
                    "stored": r.debits_posted + r.debits_pending,
                    "from_transfers": r.credits_posted,
                    "problem": "debits (posted + pending) exceed credits",
                }
            )
        if r.kind == HOLDS and r.debits_posted != r.credits_posted:
            differences.append(
                {
                    "account": r.id,
                    "field": "escrow",
                    "stored": r.credits_posted,
                    "from_transfers": r.debits_posted,
                    "problem": "a posted charge was not passed on to provider and platform",
                }
            )
    for aid in sums:
        differences.append(
            {
                "account": aid,
                "field": "exists",
                "stored": 0,
                "from_transfers": 1,
                "problem": "transfers name an account that does not exist",
            }
        )
    if totals["debits_posted"] != totals["credits_posted"]:
        differences.append(
            {
                "account": "*",
                "field": "posted",
                "stored": totals["debits_posted"],
                "from_transfers": totals["credits_posted"],
                "problem": "posted debits != credits",
            }
        )
    if totals["debits_pending"] != totals["credits_pending"]:
        differences.append(
            {
                "account": "*",
                "field": "pending",
                "stored": totals["debits_pending"],
                "from_transfers": totals["credits_pending"],
                "problem": "pending debits != credits",
            }
        )
    # every resolved hold has exactly one resolving transfer, for no more than it reserved
    P = select(T.id, T.state, T.amount).where(T.kind == "pending", T.state.in_(["posted", "voided"]))
    resolving = {row.pending_id: row for row in sess.execute(select(T).where(T.kind.in_(["post", "void"]))).scalars()}
    for pid, state, amount in sess.execute(P):
        r = resolving.pop(pid, None)
        if r is None or (state == "posted") != (r.kind == "post") or r.amount > amount:
            differences.append(
                {
                    "account": "*",
                    "field": "hold",
                    "stored": pid,
                    "from_transfers": None,
                    "problem": f"hold {pid} is {state} without a matching resolving transfer",
                }
            )
    for pid in resolving:
        differences.append(
            {
                "account": "*",
                "field": "hold",
                "stored": pid,
                "from_transfers": None,
                "problem": f"a post/void names {pid}, which is not a resolved hold",
            }
        )
    n_transfers = sess.execute(select(func.count()).select_from(T)).scalar_one()
    return {
        "ok": not differences,
        "accounts": len(accounts),
        "transfers": n_transfers,
        "totals": totals,
        "differences": differences,
    }
