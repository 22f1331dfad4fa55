"""The ledger's transfers: one operation's legs checked, written with their totals and audit events.

Every transfer debits one account and credits another by the same amount. Transfers have
client-chosen ids and are idempotent: the same id with the same body returns the stored transfer;
the same id with a different body is a :class:`~ciyuan.errors.Conflict`. :func:`_apply` writes an
operation's legs, the locked accounts' new totals and the audit events in one go (one statement on
PostgreSQL); :func:`create_transfer` is the single-phase or pending transfer, :func:`expire_due`
expires the holds whose timeout has passed (and logs each expiry, here and nowhere else).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from ciyuan.config import settings
from ciyuan.errors import CiyuanError, Conflict, InvalidInput
from ciyuan.ledger import audit
from ciyuan.ledger.accounts import TOTALS, _Acct, _insert_stmt, _limit, _lock, _write_accounts, now_utc
from ciyuan.ledger.money import MAX_AMOUNT, format_amount
from ciyuan.ledger.tables import TransferRow, transfer_facts


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


_T = TransferRow.__table__


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
