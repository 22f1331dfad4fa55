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
``platform_fees`` and ``holds`` (one each per currency; ``holds`` is the escrow a charge passes
through), and ``operator_funding`` (the outside world that deposits come from; it may go negative).

Concurrency: the accounts a unit of work changes are locked with ``SELECT ... FOR UPDATE`` in
sorted id order (no deadlocks between orderings); on SQLite the whole transaction holds the write
lock from ``BEGIN IMMEDIATE``. Functions taking ``sess`` compose inside a caller's transaction;
run them through :func:`ciyuan.db.tx.run` so races retry.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.errors import CiyuanError, Conflict, InvalidInput, NotFound
from ciyuan.ledger.money import MAX_AMOUNT, check_currency, format_amount
from ciyuan.ledger.tables import LedgerAccountRow, TransferRow

BUYER = "buyer_balance"
PROVIDER = "provider_earnings"
PLATFORM = "platform_fees"
HOLDS = "holds"
FUNDING = "operator_funding"
KINDS = (BUYER, PROVIDER, PLATFORM, HOLDS, FUNDING)

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


def remember_created(sess: Session) -> None:
    """After a commit: the accounts this unit of work ensured now surely exist (skip their INSERTs)."""
    created = sess.info.pop("ex_created", None)
    if created:
        _known.setdefault(sess.get_bind(), set()).update(created)


def ensure_account(sess: Session, kind: str, owner_id: str | None, currency: str) -> str:
    """Create the ledger account if it is missing (race-free: INSERT ... ON CONFLICT DO NOTHING)."""
    if kind not in KINDS:
        raise InvalidInput(f"unknown ledger account kind {kind!r}", hint=f"one of {', '.join(KINDS)}")
    cur = check_currency(currency)
    aid = account_id(kind, owner_id, cur)
    bind = sess.get_bind()
    known = _known.setdefault(bind, set())
    if aid in known:  # accounts are never deleted, so once seen it exists
        return aid
    values = dict(
        id=aid,
        kind=kind,
        owner_id=owner_id,
        currency=cur,
        flags=DEBITS_MUST_NOT_EXCEED_CREDITS if kind in (BUYER, HOLDS) else 0,
        debits_pending=0,
        debits_posted=0,
        credits_pending=0,
        credits_posted=0,
        created_at=now_utc(),
    )
    dialect = sess.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(LedgerAccountRow)
    sess.execute(ins.values(**values).on_conflict_do_nothing(index_elements=["id"]))
    sess.info.setdefault("ex_created", set()).add(aid)  # known only once this unit of work commits
    tx.after_commit(sess, remember_created)
    return aid


def _lock(sess: Session, ids: list[str]) -> dict[str, LedgerAccountRow]:
    """Lock the accounts in sorted id order so two units of work never wait on each other in a cycle."""
    rows: dict[str, LedgerAccountRow] = {}
    locked: dict[str, LedgerAccountRow] = sess.info.setdefault("ex_locked", {})
    for aid in sorted(set(ids)):
        if aid in locked:  # locked earlier in this transaction: the identity map holds the current row
            rows[aid] = locked[aid]
            continue
        row = sess.get(LedgerAccountRow, aid, with_for_update=True, populate_existing=True)
        if row is None:
            raise NotFound(
                f"ledger account {aid} does not exist",
                hint="deposits and orders create ledger accounts; check the account name",
            )
        rows[aid] = locked[aid] = row
    return rows


def _hash(body: dict) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _existing(sess: Session, transfer_id: str, body: dict) -> Transfer | None:
    row = sess.execute(select(TransferRow).where(TransferRow.id == transfer_id)).scalar_one_or_none()
    if row is None:
        return None
    if row.body_hash != _hash(body):
        raise Conflict(
            f"transfer {transfer_id} already exists with a different body",
            hint="use a new transfer id for a different transfer; resend the same body to replay",
            code="idempotency_conflict",
        )
    return Transfer.of(row)


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


def _fits(row: LedgerAccountRow, column: str, amount: int) -> None:
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


def _limit(
    row: LedgerAccountRow, amount: int, credit: LedgerAccountRow | None = None, *, pending: bool = False
) -> None:
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


