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
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
import zlib
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.errors import CiyuanError, Conflict, InvalidInput, NotFound
from ciyuan.ledger import audit
from ciyuan.ledger.money import MAX_AMOUNT, check_currency, format_amount
from ciyuan.ledger.tables import AuditInboxRow, AuditRow, LedgerAccountRow, TransferRow, transfer_facts

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


def _aware(ts: datetime | None) -> datetime | None:
    """SQLite hands timestamps back naive; they were stored as UTC."""
    if ts is not None and ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts


@dataclass(frozen=True)
class Transfer:
    id: str
    kind: str  # single | pending | post | void
    state: str  # posted | pending | voided | expired (for pending transfers), posted/voided otherwise
    debit_account_id: str
    credit_account_id: str
    amount: int
    currency: str
    pending_id: str | None
    expires_at: datetime | None
    ref: str | None
    created_at: datetime
    charge_id: str | None = None  # the charge this transfer is a leg of
    leg: str | None = None  # buyer | provider | fee

    @classmethod
    def of(cls, row: TransferRow) -> Transfer:
        return cls(
            row.id,
            row.kind,
            row.state,
            row.debit_account_id,
            row.credit_account_id,
            row.amount,
            row.currency,
            row.pending_id,
            _aware(row.expires_at),
            row.ref,
            _aware(row.created_at),
            getattr(row, "charge_id", None),
            getattr(row, "leg", None),
        )

    def to_dict(self) -> dict:
        d = asdict(self)
        d["amount_text"] = format_amount(self.amount, self.currency)
        return d


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
_T = TransferRow.__table__
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


def _hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _replay(rows: list, legs: list[dict]) -> list[Transfer]:
    """The stored transfers of a replayed operation, or Conflict if one differs from the request."""
    by_id = {r.id: r for r in rows}
    for leg in legs:
        r = by_id.get(leg["id"])
        if r is None or r.body_hash != leg["body_hash"]:
            raise Conflict(
                f"transfer {leg['id']} already exists with a different body",
                hint="use a new transfer id for a different transfer; resend the same body to replay",
                code="idempotency_conflict",
            )
    return [Transfer.of(by_id[leg["id"]]) for leg in legs]


def _stored(sess: Session, ids: list[str]) -> list:
    return sess.connection().execute(select(_T).where(_T.c.id.in_(ids))).all()


def _check_id(transfer_id: str) -> None:
    if not isinstance(transfer_id, str) or not 1 <= len(transfer_id) <= 200:
        raise InvalidInput("transfer id must be 1 to 200 characters", hint="choose a unique id per transfer")


