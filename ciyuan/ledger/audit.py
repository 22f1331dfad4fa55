"""Append-only, hash-chained audit log of every ledger and delivery event, with signed checkpoints.

Each entry stores the hash of the entry before it, and its own hash covers that link and its
content, so changing, removing or reordering any past entry breaks every hash after it.

Writing is in two steps, so that no unit of work holds the chain while it runs: a unit of work
queues its events in ``dl_audit_inbox`` (one insert, no lock, committed or rolled back with the
work), and after it commits a single appender (:func:`chain_pending`, whoever holds the head row's
lock) gives every committed event its seq and hash in one short transaction. That is a group
commit: under load one appender transaction chains many orders' events. The caller waits until
its own events are chained (:func:`drain`), so once a unit of work has returned, its events are
in the chain; an event a crash left in the inbox is chained by the next appender.

The ledger logs every transfer and every expiry itself, in the transaction that makes it (the
audit module knows transfers only as rows, through ``TransferRow.audited``; it imports nothing
from the ledger). :func:`verify` is read-only and proves, against the transfers table, that every
transfer is in the chain (or queued for it) with the same content and every chained transfer
still exists unchanged, and that the chain is whole up to its head. A chain an attacker rewrote
from some entry on (all hashes recomputed) or cut back is still "whole", so the head is pinned by
**checkpoints**: the head's seq and hash signed with the exchange's receipt key
(:mod:`ciyuan.ledger.signing`), stored in ``dl_audit_checkpoints`` and in
``audit_checkpoints.jsonl`` in the home, and published in every receipt and settlement statement.
:func:`verify` checks the chain against every stored checkpoint and any given from outside (a
receipt, a statement, a checkpoint file). The checkpoint documents, their storage and reading
them back are :mod:`ciyuan.ledger.checkpoints`; they are re-exported here for callers.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.orm import Session

from ciyuan.canonical import canonical_json
from ciyuan.config import Settings
from ciyuan.db import tx
from ciyuan.errors import InvalidInput
from ciyuan.ledger import signing
from ciyuan.ledger.checkpoints import CHECKPOINT_FILE as CHECKPOINT_FILE
from ciyuan.ledger.checkpoints import CHECKPOINT_TYPE as CHECKPOINT_TYPE
from ciyuan.ledger.checkpoints import AuditCheckpointRow as AuditCheckpointRow
from ciyuan.ledger.checkpoints import Checkpoint as Checkpoint
from ciyuan.ledger.checkpoints import load_checkpoints as load_checkpoints
from ciyuan.ledger.checkpoints import sign_checkpoint as sign_checkpoint
from ciyuan.ledger.checkpoints import store as store
from ciyuan.ledger.checkpoints import stored_checkpoints as stored_checkpoints
from ciyuan.ledger.tables import AuditHeadRow, AuditInboxRow, AuditRow, TransferRow

GENESIS = "0" * 64
_QUEUED = "audit_queued"  # sess.info key: inbox ids this transaction queued
MAX_PROBLEMS = 1000  # listed; more are counted
CHAIN_BATCH = 5000  # inbox events chained per appender transaction


def _canon(obj: Any) -> str:
    return canonical_json(obj, default=str)


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


def append(sess: Session, kind: str, ref: str, data: dict, *, at: datetime | None = None) -> bool:
    """Queue one entry for the chain unless one with the same ``ref`` is chained or queued already."""
    known = sess.execute(select(AuditRow.seq).where(AuditRow.ref == ref)).first() or sess.execute(
        select(AuditInboxRow.id).where(AuditInboxRow.ref == ref)).first()
    if known is not None:
        return False
    append_many(sess, [(kind, ref, data)], at=at)
    return True


def append_many(sess: Session, events: list[tuple[str, str, dict]], *, at: datetime | None = None) -> int:
    """Queue events ``(kind, ref, data)`` in the caller's transaction; they are chained after it commits.

    One multi-row insert into the inbox and no lock: orders do not wait on each other for the
    chain. The appender (:func:`chain_pending`) gives them their seq and hash once they are
    committed, in inbox order; an event whose ``ref`` is already chained is dropped there, so a
    repeated event can never wedge the transactions that queue it.
    """
    if not events:
        return 0
    rows = inbox_rows(events, at=at)
    queued(sess, sess.execute(insert(AuditInboxRow).returning(AuditInboxRow.id), rows).scalars().all())
    return len(rows)


def inbox_rows(events: list[tuple[str, str, dict]], *, at: datetime | None = None) -> list[dict]:
    """The inbox rows of events, for a writer that inserts them in a statement of its own."""
    stamp = (at or datetime.now(UTC)).isoformat()
    return [{"at": stamp, "kind": k, "ref": r, "data": _canon(d)} for k, r, d in events]


def queued(sess: Session, ids: list[int]) -> None:
    """Note inbox rows this unit of work inserted: they are chained once it commits."""
    if ids:
        sess.info.setdefault(_QUEUED, []).extend(ids)
        tx.after_commit(sess, chain_after_commit)


def _lock_head(sess: Session, *, wait: bool) -> tuple[int, str] | None:
    """Lock the head row (None when another appender holds it and ``wait`` is False)."""
    if sess.get_bind().dialect.name == "postgresql":
        sql = "SELECT seq, hash FROM dl_audit_head WHERE id = 1 FOR UPDATE" + ("" if wait else " SKIP LOCKED")
        row = sess.execute(text(sql)).first()
    else:  # SQLite: BEGIN IMMEDIATE already made this the only writer
        row = sess.execute(text("SELECT seq, hash FROM dl_audit_head WHERE id = 1")).first()
    return (int(row[0]), row[1]) if row is not None else None


def chain_pending(sess: Session, *, wait: bool = True, limit: int | None = None) -> list[int] | None:
    """Move committed inbox events into the chain under the head's lock; the inbox ids taken.

    None: another appender holds the head (only with ``wait=False``); it chains what is committed.
    Three statements on PostgreSQL whatever the number of events: lock the head, read the inbox
    (with whether each ref is chained already), and one statement that inserts the entries,
    empties those inbox rows and moves the head.
    """
    head_now = _lock_head(sess, wait=wait)
    if head_now is None:
        return None
    Q = AuditInboxRow
    q = (select(Q.id, Q.at, Q.kind, Q.ref, Q.data, AuditRow.seq)
         .outerjoin(AuditRow, AuditRow.ref == Q.ref).order_by(Q.id).limit(limit or CHAIN_BATCH))
    queued = sess.execute(q).all()
    if not queued:
        return []
    seq, prev = head_now
    rows, seen = [], set()
    for q in queued:
        if q[5] is not None or q.ref in seen:  # the same event queued twice: the chain keeps the first
            continue
        seen.add(q.ref)
        seq += 1
        h = entry_hash(prev, seq, q.at, q.kind, q.ref, q.data)
        rows.append({"seq": seq, "at": q.at, "kind": q.kind, "ref": q.ref, "data": q.data, "prev_hash": prev,
                     "hash": h})
        prev = h
    ids = [q.id for q in queued]
    if sess.get_bind().dialect.name == "postgresql":
        sess.execute(text(
            "WITH ins AS (INSERT INTO dl_audit (seq, at, kind, ref, data, prev_hash, hash) "
            "SELECT seq, at, kind, ref, data, prev_hash, hash FROM json_to_recordset(CAST(:rows AS json)) "
            "AS r(seq bigint, at text, kind text, ref text, data text, prev_hash text, hash text)), "
            "del AS (DELETE FROM dl_audit_inbox WHERE id = ANY(:ids)) "
            "UPDATE dl_audit_head SET seq = :seq, hash = :hash WHERE id = 1"),
            {"rows": json.dumps(rows), "ids": ids, "seq": seq, "hash": prev})
        return ids
    if rows:
        sess.execute(insert(AuditRow), rows)
        sess.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1).values(seq=seq, hash=prev))
    for i in range(0, len(ids), 500):
        sess.execute(delete(Q).where(Q.id.in_(ids[i : i + 500])))
    return ids


def drain(bind: Any) -> None:
    """Chain everything queued now (waiting for the head if another appender holds it)."""
    while True:
        with Session(bind) as s2, s2.begin():
            n = len(chain_pending(s2, wait=True) or [])
        if n < CHAIN_BATCH:
            return


class _Appender:
    """One per process and database: chains what its process's units of work queued, in groups.

    Committers hand it their inbox ids and wait; it takes the head without waiting for it
    (``SKIP LOCKED``) and chains every committed event, its own process's and others'. When
    another process's appender holds the head, it only checks which of its ids are gone from the
    inbox (that appender chains them: they were committed before they were handed over).
    Each committer waits on an event of its own, set once all of its ids are chained, so a group
    that is done wakes only its own committers (a shared condition woke every waiter each time).
    """

    WAIT_S = 30.0  # a committer never waits longer; its events stay queued and are chained later

    def __init__(self, bind: Any):
        self.bind = bind
        self.cv = threading.Condition()  # guards waiting/waiters; wakes the appender thread only
        self.waiting: set[int] = set()
        self.waiters: list[tuple[set[int], threading.Event]] = []
        self.thread: threading.Thread | None = None

    def wait(self, ids: list[int]) -> None:
        mine, done = set(ids), threading.Event()
        with self.cv:
            self.waiting.update(mine)
            self.waiters.append((mine, done))
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="ciyuan-audit-appender", daemon=True)
                self.thread.start()
            self.cv.notify()
        if not done.wait(self.WAIT_S):
            with self.cv:
                self.waiting.difference_update(mine)
                self.waiters = [w for w in self.waiters if w[1] is not done]

    def _run(self) -> None:
        pause = 0.0005
        while True:
            with self.cv:
                while not self.waiting:
                    self.cv.wait()
                want = set(self.waiting)
            try:
                with Session(self.bind) as s2, s2.begin():
                    took = chain_pending(s2, wait=False)
                done = want.intersection(took or ())
                rest = want - done
                if rest and (took is None or len(took) < CHAIN_BATCH):
                    with Session(self.bind) as s2, s2.begin():
                        present = set(s2.execute(select(AuditInboxRow.id)
                                                 .where(AuditInboxRow.id.in_(sorted(rest)))).scalars())
                    done |= rest - present
                if took is None and not done:
                    time.sleep(pause)
                    pause = min(pause * 2, 0.01)
                else:
                    pause = 0.0005
            except Exception:  # the database is away: the events stay queued; try again shortly
                done = set()
                time.sleep(0.1)
            if done:
                with self.cv:
                    self.waiting.difference_update(done)
                    keep = []
                    for ids, ev in self.waiters:
                        if ids.isdisjoint(self.waiting):
                            ev.set()
                        else:
                            keep.append((ids, ev))
                    self.waiters = keep


_appenders: dict[tuple[int, int], _Appender] = {}
_appenders_lock = threading.Lock()


def chain_after_commit(sess: Session) -> None:
    """After-commit hook: this unit of work's events are chained before its caller goes on."""
    mine = sess.info.pop(_QUEUED, None)
    if mine:
        wait_chained(sess.get_bind(), mine)


