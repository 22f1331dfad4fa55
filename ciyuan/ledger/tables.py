"""ORM mappings of the money tables: ledger accounts, transfers, the usage behind metered charges, the audit log.

Created by migrations 0002 (ledger), 0003 (usage, audit) and 0007 (charge legs, the audit inbox).
Money columns are BigInteger minor units
(fen for CNY); nothing here is ever a float. ``dl_usage`` lives here, beside the transfers it explains,
because settlement attributes each metered charge to its tokens; delivery writes it. The audit log is
append-only and hash-chained; events enter the inbox in their own transaction and a single
appender chains them after commit (its head row serialises chaining, so the chain never forks).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ciyuan.db import Base


class LedgerAccountRow(Base):
    """A ledger account with running totals; the totals are a cache derivable from transfers."""

    __tablename__ = "ex_ledger_accounts"
    id: Mapped[str] = mapped_column(String(120), primary_key=True)
    kind: Mapped[str] = mapped_column(String(30))
    owner_id: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    flags: Mapped[int] = mapped_column(Integer)
    debits_pending: Mapped[int] = mapped_column(BigInteger)
    debits_posted: Mapped[int] = mapped_column(BigInteger)
    credits_pending: Mapped[int] = mapped_column(BigInteger)
    credits_posted: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TransferRow(Base):
    """One transfer. ``kind`` is single, pending, post or void; a pending row's ``state`` moves on."""

    __tablename__ = "ex_transfers"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(10))
    state: Mapped[str] = mapped_column(String(10))
    debit_account_id: Mapped[str] = mapped_column(ForeignKey("ex_ledger_accounts.id"))
    credit_account_id: Mapped[str] = mapped_column(ForeignKey("ex_ledger_accounts.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    pending_id: Mapped[str | None] = mapped_column(String(200))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ref: Mapped[str | None] = mapped_column(String(200))
    body_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the legs of one charge (buyer -> holds, holds -> provider, holds -> platform fee) share a
    # charge_id (the id of the buyer's leg); leg is "buyer", "provider" or "fee" (None: no charge)
    charge_id: Mapped[str | None] = mapped_column(String(200), index=True)
    leg: Mapped[str | None] = mapped_column(String(10))

    def audited(self) -> dict:
        """The audited facts of this transfer (what its ``ledger.transfer`` entry holds)."""
        return transfer_facts(self.__dict__)


def _iso(ts: datetime | None) -> str | None:
    """SQLite hands back naive UTC; PostgreSQL the session's zone: one spelling for both."""
    if ts is None:
        return None
    return (ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)).isoformat()


def transfer_facts(t: dict) -> dict:
    """The audited facts of a transfer given as a mapping of its columns.

    Shared by the ledger (which logs them) and the audit log (which checks the rows against them),
    so neither imports the other. A hold's state changes are logged as their own events.
    """
    out = {
        "id": t["id"],
        "kind": t["kind"],
        "debit": t["debit_account_id"],
        "credit": t["credit_account_id"],
        "amount": int(t["amount"]),
        "currency": t["currency"],
        "pending_id": t.get("pending_id"),
        "expires_at": _iso(t.get("expires_at")),
        "ref": t.get("ref"),
        "created_at": _iso(t["created_at"]),
    }
    if t.get("charge_id") is not None:  # entries logged before 0007 name no charge
        out["charge_id"], out["leg"] = t["charge_id"], t.get("leg")
    return out


class UsageRow(Base):
    """One posted batch: what was delivered, what it cost, and a hash of exactly what was sent."""

    __tablename__ = "dl_usage"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    batch_id: Mapped[str] = mapped_column(String(80), unique=True)
    entitlement_id: Mapped[str] = mapped_column(String(40), index=True)
    buyer_id: Mapped[str] = mapped_column(String(40), index=True)
    provider_id: Mapped[str] = mapped_column(String(40), index=True)
    listing_id: Mapped[str] = mapped_column(String(40))
    part: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    tokenizer: Mapped[str] = mapped_column(String(100))
    tokenizer_version: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    transfer_id: Mapped[str | None] = mapped_column(String(200))
    posted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class AuditRow(Base):
    """One audit entry; ``hash`` = sha256(prev_hash, seq, at, kind, ref, data)."""

    __tablename__ = "dl_audit"
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    ref: Mapped[str] = mapped_column(String(250), unique=True)
    data: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditInboxRow(Base):
    """An event written by a unit of work and not yet chained; the appender moves it into ``dl_audit``."""

    __tablename__ = "dl_audit_inbox"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    at: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(40))
    ref: Mapped[str] = mapped_column(String(250))
    data: Mapped[str] = mapped_column(Text)


class AuditHeadRow(Base):
    """The single row naming the chain's last entry; locked by the appender while it chains."""

    __tablename__ = "dl_audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
