"""Append-only, hash-chained audit log of every ledger and delivery event.

Each entry stores the hash of the entry before it, and its own hash covers that link and its
content, so changing, removing or reordering any past entry breaks every hash after it;
:func:`verify` walks the chain from the start and says where it breaks. Appends lock one head
row, so concurrent writers on PostgreSQL cannot fork the chain (SQLite writers are serialised
anyway). The lock is taken last in a unit of work, after the ledger's account locks, so lock order
stays acyclic.

Every ledger transfer is logged by the ledger itself, in the transaction that inserts it
(:func:`record_transfer`, called from the ledger's single insert path). Holds that expired on
their own (a state change, not a transfer) and transfers from before this rule are brought in by
:func:`sync_ledger`, which is idempotent because every entry has a unique ``ref``.

The head row is locked once per transaction and kept (``sess.info``) with the entries hashed so
far; they are written in one insert when the transaction commits (or something reads the log), so
a unit of work with several transfers pays one lock and two statements, not two per entry.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import event, exists, insert, literal, select
from sqlalchemy.orm import Session

from ciyuan.exchange.delivery_tables import AuditHeadRow, AuditRow
from ciyuan.exchange.ledger import Transfer
from ciyuan.exchange.tables import TransferRow

GENESIS = "0" * 64
_HEAD = "audit_head"  # sess.info key of the head row locked by this transaction


def _canon(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(prev_hash: str, seq: int, at: str, kind: str, ref: str, data: str) -> str:
    """The hash that links an entry to the chain: covers the previous hash and all of its fields."""
    return hashlib.sha256(_canon([prev_hash, seq, at, kind, ref, data]).encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    seq: int
    at: str
    kind: str
    ref: str
    data: dict
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, row: AuditRow) -> Entry:
        return cls(row.seq, row.at, row.kind, row.ref, json.loads(row.data), row.prev_hash, row.hash)

    def to_dict(self) -> dict:
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind,
            "ref": self.ref,
            "data": self.data,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


def append(sess: Session, kind: str, ref: str, data: dict, *, at: datetime | None = None) -> Entry:
    """Add one entry at the end of the chain; an entry with the same ``ref`` is returned as is."""
    flush(sess)
    found = sess.execute(select(AuditRow).where(AuditRow.ref == ref)).scalar_one_or_none()
    if found is not None:
        return Entry.of(found)
    return append_many(sess, [(kind, ref, data)], at=at)[0]


class _Chain:
    """This transaction's end of the chain: the locked head, and entries hashed but not yet written."""

    def __init__(self, head: AuditHeadRow):
        self.head = head
        self.seq, self.hash = head.seq, head.hash
        self.rows: list[dict] = []


def append_many(sess: Session, events: list[tuple[str, str, dict]], *, at: datetime | None = None) -> list[Entry]:
    """Add events ``(kind, ref, data)`` in order under one lock of the head (refs must be new).

    Entries are hashed and chained at once, but written (one multi-row insert, one update of the
    head) when the transaction commits or when something reads the log, so a unit of work with
    several transfers costs two statements for its entries instead of two per entry.
    """
    if not events:
        return []
    chain: _Chain | None = sess.info.get(_HEAD)
    if chain is None:  # first append of this transaction: lock the head; later ones reuse the lock
        head = sess.get(AuditHeadRow, 1, with_for_update=True, populate_existing=True)
        chain = sess.info[_HEAD] = _Chain(head)
        event.listen(sess, "before_commit", flush)
    stamp = (at or datetime.now(UTC)).isoformat()
    prev, seq = chain.hash, chain.seq
    out = []
    for kind, ref, data in events:
        seq += 1
        text = _canon(data)
        h = entry_hash(prev, seq, stamp, kind, ref, text)
        chain.rows.append({"seq": seq, "at": stamp, "kind": kind, "ref": ref, "data": text, "prev_hash": prev,
                           "hash": h})
        out.append(Entry(seq, stamp, kind, ref, json.loads(text), prev, h))
        prev = h
    chain.seq, chain.hash = seq, prev
    return out


def flush(sess: Session) -> None:
    """Write this transaction's pending entries and move the head (run before commit and reads)."""
    chain: _Chain | None = sess.info.get(_HEAD)
    if chain is None or not chain.rows:
        return
    rows, chain.rows = chain.rows, []
    sess.execute(insert(AuditRow), rows)
    chain.head.seq, chain.head.hash = chain.seq, chain.hash
    sess.flush()