def detach_queued(sess: Session) -> list[int]:
    """Take this unit of work's queued ids: the caller then waits for them (:func:`wait_chained`) itself."""
    return sess.info.pop(_QUEUED, None) or []


def wait_chained(bind: Any, mine: list[int]) -> None:
    """Return once the inbox rows ``mine`` (committed) are in the chain."""
    if not mine:
        return
    if bind.dialect.name != "postgresql":  # SQLite has one writer at a time: chain right here
        drain(bind)
        return
    key = (os.getpid(), id(bind))
    with _appenders_lock:
        app = _appenders.get(key)
        if app is None or app.bind is not bind:
            app = _appenders[key] = _Appender(bind)
    app.wait(mine)


def entries(sess: Session, *, after: int = 0, limit: int = 1000, ref_prefix: str | None = None) -> list[Entry]:
    q = select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(max(1, min(limit, 10_000)))
    if ref_prefix:
        q = q.where(AuditRow.ref.startswith(ref_prefix, autoescape=True))
    return [Entry.of(r) for r in sess.execute(q).scalars()]


# -- checkpoints ----------------------------------------------------------------------------------


def head(sess: Session) -> tuple[int, str]:
    """The chain's committed head ``(seq, hash)``."""
    row = sess.get(AuditHeadRow, 1)
    return (row.seq, row.hash) if row is not None else (0, GENESIS)