def _insert(
    sess: Session,
    transfer_id: str,
    kind: str,
    state: str,
    debit: str,
    credit: str,
    amount: int,
    currency: str,
    body: dict,
    *,
    pending_id: str | None = None,
    expires_at: datetime | None = None,
    ref: str | None = None,
    now: datetime,
) -> Transfer:
    row = TransferRow(
        id=transfer_id,
        kind=kind,
        state=state,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        currency=currency,
        pending_id=pending_id,
        expires_at=expires_at,
        ref=ref,
        body_hash=_hash(body),
        created_at=now,
    )
    sess.add(row)
    sess.flush()
    transfer = Transfer.of(row)
    # every transfer enters the hash-chained audit log in its own transaction, so the log can
    # never miss one (imported here: audit imports this module for Transfer)
    from ciyuan.ledger import audit

    audit.record_transfer(sess, transfer)
    return transfer


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
    rows = _lock(sess, [debit, credit])
    if (found := _existing(sess, transfer_id, body)) is not None:  # checked under the lock: a racing twin
        # that committed first is seen here (read committed), so replays never double-apply
        return found
    for r in rows.values():
        if r.currency != currency:
            raise InvalidInput(f"{r.id} holds {r.currency}, not {currency}", hint="transfers stay in one currency")
    _limit(rows[debit], amount, rows[credit], pending=pending)
    if pending:
        timeout = settings().hold_timeout_s if timeout_s is None else timeout_s
        if timeout <= 0:
            raise InvalidInput("hold timeout must be positive seconds", hint="e.g. 300")
        rows[debit].debits_pending += amount
        rows[credit].credits_pending += amount
        return _insert(
            sess,
            transfer_id,
            "pending",
            "pending",
            debit,
            credit,
            amount,
            currency,
            body,
            expires_at=now + timedelta(seconds=timeout),
            ref=ref,
            now=now,
        )
    rows[debit].debits_posted += amount
    rows[credit].credits_posted += amount
    return _insert(sess, transfer_id, "single", "posted", debit, credit, amount, currency, body, ref=ref, now=now)


def _pending_row(sess: Session, pending_id: str) -> TransferRow:
    row = sess.execute(select(TransferRow).where(TransferRow.id == pending_id)).scalar_one_or_none()
    if row is None or row.kind != "pending":
        raise NotFound(f"pending transfer {pending_id} does not exist", hint="post or void the id of a hold")
    return row


def _resolve(
    sess: Session, transfer_id: str, pending_id: str, op: str, amount: int | None, now: datetime | None
) -> Transfer:
    _check_id(transfer_id)
    now = now or now_utc()
    body = {"op": op, "pending_id": pending_id, "amount": amount}
    head = _pending_row(sess, pending_id)
    rows = _lock(sess, [head.debit_account_id, head.credit_account_id])
    if (found := _existing(sess, transfer_id, body)) is not None:
        return found
    pend = sess.get(TransferRow, head.seq, populate_existing=True)
    if pend.state == "pending" and _aware(pend.expires_at) <= now:
        _expire_row(pend, rows, now)
    if pend.state != "pending":
        err = Conflict(
            f"pending transfer {pending_id} is already {pend.state}",
            hint="a hold can be posted or voided once, and not after it expired",
            code=f"pending_{pend.state}",
        )
        err.commit_first = pend.state == "expired"  # keep the expiry we just applied
        raise err
    value = pend.amount if amount is None else amount
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= pend.amount:
        raise InvalidInput(
            f"post amount {amount!r} must be a whole number from 0 to the held {pend.amount}",
            hint="a hold can be posted for less than it reserved, never more",
        )
    debit, credit = rows[pend.debit_account_id], rows[pend.credit_account_id]
    if op == "post":
        _fits(debit, "debits_posted", value)
        _fits(credit, "credits_posted", value)
    debit.debits_pending -= pend.amount
    credit.credits_pending -= pend.amount
    pend.resolved_at = now
    if op == "post":
        debit.debits_posted += value
        credit.credits_posted += value
        pend.state = "posted"
    else:
        pend.state = "voided"
        value = pend.amount
    return _insert(
        sess,
        transfer_id,
        op,
        "posted" if op == "post" else "voided",
        pend.debit_account_id,
        pend.credit_account_id,
        value,
        pend.currency,
        body,
        pending_id=pending_id,
        ref=pend.ref,
        now=now,
    )


def post_pending(
    sess: Session, transfer_id: str, pending_id: str, amount: int | None = None, *, now: datetime | None = None
) -> Transfer:
    """Settle a hold for ``amount`` (default all of it, never more); the rest returns to the payer."""
    return _resolve(sess, transfer_id, pending_id, "post", amount, now)


def void_pending(sess: Session, transfer_id: str, pending_id: str, *, now: datetime | None = None) -> Transfer:
    """Release a hold in full."""
    return _resolve(sess, transfer_id, pending_id, "void", None, now)


def _expire_row(pend: TransferRow, rows: dict[str, LedgerAccountRow], now: datetime) -> None:
    rows[pend.debit_account_id].debits_pending -= pend.amount
    rows[pend.credit_account_id].credits_pending -= pend.amount
    pend.state = "expired"
    pend.resolved_at = now


def expire_due(sess: Session, *, now: datetime | None = None, debit_account_id: str | None = None) -> int:
    """Expire the holds whose timeout has passed (all, or those drawing on one account)."""
    now = now or now_utc()
    q = select(TransferRow.seq).where(
        TransferRow.kind == "pending", TransferRow.state == "pending", TransferRow.expires_at <= now
    )
    if debit_account_id is not None:
        q = q.where(TransferRow.debit_account_id == debit_account_id)
    n = 0
    for seq in sess.execute(q.order_by(TransferRow.seq)).scalars().all():
        row = sess.get(TransferRow, seq)
        rows = _lock(sess, [row.debit_account_id, row.credit_account_id])
        row = sess.get(TransferRow, seq, populate_existing=True)
        if row.state == "pending":
            _expire_row(row, rows, now)
            n += 1
    sess.flush()
    return n


