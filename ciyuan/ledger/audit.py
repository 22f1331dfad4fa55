"""Append-only, hash-chained audit log of every ledger and delivery event, with signed checkpoints.

Each entry stores the hash of the entry before it, and its own hash covers that link and its
content, so changing, removing or reordering any past entry breaks every hash after it. Appends
lock one head row, so concurrent writers on PostgreSQL cannot fork the chain (SQLite writers are
serialised anyway). The lock is taken last in a unit of work, after the ledger's account locks,
so lock order stays acyclic.

Every ledger transfer is logged by the ledger itself, in the transaction that inserts it
(:func:`record_transfer`, called from the ledger's single insert path), so the log never lacks
one. :func:`verify` is read-only and proves, against the transfers table, that every transfer
is in the chain with the same content and every chained transfer still exists unchanged, and
that the chain is whole up to its head. A chain an attacker rewrote from some entry on (all
hashes recomputed) or cut back is still "whole", so the head is pinned by **checkpoints**: the
head's seq and hash signed with the exchange's receipt key (:mod:`ciyuan.ledger.signing`),
stored in ``dl_audit_checkpoints`` and in ``audit_checkpoints.jsonl`` in the home, and
published in every receipt and settlement statement. :func:`verify` checks the chain against
every stored checkpoint and any given from outside (a receipt, a statement, a checkpoint file).

:func:`adopt` is the operator's explicit step for homes whose transfers predate the chain; it
is never part of verification.

The head row is locked once per transaction and kept (``sess.info``) with the entries hashed so
far; they are written in one insert when the transaction commits (or something reads the log), so
a unit of work with several transfers pays one lock and two statements, not two per entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, String, Text, event, exists, func, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from ciyuan.canonical import canonical_json
from ciyuan.config import Settings, settings
from ciyuan.db import Base
from ciyuan.errors import InvalidInput
from ciyuan.ledger import signing
from ciyuan.ledger.tables import AuditHeadRow, AuditRow, TransferRow

if TYPE_CHECKING:  # typing only: the audit module imports nothing from the ledger at run time
    from ciyuan.ledger.ledger import Transfer

GENESIS = "0" * 64
_HEAD = "audit_head"  # sess.info key of the head row locked by this transaction
CHECKPOINT_TYPE = "ciyuan.audit.checkpoint.v1"
CHECKPOINT_FILE = "audit_checkpoints.jsonl"  # in the home: outside the database
MAX_PROBLEMS = 1000  # listed; more are counted


class AuditCheckpointRow(Base):
    """A signed checkpoint of the chain: entry ``seq`` had ``hash`` (created by migration 0005)."""

    __tablename__ = "dl_audit_checkpoints"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    signed: Mapped[str] = mapped_column(Text)  # the canonical {"checkpoint", "signature"} document


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


def _iso(ts: datetime | None) -> str | None:
    """SQLite hands back naive UTC; PostgreSQL the session's zone: one spelling for both."""
    if ts is None:
        return None
    return (ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)).isoformat()


def transfer_data(t: Transfer | TransferRow) -> dict:
    """The audited facts of a transfer (its state changes are logged as their own events)."""
    return {
        "id": t.id,
        "kind": t.kind,
        "debit": t.debit_account_id,
        "credit": t.credit_account_id,
        "amount": int(t.amount),
        "currency": t.currency,
        "pending_id": t.pending_id,
        "expires_at": _iso(t.expires_at),
        "ref": t.ref,
        "created_at": _iso(t.created_at),
    }


def record_transfer(sess: Session, t: Transfer | TransferRow) -> Entry:
    """Log a transfer not yet in the log, in the caller's transaction.

    No lookup first: the ledger calls this only for a transfer it has just inserted, and
    :func:`adopt` only for transfers it found unlogged; a second entry for one transfer
    would be refused by the unique ``ref``.
    """
    return append_many(sess, [transfer_event(t)])[0]


def transfer_event(t: Transfer | TransferRow) -> tuple[str, str, dict]:
    """The event of a transfer, for :func:`append_many`."""
    return "ledger.transfer", f"transfer:{t.id}", transfer_data(t)


# -- adopting a legacy home ---------------------------------------------------------------------