def _check_amount(amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise InvalidInput(
            f"amount {amount!r} must be a whole number of minor units from 1 to {MAX_AMOUNT}",
            hint="amounts are integers in minor units (fen for CNY)",
        )


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


def _leg(transfer_id: str, kind: str, state: str, debit: str, credit: str, amount: int, currency: str,
         body: dict, now: datetime, *, pending_id: str | None = None, expires_at: datetime | None = None,
         ref: str | None = None, charge_id: str | None = None, leg: str | None = None) -> dict:
    return dict(id=transfer_id, kind=kind, state=state, debit_account_id=debit, credit_account_id=credit,
                amount=amount, currency=currency, pending_id=pending_id, expires_at=expires_at, ref=ref,
                body_hash=_hash(body), created_at=now, resolved_at=None, charge_id=charge_id, leg=leg)


def transfer_event(t: dict) -> tuple[str, str, dict]:
    """The audit event of a transfer the ledger has just written."""
    return "ledger.transfer", f"transfer:{t['id']}", transfer_facts(t)


def _expiry_event(transfer_id: str, amount: int) -> tuple[str, str, dict]:
    return "ledger.expired", f"expired:{transfer_id}", {"id": transfer_id, "amount": int(amount)}


def _apply(sess: Session, legs: list[dict], work: list[_Acct], locked: dict[str, _Acct],
           *, checked: bool = False, events: list | None = None) -> list[Transfer] | None:
    """Insert the legs, write the new totals (``work``: copies of ``locked`` rows) and log it all.

    Without ``checked`` (no lookup made under the lock) the legs go in with ON CONFLICT DO NOTHING:
    if any id exists already nothing else is written and None is returned, for the caller to replay.
    """
    conn = sess.connection()
    events = [*(events or []), *(transfer_event(leg) for leg in legs)]
    if conn.dialect.name == "postgresql":
        out = _apply_pg(sess, legs, work, locked, events)
        if out is None and checked:  # looked up under the locks, so only a twin with other accounts
            raise Conflict(f"transfer {legs[0]['id']} already exists", hint="use a new transfer id",
                           code="idempotency_conflict")
        return out
    ins = _insert_stmt(sess, _T).values(legs)
    if not checked:
        got = conn.execute(ins.on_conflict_do_nothing(index_elements=["id"]).returning(_T.c.id)).scalars().all()
        if len(got) != len(legs):
            if got:  # a multi-leg operation half present: never the same request
                raise Conflict(f"transfer {legs[0]['id']} exists with other legs",
                               hint="use a new transfer id", code="idempotency_conflict")
            return None
    else:
        conn.execute(ins)
    for w in work:
        a = locked[w.id]
        for c in TOTALS:
            setattr(a, c, getattr(w, c))
    _write_accounts(sess, [locked[w.id] for w in work])
    audit.append_many(sess, events)
    return [Transfer.of(SimpleNamespace(**leg)) for leg in legs]


_LEG_COLS = ("id, kind, state, debit_account_id, credit_account_id, amount, currency, pending_id, expires_at, ref, "
             "body_hash, created_at, resolved_at, charge_id, leg")
_APPLY_PG = text(
    f"WITH t AS (INSERT INTO ex_transfers ({_LEG_COLS}) SELECT {_LEG_COLS} "
    "FROM json_populate_recordset(NULL::ex_transfers, CAST(:legs AS json)) ON CONFLICT (id) DO NOTHING RETURNING id), "
    "n AS (SELECT count(*) AS c FROM t), "
    "a AS (UPDATE ex_ledger_accounts x SET debits_pending = v.debits_pending, debits_posted = v.debits_posted, "
    "credits_pending = v.credits_pending, credits_posted = v.credits_posted "
    "FROM json_populate_recordset(NULL::ex_ledger_accounts, CAST(:accts AS json)) v, n "
    "WHERE x.id = v.id AND n.c = :n), "
    "i AS (INSERT INTO dl_audit_inbox (at, kind, ref, data) SELECT e.at, e.kind, e.ref, e.data "
    "FROM json_populate_recordset(NULL::dl_audit_inbox, CAST(:events AS json)) WITH ORDINALITY AS e, n "
    "WHERE n.c = :n ORDER BY e.ordinality RETURNING id) "
    "SELECT (SELECT c FROM n), ARRAY(SELECT id FROM i ORDER BY id)"
)


def _json_default(v: object) -> str:
    if isinstance(v, datetime):
        return v.isoformat()
    raise TypeError(type(v).__name__)


def _apply_pg(sess: Session, legs: list[dict], work: list[_Acct], locked: dict[str, _Acct],
              events: list) -> list[Transfer] | None:
    """PostgreSQL: the legs, the new totals and the log rows in one statement (one round trip).

    The account update and the log insert happen only if every leg went in; if an id existed,
    nothing but the other legs was written and None (or Conflict for a half-present operation)
    tells the caller to answer with the stored transfers.
    """
    accts = [{"id": w.id, **{c: getattr(w, c) for c in TOTALS}} for w in work]
    n, ids = sess.connection().execute(_APPLY_PG, {
        "legs": json.dumps(legs, default=_json_default), "accts": json.dumps(accts),
        "events": json.dumps(audit.inbox_rows(events)), "n": len(legs)}).one()
    if n != len(legs):
        if n:
            raise Conflict(f"transfer {legs[0]['id']} exists with other legs",
                           hint="use a new transfer id", code="idempotency_conflict")
        return None
    for w in work:
        a = locked[w.id]
        for c in TOTALS:
            setattr(a, c, getattr(w, c))
    audit.queued(sess, list(ids))
    return [Transfer.of(SimpleNamespace(**leg)) for leg in legs]


def _copies(accts: dict[str, _Acct]) -> dict[str, _Acct]:
    return {k: replace(v) for k, v in accts.items()}


def create_transfer(
    sess: Session,
    transfer_id: str,
    debit: str,
    credit: str,
    amount: int,
    currency: str,
    *,
    pending: bool = False,
    timeout_s: int | None = None,
    ref: str | None = None,
    now: datetime | None = None,
) -> Transfer:
    """A single-phase (posted) or pending transfer between two existing ledger accounts."""
    _check_id(transfer_id)
    _check_amount(amount)
    now = now or now_utc()
    if debit == credit:
        raise InvalidInput("a transfer must move money between two different accounts", hint="check the accounts")
    body = {
        "op": "pending" if pending else "single",
        "debit": debit,
        "credit": credit,
        "amount": amount,
        "currency": currency,
        "timeout_s": timeout_s,
        "ref": ref,
    }
    if pending:
        expire_due(sess, now=now, debit_account_id=debit)
    locked = _lock(sess, [debit, credit])
    if pending:
        timeout = settings().hold_timeout_s if timeout_s is None else timeout_s
        leg = _leg(transfer_id, "pending", "pending", debit, credit, amount, currency, body, now,
                   expires_at=now + timedelta(seconds=max(timeout, 0)), ref=ref)
    else:
        leg = _leg(transfer_id, "single", "posted", debit, credit, amount, currency, body, now, ref=ref)
    try:
        for r in locked.values():
            if r.currency != currency:
                raise InvalidInput(f"{r.id} holds {r.currency}, not {currency}",
                                   hint="transfers stay in one currency")
        if pending and timeout <= 0:
            raise InvalidInput("hold timeout must be positive seconds", hint="e.g. 300")
        w = _copies(locked)
        _limit(w[debit], amount, w[credit], pending=pending)
    except CiyuanError:
        if stored := _stored(sess, [transfer_id]):  # a replay is answered even when it would not fit now
            return _replay(stored, [leg])[0]
        raise
    state = "pending" if pending else "posted"
    setattr(w[debit], f"debits_{state}", getattr(w[debit], f"debits_{state}") + amount)
    setattr(w[credit], f"credits_{state}", getattr(w[credit], f"credits_{state}") + amount)
    out = _apply(sess, [leg], list(w.values()), locked)
    if out is None:
        return _replay(_stored(sess, [transfer_id]), [leg])[0]
    return out[0]


@dataclass(frozen=True)
class TransferRequest:
    """One single-phase transfer asked for by a caller of :func:`create_transfers` or :func:`submit_transfer`."""

    id: str
    debit: str
    credit: str
    amount: int
    currency: str
    ref: str | None = None


class _Replayed(Exception):
    """A batch made without looking its ids up first met one that exists: run it again, looking."""


def create_transfers(sess: Session, requests: list[TransferRequest], *, now: datetime | None = None,
                     look_up: bool = True) -> list[Transfer | CiyuanError]:
    """Many single-phase transfers in one operation; each succeeds or fails on its own.

    One lock statement for all their accounts, one lookup of their ids (replays), then each is
    checked and applied in order in memory (a refused one changes nothing), and the accepted ones
    go in with one insert, one account update and one log insert. The answer for request ``i`` is
    its :class:`Transfer` or the error that refused it (the same errors :func:`create_transfer` raises).
    ``look_up=False`` skips the lookup (a statement) and raises :class:`_Replayed` if an id exists,
    for a caller that then runs the batch again in a new transaction.
    """
    now = now or now_utc()
    out: list[Transfer | CiyuanError | None] = [None] * len(requests)
    live: list[int] = []
    for i, r in enumerate(requests):
        try:
            _check_id(r.id)
            _check_amount(r.amount)
            if r.debit == r.credit:
                raise InvalidInput("a transfer must move money between two different accounts",
                                   hint="check the accounts")
            live.append(i)
        except CiyuanError as exc:
            out[i] = exc
    ids = sorted({a for i in live for a in (requests[i].debit, requests[i].credit)})
    locked: dict[str, _Acct] = {}
    if ids:
        try:
            locked = _lock(sess, ids)
        except NotFound:  # lock those that exist; requests naming a missing account are refused
            have = set(sess.connection().execute(select(_A.c.id).where(_A.c.id.in_(ids))).scalars())
            locked = _lock(sess, sorted(have))
    stored = {r.id: r for r in _stored(sess, [requests[i].id for i in live])} if live and look_up else {}
    w = _copies(locked)
    legs: list[dict] = []
    made: dict[str, tuple[dict, int]] = {}
    dups: list[tuple[int, int]] = []
    for i in live:
        r = requests[i]
        body = {"op": "single", "debit": r.debit, "credit": r.credit, "amount": r.amount, "currency": r.currency,
                "timeout_s": None, "ref": r.ref}
        leg = _leg(r.id, "single", "posted", r.debit, r.credit, r.amount, r.currency, body, now, ref=r.ref)
        try:
            if r.id in stored:
                out[i] = _replay([stored[r.id]], [leg])[0]
                continue
            if r.id in made:  # the same id twice in one batch: the second is a replay of the first
                first, j = made[r.id]
                if first["body_hash"] != leg["body_hash"]:
                    raise Conflict(f"transfer {r.id} already exists with a different body",
                                   hint="use a new transfer id for a different transfer",
                                   code="idempotency_conflict")
                dups.append((i, j))
                continue
            for aid in (r.debit, r.credit):
                if aid not in w:
                    raise NotFound(f"ledger account {aid} does not exist",
                                   hint="deposits and orders create ledger accounts; check the account name")
                if w[aid].currency != r.currency:
                    raise InvalidInput(f"{aid} holds {w[aid].currency}, not {r.currency}",
                                       hint="transfers stay in one currency")
            _limit(w[r.debit], r.amount, w[r.credit])
        except CiyuanError as exc:
            out[i] = exc
            continue
        w[r.debit].debits_posted += r.amount
        w[r.credit].credits_posted += r.amount
        legs.append(leg)
        made[r.id] = (leg, i)
    if legs:
        done = _apply(sess, legs, list(w.values()), locked, checked=look_up)
        if done is None:
            raise _Replayed
        for (_, i), t in zip(made.values(), done, strict=True):
            out[i] = t
    for i, j in dups:  # in-batch replays answer with the transfer made for the first occurrence
        out[i] = out[j]
    return out  # type: ignore[return-value]


class _Batcher:
    """Concurrent callers of :func:`submit_transfer` in one process share transactions.

    Each caller waits for its own answer; a worker takes every request queued so far (up to
    ``MAX``) and runs them as one :func:`create_transfers` unit of work, so the round trips and the
    commit are paid once per batch instead of once per transfer. ``WORKERS`` batches run at once
    (their lock statements are sorted, so they cannot deadlock).
    """

    MAX = 256
    WORKERS = 2

    def __init__(self, s: Settings | None):
        self.s = s
        self.cv = threading.Condition()
        self.queue: list[tuple[TransferRequest, list]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"ciyuan-ledger-batch-{i}")
                        for i in range(self.WORKERS)]
        for t in self.threads:
            t.start()

    def submit(self, req: TransferRequest) -> Transfer:
        slot: list = []
        with self.cv:
            self.queue.append((req, slot))
            self.cv.notify_all()
            while not slot:
                self.cv.wait()
        answer, bind, queued = slot[0]
        audit.wait_chained(bind, queued)  # the batch's entries, chained while the worker runs the next batch
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.queue:
                    self.cv.wait()
                batch, self.queue = self.queue[: self.MAX], self.queue[self.MAX :]
            reqs = [r for r, _ in batch]
            done: list = []

            def work(sess: Session, reqs: list = reqs, done: list = done, look_up: bool = False) -> list:
                out = create_transfers(sess, reqs, look_up=look_up)
                done[:] = [sess.get_bind(), audit.detach_queued(sess)]
                return out

            try:
                try:
                    answers: list = tx.run(work, self.s)
                except _Replayed:  # some were replays: look them up this time
                    answers = tx.run(lambda sess, work=work: work(sess, look_up=True), self.s)
                bind, queued = done
            except BaseException as exc:  # the whole unit of work failed: every caller hears it
                answers, bind, queued = [exc] * len(batch), None, []
            with self.cv:
                for (_, slot), a in zip(batch, answers, strict=True):
                    slot.append((a, bind, queued))
                self.cv.notify_all()