def transfer_data(t: Transfer | TransferRow) -> dict:
    """The audited facts of a transfer (its state changes are logged as their own events)."""
    created = t.created_at
    if created is not None:  # SQLite hands back naive UTC; PostgreSQL the session's zone
        created = created.replace(tzinfo=UTC) if created.tzinfo is None else created.astimezone(UTC)
    return {
        "id": t.id,
        "kind": t.kind,
        "debit": t.debit_account_id,
        "credit": t.credit_account_id,
        "amount": int(t.amount),
        "currency": t.currency,
        "pending_id": t.pending_id,
        "ref": t.ref,
        "created_at": created.isoformat() if created else None,
    }


def record_transfer(sess: Session, t: Transfer | TransferRow) -> Entry:
    """Log a transfer not yet in the log, in the caller's transaction.

    No lookup first: the ledger calls this only for a transfer it has just inserted, and
    :func:`sync_ledger` only for transfers it found unlogged; a second entry for one transfer
    would be refused by the unique ``ref``.
    """
    return append_many(sess, [transfer_event(t)])[0]


def transfer_event(t: Transfer | TransferRow) -> tuple[str, str, dict]:
    """The event of a transfer, for :func:`append_many`."""
    return "ledger.transfer", f"transfer:{t.id}", transfer_data(t)


def sync_ledger(sess: Session) -> int:
    """Log every transfer not yet in the chain, and every hold that expired, in ledger order."""
    flush(sess)
    n = 0
    T = TransferRow
    missing = select(T).where(~exists().where(AuditRow.ref == literal("transfer:") + T.id)).order_by(T.seq)
    for row in sess.execute(missing).scalars().all():
        record_transfer(sess, row)
        n += 1
    expired = (
        select(T)
        .where(T.kind == "pending", T.state == "expired")
        .where(~exists().where(AuditRow.ref == literal("expired:") + T.id))
        .order_by(T.seq)
    )
    for row in sess.execute(expired).scalars().all():
        append(sess, "ledger.expired", f"expired:{row.id}", {"id": row.id, "amount": int(row.amount)})
        n += 1
    return n


def entries(sess: Session, *, after: int = 0, limit: int = 1000, ref_prefix: str | None = None) -> list[Entry]:
    flush(sess)
    q = select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(max(1, min(limit, 10_000)))
    if ref_prefix:
        q = q.where(AuditRow.ref.startswith(ref_prefix, autoescape=True))
    return [Entry.of(r) for r in sess.execute(q).scalars()]


def verify(sess: Session) -> dict:
    """Walk the chain: every link and hash must hold, and every ledger transfer must match its entry."""
    flush(sess)
    problems: list[dict] = []
    prev, expect_seq, count = GENESIS, 1, 0
    logged: dict[str, dict] = {}
    for row in sess.execute(select(AuditRow).order_by(AuditRow.seq)).yield_per(2000).scalars():
        count += 1
        if row.seq != expect_seq:
            problems.append({"seq": row.seq, "problem": f"expected entry {expect_seq}: an entry is missing"})
        if row.prev_hash != prev:
            problems.append({"seq": row.seq, "problem": "prev_hash does not match the entry before it"})
        if entry_hash(row.prev_hash, row.seq, row.at, row.kind, row.ref, row.data) != row.hash:
            problems.append({"seq": row.seq, "problem": "entry content does not match its hash (changed)"})
        if row.kind == "ledger.transfer":
            logged[row.ref[len("transfer:") :]] = json.loads(row.data)
        prev, expect_seq = row.hash, row.seq + 1
    head = sess.get(AuditHeadRow, 1)
    if head is None or head.hash != prev or head.seq != count:
        problems.append({"seq": None, "problem": "the head does not name the last entry (entries removed at the end)"})
    unlogged = 0
    for row in sess.execute(select(TransferRow).order_by(TransferRow.seq)).yield_per(2000).scalars():
        data = logged.get(row.id)
        if data is None:
            unlogged += 1
        elif data != transfer_data(row):
            problems.append({"seq": None, "problem": f"transfer {row.id} differs from what the audit log recorded"})
    return {"ok": not problems, "entries": count, "head": prev, "unlogged_transfers": unlogged, "problems": problems}