def checkpoint(sess: Session, s: Settings | None = None) -> dict:
    """Sign the committed head, store it, and return the signed ``{"checkpoint", "signature"}``.

    Run it in a transaction that has not appended to the log: the head it signs must be committed
    already, or a rolled-back transaction would leave a checkpoint of entries that never existed.
    """
    if sess.info.get(_QUEUED):
        raise RuntimeError("audit.checkpoint must run in a transaction that did not append to the log")
    chain_pending(sess)  # what is committed is in the chain before its head is signed
    seq, h = head(sess)
    signed = sign_checkpoint(seq, h, s)
    store(sess, signed, s)
    return signed


def seq_before(sess: Session, end: datetime) -> int:
    """The seq of the last entry stamped before ``end`` (0 if none), by bisection over the chain.

    Entry stamps follow seq order (to within the time between a unit of work's clock reading and
    its lock of the head), so for a closed period the answer does not change.
    """
    lo, hi = 0, head(sess)[0]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        row = sess.get(AuditRow, mid)
        if row is not None and datetime.fromisoformat(row.at) < end:
            lo = mid
        else:
            hi = mid - 1
    return lo


def checkpoint_of(sess: Session, seq: int) -> dict:
    """``{"seq", "hash"}`` of entry ``seq`` (seq 0 is the genesis)."""
    if seq == 0:
        return {"seq": 0, "hash": GENESIS}
    row = sess.get(AuditRow, seq)
    if row is None:
        raise InvalidInput(f"the audit log has no entry {seq}", hint="run ciyuan audit verify")
    return {"seq": seq, "hash": row.hash}