_batchers: dict[tuple[int, str], _Batcher] = {}
_batchers_lock = threading.Lock()


def submit_transfer(transfer_id: str, debit: str, credit: str, amount: int, currency: str, *,
                    ref: str | None = None, s: Settings | None = None) -> Transfer:
    """A single-phase transfer in its own committed unit of work, shared with concurrent callers.

    For callers that make many independent transfers at once (the throughput path): the result
    is the same as ``tx.run(lambda s: create_transfer(s, ...))`` (idempotent, same errors), but
    concurrent calls in one process are committed together. Returns once it is committed and
    its audit entry is chained.
    """
    cfg = s or settings()
    key = (os.getpid(), cfg.database_url)
    with _batchers_lock:
        b = _batchers.get(key)
        if b is None:
            b = _batchers[key] = _Batcher(s)
    return b.submit(TransferRequest(transfer_id, debit, credit, amount, currency, ref))


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


def expire_due(sess: Session, *, now: datetime | None = None, debit_account_id: str | None = None) -> int:
    """Expire the holds whose timeout has passed (all, or those drawing on one account).

    Each expiry is a ledger event: logged (``ledger.expired``) in the transaction that expires it,
    here and nowhere else.
    """
    now = now or now_utc()
    known = sess.info.get("ex_locked", {}).get(debit_account_id) if debit_account_id else None
    if known is not None and known.debits_pending == 0:  # locked here, and it holds nothing
        return 0
    conn = sess.connection()
    q = select(_T.c.seq, _T.c.debit_account_id, _T.c.credit_account_id).where(
        _T.c.kind == "pending", _T.c.state == "pending", _T.c.expires_at <= now
    )
    if debit_account_id is not None:
        q = q.where(_T.c.debit_account_id == debit_account_id)
    due = conn.execute(q.order_by(_T.c.seq)).all()
    if not due:
        return 0
    locked = _lock(sess, [a for r in due for a in (r.debit_account_id, r.credit_account_id)])
    gone = conn.execute(
        update(_T).where(_T.c.seq.in_([r.seq for r in due]), _T.c.state == "pending")
        .values(state="expired", resolved_at=now)
        .returning(_T.c.id, _T.c.debit_account_id, _T.c.credit_account_id, _T.c.amount)
    ).all()
    for r in gone:
        locked[r.debit_account_id].debits_pending -= r.amount
        locked[r.credit_account_id].credits_pending -= r.amount
    _write_accounts(sess, list(locked.values()))
    audit.append_many(sess, [_expiry_event(r.id, r.amount) for r in sorted(gone, key=lambda r: r.id)], at=now)
    return len(gone)


