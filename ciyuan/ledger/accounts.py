"""The ledger's accounts: kinds, ids and shards, creating them, locking them, and the funds rule.

An account keeps four running totals (debits/credits, pending/posted) that are only a cache of its
transfers. ``holds``, ``platform_fees`` and ``provider_earnings`` are each :data:`SHARDS` real
accounts (``<id>`` is shard 0, ``<id>#k`` shard k); a buyer's charges pass through the shard
:func:`shard_of` gives their id. The accounts an operation changes are locked in one
``SELECT ... ORDER BY id FOR UPDATE`` (no deadlocks between orderings) and written back in one
executemany; :func:`_limit` is the rule every debit meets (funds, and 64-bit totals).
"""

from __future__ import annotations

import weakref
import zlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ciyuan.db import tx
from ciyuan.errors import CiyuanError, InvalidInput, NotFound
from ciyuan.ledger.money import check_currency, format_amount
from ciyuan.ledger.tables import LedgerAccountRow

BUYER = "buyer_balance"
PROVIDER = "provider_earnings"
PLATFORM = "platform_fees"
HOLDS = "holds"
FUNDING = "operator_funding"
KINDS = (BUYER, PROVIDER, PLATFORM, HOLDS, FUNDING)
SHARDED = (HOLDS, PLATFORM, PROVIDER)
SHARDS = 32  # per shared account; part of the account ids, so fixed

DEBITS_MUST_NOT_EXCEED_CREDITS = 1
INT64_MAX = 2**63 - 1  # every running total is a BIGINT column


class InsufficientFunds(CiyuanError):
    code = "insufficient_funds"
    status = 402


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Balance:
    account_id: str
    kind: str
    currency: str
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def posted(self) -> int:
        """Credit-normal balance: what the owner has (may be negative for operator funding)."""
        return self.credits_posted - self.debits_posted

    @property
    def available(self) -> int:
        """What can still be spent or held: posted balance less outgoing holds."""
        return self.credits_posted - self.debits_posted - self.debits_pending

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(
            posted=self.posted,
            available=self.available,
            held=self.debits_pending,
            posted_text=format_amount(self.posted, self.currency),
            available_text=format_amount(self.available, self.currency),
        )
        return d


def account_id(kind: str, owner_id: str | None, currency: str) -> str:
    """The stable id of a ledger account: ``kind:owner:currency`` (owner ``platform`` for shared ones)."""
    return f"{kind}:{owner_id or 'platform'}:{currency}"


# per engine (a new engine after dispose_all starts empty): ledger accounts known to exist, after commits
_known: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_A = LedgerAccountRow.__table__
TOTALS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


def shard_of(key: str) -> int:
    """The shard of the shared accounts a buyer's charges pass through (stable, so replays match)."""
    return zlib.crc32(key.encode()) % SHARDS


def shard_account(kind: str, owner_id: str | None, currency: str, shard: int) -> str:
    """Shard ``shard`` of a shared account: shard 0 is the account itself, shard k its ``#k`` twin."""
    base = account_id(kind, owner_id, currency)
    return base if shard == 0 else f"{base}#{shard}"


def _shard_in(aid: str) -> int:
    """The shard number an account id names (0 for an unsharded id)."""
    _, sep, k = aid.rpartition("#")
    return int(k) if sep and k.isdigit() else 0


def base_account(aid: str) -> str:
    """The account id without its shard suffix (what balances show)."""
    return aid.split("#", 1)[0]


def remember_created(sess: Session) -> None:
    """After a commit: the accounts this unit of work ensured now surely exist (skip their INSERTs)."""
    created = sess.info.pop("ex_created", None)
    if created:
        _known.setdefault(sess.get_bind(), set()).update(created)


def _insert_stmt(sess: Session, table):
    dialect = sess.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def ensure_accounts(sess: Session, specs: list[tuple[str, str | None, str, int]]) -> list[str]:
    """Create the ledger accounts ``(kind, owner, currency, shard)`` that are missing, in one statement."""
    known = _known.setdefault(sess.get_bind(), set())
    out, rows = [], []
    for kind, owner_id, currency, shard in specs:
        if kind not in KINDS:
            raise InvalidInput(f"unknown ledger account kind {kind!r}", hint=f"one of {', '.join(KINDS)}")
        cur = check_currency(currency)
        aid = shard_account(kind, owner_id, cur, shard)
        out.append(aid)
        if aid in known or any(r["id"] == aid for r in rows):  # accounts are never deleted
            continue
        rows.append(dict(id=aid, kind=kind, owner_id=owner_id, currency=cur,
                         flags=DEBITS_MUST_NOT_EXCEED_CREDITS if kind in (BUYER, HOLDS) else 0,
                         debits_pending=0, debits_posted=0, credits_pending=0, credits_posted=0,
                         created_at=now_utc()))
    if rows:
        sess.connection().execute(_insert_stmt(sess, _A).values(rows).on_conflict_do_nothing(index_elements=["id"]))
        sess.info.setdefault("ex_created", set()).update(r["id"] for r in rows)  # known once this commits
        tx.after_commit(sess, remember_created)
    return out