# -- verification ---------------------------------------------------------------------------------


def verify(
    sess: Session,
    *,
    checkpoints: Iterable[Checkpoint] = (),
    key: str | None = None,
    s: Settings | None = None,
    use_stored: bool = True,
) -> dict:
    """Prove the ledger's transfers by the chain, and the chain by signed checkpoints; read-only.

    Checks, each failure listed in ``problems``: (c) seq runs 1, 2, ... without a gap, every entry
    links to the hash before it and matches its own hash, the head names the last entry, and every
    checkpoint (stored, and ``checkpoints`` given from outside) is signed by the exchange's key
    (``key``, default this home's) and names an entry the chain has, with that entry's hash;
    (a) every transfer row is in the chain with the same content; (b) every chained transfer still
    exists. A hold's state is not a transfer's content: ``ledger.check`` ties it to the resolving
    transfers, which this proves.
    """
    problems: list[dict] = []
    n_problems = 0

    def problem(seq: int | None, text: str, **extra: Any) -> None:
        nonlocal n_problems
        n_problems += 1
        if len(problems) < MAX_PROBLEMS:
            problems.append({"seq": seq, "problem": text, **extra})

    pub = signing.exchange_key(key, None, s) if key or signing.home_public_key(s) else None
    cps = (stored_checkpoints(sess, s) if use_stored else []) + list(checkpoints)
    by_seq: dict[int, list[Checkpoint]] = {}
    for cp in cps:
        if cp.doc is None:
            problem(cp.seq, f"checkpoint {cp.source} is not a signed checkpoint of its seq and hash (changed)",
                    checkpoint=cp.source)
            continue
        bad, _ = signing.check_signature(cp.doc, pub) if pub else ("this home has no exchange key", None)
        if bad is not None:
            problem(cp.seq, f"checkpoint {cp.source} does not verify: {bad}", checkpoint=cp.source)
            continue
        by_seq.setdefault(cp.seq, []).append(cp)
    for cp in by_seq.get(0, []):
        if cp.hash != GENESIS:
            problem(0, f"checkpoint {cp.source} names a genesis hash that is not the genesis", checkpoint=cp.source)

    prev, expect_seq, count = GENESIS, 1, 0
    logged: dict[str, tuple[int, str]] = {}
    for row in sess.execute(select(AuditRow).order_by(AuditRow.seq)).yield_per(2000).scalars():
        count += 1
        if row.seq != expect_seq:
            problem(row.seq, f"expected entry {expect_seq}: an entry is missing")
        if row.prev_hash != prev:
            problem(row.seq, "prev_hash does not match the entry before it")
        if entry_hash(row.prev_hash, row.seq, row.at, row.kind, row.ref, row.data) != row.hash:
            problem(row.seq, "entry content does not match its hash (changed)")
        for cp in by_seq.get(row.seq, ()):
            if cp.hash != row.hash:
                problem(row.seq, f"entry {row.seq} differs from the signed checkpoint {cp.source}: the log was "
                                 "rewritten from here or before", checkpoint=cp.source)
        if row.kind == "ledger.transfer":
            logged[row.ref[len("transfer:") :]] = (row.seq, row.data)
        prev, expect_seq = row.hash, row.seq + 1
    queued = 0
    Q = AuditInboxRow
    for ref, data in sess.execute(select(Q.ref, Q.data).where(Q.kind == "ledger.transfer").order_by(Q.id)):
        tid = ref[len("transfer:") :]
        if tid not in logged:  # committed, not chained yet: logged all the same
            logged[tid] = (None, data)
            queued += 1
    last = expect_seq - 1
    hrow = sess.get(AuditHeadRow, 1)
    if hrow is None or hrow.hash != prev or hrow.seq != last:
        problem(None, "the head does not name the last entry (entries removed at the end, or the head moved)")
    for seq in sorted(k for k in by_seq if k > last):
        for cp in by_seq[seq]:
            problem(seq, f"the log ends at entry {last} but {cp.source} signed entry {seq}: entries were removed "
                         "and the head moved back", checkpoint=cp.source)
    unlogged = 0
    transfers = 0
    for row in sess.execute(select(TransferRow).order_by(TransferRow.seq)).yield_per(2000).scalars():
        transfers += 1
        found = logged.pop(row.id, None)
        if found is None:
            unlogged += 1
            problem(None, f"transfer {row.id} is in the ledger but not in the audit log (not written by the ledger; "
                          "a home older than the log needs `ciyuan audit adopt`)", transfer=row.id)
            continue
        seq, text = found
        data, have = json.loads(text), row.audited()
        if "expires_at" not in data:  # entries logged before expires_at was audited
            have.pop("expires_at")
        if "charge_id" not in data:  # entries logged before charges had columns (migration 0007)
            have.pop("charge_id", None)
            have.pop("leg", None)
        if data != have:
            changed = sorted(k for k in set(data) | set(have) if data.get(k) != have.get(k))
            problem(seq, f"transfer {row.id} differs from what the audit log recorded ({', '.join(changed)})",
                    transfer=row.id)
    for tid, (seq, _) in sorted(logged.items(), key=lambda kv: kv[1][0] or 0):
        problem(seq, f"transfer {tid} is in the audit log but missing from the ledger (deleted)", transfer=tid)
    latest = max(by_seq, default=None)
    return {
        "ok": n_problems == 0,
        "entries": count,
        "head": prev,
        "head_seq": last,
        "transfers": transfers,
        "unlogged_transfers": unlogged,
        "queued_transfers": queued,
        "missing_transfers": len(logged),
        "checkpoints": {"checked": sum(len(v) for v in by_seq.values()), "latest_seq": latest,
                        "covers_head": latest is not None and latest >= last},
        "problems": problems,
        "problems_total": n_problems,
    }