def adopt(sess: Session) -> dict:
    """Operator step for a home whose transfers predate the chain: log them, and holds that expired.

    Only transfers older (by ledger ``seq``) than the first transfer already in the chain are
    adopted; an unlogged transfer made after the chain began was not written by the ledger
    (every ledger insert logs itself) and is refused, listed, for the operator to investigate.
    The adoption itself is logged as an ``audit.adopt`` entry naming what was adopted.
    """
    flush(sess)
    T = TransferRow
    chained = exists().where(AuditRow.ref == literal("transfer:") + T.id)
    first = sess.execute(select(func.min(T.seq)).where(chained)).scalar_one_or_none()
    adopted: list[str] = []
    refused: list[str] = []
    for row in sess.execute(select(T).where(~chained).order_by(T.seq)).scalars().all():
        if first is not None and row.seq > first:
            refused.append(row.id)
            continue
        record_transfer(sess, row)
        adopted.append(row.id)
    expired = (
        select(T)
        .where(T.kind == "pending", T.state == "expired")
        .where(~exists().where(AuditRow.ref == literal("expired:") + T.id))
        .order_by(T.seq)
    )
    expiries = 0
    for row in sess.execute(expired).scalars().all():
        append(sess, "ledger.expired", f"expired:{row.id}", {"id": row.id, "amount": int(row.amount)})
        expiries += 1
    if adopted:
        flush(sess)
        n = sess.execute(select(func.count()).select_from(AuditRow).where(AuditRow.kind == "audit.adopt")).scalar_one()
        append(sess, "audit.adopt", f"adopt:{n + 1}", {"transfers": adopted})
    return {"adopted": adopted, "expiries": expiries, "refused": refused}


def entries(sess: Session, *, after: int = 0, limit: int = 1000, ref_prefix: str | None = None) -> list[Entry]:
    flush(sess)
    q = select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(max(1, min(limit, 10_000)))
    if ref_prefix:
        q = q.where(AuditRow.ref.startswith(ref_prefix, autoescape=True))
    return [Entry.of(r) for r in sess.execute(q).scalars()]


# -- checkpoints ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A claim that entry ``seq`` of the chain has ``hash``, from ``source``, with its signed document."""

    seq: int
    hash: str
    source: str
    doc: dict | None  # the signed document it came from (None: unsigned, e.g. a broken row)


def head(sess: Session) -> tuple[int, str]:
    """The chain's committed head ``(seq, hash)``."""
    row = sess.get(AuditHeadRow, 1)
    return (row.seq, row.hash) if row is not None else (0, GENESIS)


def _checkpoint_file(s: Settings | None) -> Path:
    return Path((s or settings()).home) / CHECKPOINT_FILE


def sign_checkpoint(seq: int, hash_: str, s: Settings | None = None, *, at: datetime | None = None) -> dict:
    body = {"type": CHECKPOINT_TYPE, "seq": int(seq), "hash": hash_, "at": (at or datetime.now(UTC)).isoformat()}
    return signing.sign_doc("checkpoint", body, s)


def store(sess: Session, signed: dict, s: Settings | None = None) -> bool:
    """Keep a signed checkpoint in the database and in the home's file; False if one for its seq is kept.

    A checkpoint once stored for a seq is never replaced, so a rewritten chain cannot bring its own
    checkpoint in place of the old one; the home's file gets a line whenever the table gets a row.
    """
    cp = signed["checkpoint"]
    text = signing.canonical(signed).decode()
    dialect = sess.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(AuditCheckpointRow)
    stmt = ins.values(seq=cp["seq"], hash=cp["hash"], signed=text).on_conflict_do_nothing(index_elements=["seq"])
    if sess.execute(stmt.returning(AuditCheckpointRow.seq)).scalar_one_or_none() is None:
        return False  # one is kept for this seq already
    path = _checkpoint_file(s)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (text + "\n").encode())  # one write of one line: concurrent appenders do not interleave
    finally:
        os.close(fd)
    return True


def checkpoint(sess: Session, s: Settings | None = None) -> dict:
    """Sign the committed head, store it, and return the signed ``{"checkpoint", "signature"}``.

    Run it in a transaction that has not appended to the log: the head it signs must be committed
    already, or a rolled-back transaction would leave a checkpoint of entries that never existed.
    """
    if sess.info.get(_HEAD) is not None:
        raise RuntimeError("audit.checkpoint must run in a transaction that did not append to the log")
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