def ensure_account(sess: Session, kind: str, owner_id: str | None, currency: str, shard: int = 0) -> str:
    """Create the ledger account if it is missing (race-free: INSERT ... ON CONFLICT DO NOTHING)."""
    return ensure_accounts(sess, [(kind, owner_id, currency, shard)])[0]


@dataclass
class _Acct:
    """A locked account's totals as this transaction has them (written back after each operation)."""

    id: str
    kind: str
    currency: str
    flags: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


_LOCK_PG = text("SELECT id, kind, currency, flags, " + ", ".join(TOTALS)
                 + " FROM ex_ledger_accounts WHERE id = ANY(:ids) ORDER BY id FOR UPDATE")


def _lock(sess: Session, ids: list[str]) -> dict[str, _Acct]:
    """Lock the accounts in one ``ORDER BY id FOR UPDATE`` (sorted: no cycles between two units of work).

    An account locked earlier in this transaction is not read again: this transaction is the only
    writer of its totals until it commits, so the copy in ``sess.info`` is current.
    """
    locked: dict[str, _Acct] = sess.info.setdefault("ex_locked", {})
    need = sorted(set(ids) - locked.keys())
    if need:
        conn = sess.connection()
        if conn.dialect.name == "postgresql":  # one cached statement whatever the number of ids
            q = _LOCK_PG.bindparams(ids=need)
        else:
            q = (select(_A.c.id, _A.c.kind, _A.c.currency, _A.c.flags, *(_A.c[c] for c in TOTALS))
                 .where(_A.c.id.in_(need)).order_by(_A.c.id).with_for_update())
        for r in conn.execute(q):
            locked[r[0]] = _Acct(*r)
        for aid in need:
            if aid not in locked:
                raise NotFound(f"ledger account {aid} does not exist",
                               hint="deposits and orders create ledger accounts; check the account name")
    return {aid: locked[aid] for aid in ids}


def _write_accounts(sess: Session, accts: list[_Acct]) -> None:
    """Write the locked accounts' new totals back: one executemany (pipelined by the driver)."""
    if not accts:
        return
    stmt = (update(_A).where(_A.c.id == bindparam("k_id"))
            .values(**{c: bindparam(f"k_{c}") for c in TOTALS}))
    sess.connection().execute(stmt, [{"k_id": a.id, **{f"k_{c}": getattr(a, c) for c in TOTALS}}
                                     for a in {a.id: a for a in accts}.values()])


class LedgerOverflow(CiyuanError):
    code = "ledger_overflow"
    status = 422


def _fits(row: _Acct, column: str, amount: int) -> None:
    """Refuse a transfer that would take a running total past a signed 64-bit integer.

    The totals are BIGINT columns: SQLite cannot bind a larger Python int (a 500 before) and
    PostgreSQL refuses it; both now give the same clear error before anything is written.
    """
    total = getattr(row, column) + amount
    if total > INT64_MAX:
        raise LedgerOverflow(
            f"{row.id} {column} would reach {total:,} minor units, past the ledger's 64-bit limit of {INT64_MAX:,}",
            hint="the transfer was not recorded; no single account can hold this much, so move money out first",
        )


def _limit(row: _Acct, amount: int, credit: _Acct | None = None, *, pending: bool = False) -> None:
    """The debit account's funds rule, and (both sides) that the new totals still fit in 64 bits."""
    state = "pending" if pending else "posted"
    _fits(row, f"debits_{state}", amount)
    if credit is not None:
        _fits(credit, f"credits_{state}", amount)
    if (
        row.flags & DEBITS_MUST_NOT_EXCEED_CREDITS
        and row.debits_posted + row.debits_pending + amount > row.credits_posted
    ):
        available = row.credits_posted - row.debits_posted - row.debits_pending
        raise InsufficientFunds(
            f"{row.id} has {format_amount(available, row.currency)} {row.currency} available "
            f"(after holds) but {format_amount(amount, row.currency)} is needed",
            hint="deposit funds (ciyuan ledger deposit) or buy a smaller selection",
        )