# -- the market's operations ----------------------------------------------------------------------


def deposit(
    sess: Session, transfer_id: str, buyer_id: str, amount: int, currency: str, *, now: datetime | None = None
) -> Transfer:
    """The operator credits a buyer's balance from outside funds."""
    cur = check_currency(currency)
    src = ensure_account(sess, FUNDING, None, cur)
    dst = ensure_account(sess, BUYER, buyer_id, cur)
    return create_transfer(sess, transfer_id, src, dst, amount, cur, ref=f"deposit:{buyer_id}", now=now)


def split(amount: int, fee_bps: int) -> tuple[int, int]:
    """(provider share, platform fee): the fee is rounded down, so the two always add up exactly."""
    if not 0 <= fee_bps <= 10_000:
        raise InvalidInput(f"platform fee {fee_bps} bps is outside 0..10000", hint="set platform_fee_bps")
    fee = amount * fee_bps // 10_000
    return amount - fee, fee


def _distribute(
    sess: Session,
    transfer_id: str,
    provider_id: str,
    amount: int,
    currency: str,
    fee_bps: int,
    ref: str | None,
    now: datetime,
) -> list[Transfer]:
    holds = ensure_account(sess, HOLDS, None, currency)
    share, fee = split(amount, fee_bps)
    out = []
    if share:
        prov = ensure_account(sess, PROVIDER, provider_id, currency)
        out.append(create_transfer(sess, f"{transfer_id}:provider", holds, prov, share, currency, ref=ref, now=now))
    if fee:
        plat = ensure_account(sess, PLATFORM, None, currency)
        out.append(create_transfer(sess, f"{transfer_id}:fee", holds, plat, fee, currency, ref=ref, now=now))
    return out


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
    """Take ``amount`` from a buyer at once: buyer -> holds, then holds -> provider share and platform fee."""
    now = now or now_utc()
    cur = check_currency(currency)
    fee_bps = settings().platform_fee_bps if fee_bps is None else fee_bps
    buyer = ensure_account(sess, BUYER, buyer_id, cur)
    holds = ensure_account(sess, HOLDS, None, cur)
    ensure_account(sess, PROVIDER, provider_id, cur)
    ensure_account(sess, PLATFORM, None, cur)
    expire_due(sess, now=now, debit_account_id=buyer)
    first = create_transfer(sess, transfer_id, buyer, holds, amount, cur, ref=ref, now=now)
    return [first, *_distribute(sess, transfer_id, provider_id, amount, cur, fee_bps, ref, now)]


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
    buyer = ensure_account(sess, BUYER, buyer_id, cur)
    holds = ensure_account(sess, HOLDS, None, cur)
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
    """Post a hold for ``amount`` (at most what it reserved) and pay the provider and platform from it."""
    now = now or now_utc()
    fee_bps = settings().platform_fee_bps if fee_bps is None else fee_bps
    posted = post_pending(sess, transfer_id, hold_id, amount, now=now)
    return [
        posted,
        *_distribute(sess, transfer_id, provider_id, posted.amount, posted.currency, fee_bps, posted.ref, now),
    ]


def release(sess: Session, transfer_id: str, hold_id: str, *, now: datetime | None = None) -> Transfer:
    """Void a hold: the whole reserved amount becomes available again."""
    return void_pending(sess, transfer_id, hold_id, now=now)


# -- reading ---------------------------------------------------------------------------------------


def balances(sess: Session, owner_id: str | None = None) -> list[Balance]:
    q = select(LedgerAccountRow).order_by(LedgerAccountRow.id)
    if owner_id is not None:
        q = q.where(LedgerAccountRow.owner_id == owner_id)
    return [
        Balance(r.id, r.kind, r.currency, r.debits_posted, r.credits_posted, r.debits_pending, r.credits_pending)
        for r in sess.execute(q).scalars()
    ]


def balance(sess: Session, kind: str, owner_id: str | None, currency: str) -> Balance:
    aid = account_id(kind, owner_id, check_currency(currency))
    r = sess.get(LedgerAccountRow, aid)
    if r is None:
        return Balance(aid, kind, currency, 0, 0, 0, 0)
    return Balance(r.id, r.kind, r.currency, r.debits_posted, r.credits_posted, r.debits_pending, r.credits_pending)


def get_transfer(sess: Session, transfer_id: str) -> Transfer:
    row = sess.execute(select(TransferRow).where(TransferRow.id == transfer_id)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"transfer {transfer_id} does not exist", hint="check the id")
    return Transfer.of(row)


def transfers(sess: Session, ref: str | None = None, account: str | None = None) -> list[Transfer]:
    q = select(TransferRow).order_by(TransferRow.seq)
    if ref is not None:
        q = q.where(TransferRow.ref == ref)
    if account is not None:
        q = q.where((TransferRow.debit_account_id == account) | (TransferRow.credit_account_id == account))
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