# -- the market's operations ----------------------------------------------------------------------


def deposit(
    sess: Session, transfer_id: str, buyer_id: str, amount: int, currency: str, *, now: datetime | None = None
) -> Transfer:
    """The operator credits a buyer's balance from outside funds."""
    cur = check_currency(currency)
    src, dst = ensure_accounts(sess, [(FUNDING, None, cur, 0), (BUYER, buyer_id, cur, 0)])
    return create_transfer(sess, transfer_id, src, dst, amount, cur, ref=f"deposit:{buyer_id}", now=now)


def split(amount: int, fee_bps: int) -> tuple[int, int]:
    """(provider share, platform fee): the fee is rounded down, so the two always add up exactly."""
    if not 0 <= fee_bps <= 10_000:
        raise InvalidInput(f"platform fee {fee_bps} bps is outside 0..10000", hint="set platform_fee_bps")
    fee = amount * fee_bps // 10_000
    return amount - fee, fee


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
    k = shard_of(buyer_id)
    buyer, holds, prov, plat = ensure_accounts(
        sess, [(BUYER, buyer_id, cur, 0), (HOLDS, None, cur, k), (PROVIDER, provider_id, cur, k),
               (PLATFORM, None, cur, k)])
    expire_due(sess, now=now, debit_account_id=buyer)
    locked = _lock(sess, [buyer, holds, prov, plat])
    body = {"op": "single", "debit": buyer, "credit": holds, "amount": amount, "currency": cur, "timeout_s": None,
            "ref": ref}
    first = _leg(transfer_id, "single", "posted", buyer, holds, amount, cur, body, now, ref=ref,
                 charge_id=transfer_id, leg="buyer")
    w = _copies(locked)
    try:
        _limit(w[buyer], amount, w[holds])
    except CiyuanError:
        if stored := _stored(sess, [transfer_id, f"{transfer_id}:provider", f"{transfer_id}:fee"]):
            return _charge_replay(stored, first)
        raise
    w[buyer].debits_posted += amount
    w[holds].credits_posted += amount
    legs = [first, *_pass_on(w, holds, prov, plat, transfer_id, amount, cur, fee_bps, ref, now)]
    out = _apply(sess, legs, list(w.values()), locked)
    if out is None:
        return _charge_replay(_stored(sess, [transfer_id, f"{transfer_id}:provider", f"{transfer_id}:fee"]), first)
    return out


def lock_for_charge(sess: Session, buyer_id: str, provider_id: str, currency: str) -> str:
    """Lock a buyer's balance and the shard accounts a charge of theirs passes through, in one statement.

    An order locks the buyer first (its idempotency check runs under that lock); taking the
    escrow, fee and provider shards in the same statement saves the charge a round trip.
    Returns the buyer's account id.
    """
    cur = check_currency(currency)
    k = shard_of(buyer_id)
    ids = ensure_accounts(sess, [(BUYER, buyer_id, cur, 0), (HOLDS, None, cur, k), (PROVIDER, provider_id, cur, k),
                                 (PLATFORM, None, cur, k)])
    _lock(sess, ids)
    return ids[0]


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


# -- reading ---------------------------------------------------------------------------------------


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


def settings_fee_bps(s: Settings | None = None) -> int:
    return (s or settings()).platform_fee_bps
