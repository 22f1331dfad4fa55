"""Signed checkpoints of the audit chain: the documents, where they are kept, and reading them back.

A checkpoint is the chain head's seq and hash signed with the exchange's receipt key
(:mod:`ciyuan.ledger.signing`), kept in ``dl_audit_checkpoints`` and in ``audit_checkpoints.jsonl``
in the home (once per seq, never replaced), and read back from either or from a file given from
outside (a checkpoint, a receipt or a statement). Taking one and checking the chain against them
is :mod:`ciyuan.ledger.audit`'s job (``checkpoint``, ``verify``); this module knows no chain.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import BigInteger, String, Text, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, Session, mapped_column

from ciyuan.config import Settings, settings
from ciyuan.db import Base
from ciyuan.errors import InvalidInput
from ciyuan.ledger import signing

CHECKPOINT_TYPE = "ciyuan.audit.checkpoint.v1"
CHECKPOINT_FILE = "audit_checkpoints.jsonl"  # in the home: outside the database


class AuditCheckpointRow(Base):
    """A signed checkpoint of the chain: entry ``seq`` had ``hash`` (created by migration 0005)."""

    __tablename__ = "dl_audit_checkpoints"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[str] = mapped_column(String(64))
    signed: Mapped[str] = mapped_column(Text)  # the canonical {"checkpoint", "signature"} document


@dataclass(frozen=True)
class Checkpoint:
    """A claim that entry ``seq`` of the chain has ``hash``, from ``source``, with its signed document."""

    seq: int
    hash: str
    source: str
    doc: dict | None  # the signed document it came from (None: unsigned, e.g. a broken row)


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