def _from_doc(doc: object, source: str) -> list[Checkpoint]:
    """The checkpoint a signed document carries (a checkpoint, a receipt or a statement)."""
    if not isinstance(doc, dict) or "signature" not in doc:
        raise InvalidInput(f"{source} is not a signed checkpoint, receipt or statement",
                           hint="give a file from ciyuan audit checkpoint, a receipt or a settlement statement")
    body = next((doc[k] for k in signing.FIELDS if k in doc), None)
    if isinstance(body, dict) and "checkpoint" in doc:
        if body.get("type") != CHECKPOINT_TYPE:  # one key signs receipts too: a body must say what it is
            raise InvalidInput(f"{source} is not a {CHECKPOINT_TYPE}", hint="use the file as issued")
        cp = body
    elif isinstance(body, dict) and isinstance(body.get("audit_checkpoint"), dict):
        cp = body["audit_checkpoint"]
    else:
        raise InvalidInput(f"{source} carries no audit checkpoint (seq and hash)",
                           hint="receipts and statements issued before checkpoints existed name no seq")
    seq, h = cp.get("seq"), cp.get("hash")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0 or not isinstance(h, str):
        raise InvalidInput(f"{source}: the checkpoint's seq and hash are malformed", hint="use the file as issued")
    return [Checkpoint(seq, h, source, doc)]


def load_checkpoints(path: str | Path) -> list[Checkpoint]:
    """Checkpoints from a file: one signed checkpoint, receipt or statement, or JSON lines of them."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read checkpoint file {p}: {exc}", hint="check the path") from None
    try:
        return _from_doc(json.loads(text), str(p))
    except ValueError:  # not one JSON document: JSON lines (the home's checkpoint file, or an export of it)
        pass
    out: list[Checkpoint] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise InvalidInput(f"{p}:{n} is not JSON: {exc}", hint="one signed checkpoint per line") from None
        out.extend(_from_doc(doc, f"{p}:{n}"))
    return out


def stored_checkpoints(sess: Session, s: Settings | None = None) -> list[Checkpoint]:
    """The checkpoints in the database and in the home's file (a broken one is returned unsigned)."""
    out: list[Checkpoint] = []
    for row in sess.execute(select(AuditCheckpointRow).order_by(AuditCheckpointRow.seq)).scalars():
        try:
            doc = json.loads(row.signed)
        except ValueError:
            doc = None
        body = doc.get("checkpoint") if isinstance(doc, dict) else None
        if not isinstance(body, dict) or body.get("seq") != row.seq or body.get("hash") != row.hash:
            doc = None  # the row's columns do not say what its signature covers
        out.append(Checkpoint(row.seq, row.hash, f"dl_audit_checkpoints seq {row.seq}", doc))
    path = _checkpoint_file(s)
    if path.exists():
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.extend(_from_doc(json.loads(line), f"{path}:{n}"))
            except (ValueError, InvalidInput):  # a damaged line is a finding of verify, not a crash
                out.append(Checkpoint(-1, "", f"{path}:{n}", None))
    return out


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
    flush(sess)
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
        data, have = json.loads(text), transfer_data(row)
        if "expires_at" not in data:  # entries logged before expires_at was audited
            have.pop("expires_at")
        if data != have:
            changed = sorted(k for k in set(data) | set(have) if data.get(k) != have.get(k))
            problem(seq, f"transfer {row.id} differs from what the audit log recorded ({', '.join(changed)})",
                    transfer=row.id)
    for tid, (seq, _) in sorted(logged.items(), key=lambda kv: kv[1][0]):
        problem(seq, f"transfer {tid} is in the audit log but missing from the ledger (deleted)", transfer=tid)
    latest = max(by_seq, default=None)
    return {
        "ok": n_problems == 0,
        "entries": count,
        "head": prev,
        "head_seq": last,
        "transfers": transfers,
        "unlogged_transfers": unlogged,
        "missing_transfers": len(logged),
        "checkpoints": {"checked": sum(len(v) for v in by_seq.values()), "latest_seq": latest,
                        "covers_head": latest is not None and latest >= last},
        "problems": problems,
        "problems_total": n_problems,
    }
