"""ORM mappings of metered delivery's tables (created by migration 0003).

A *meter* is the per-entitlement running count of tokens held and posted; a *stream* is one
partition of an entitlement's selection with the offset the buyer has acknowledged; a *batch* is
one delivered slice of a stream with the ledger hold that pays for it; each posted batch writes a
usage row (:mod:`ciyuan.ledger.tables`, beside the charge it explains).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ciyuan.db import Base


class MeterRow(Base):
    """Per-entitlement totals; locked by every hold and post so cumulative prices are exact."""

    __tablename__ = "dl_meters"
    entitlement_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    parts: Mapped[int] = mapped_column(Integer)
    tokens_held: Mapped[int] = mapped_column(BigInteger)
    tokens_posted: Mapped[int] = mapped_column(BigInteger)
    amount_posted: Mapped[int] = mapped_column(BigInteger)
    records_posted: Mapped[int] = mapped_column(BigInteger)
    batches_posted: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StreamRow(Base):
    """One partition of an entitlement: how far the buyer acknowledged, and the open batch if any."""

    __tablename__ = "dl_streams"
    entitlement_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    part: Mapped[int] = mapped_column(Integer, primary_key=True)
    parts: Mapped[int] = mapped_column(Integer)
    size: Mapped[int] = mapped_column(BigInteger)  # records in this partition
    acked: Mapped[int] = mapped_column(BigInteger)  # offset acknowledged (and paid) so far
    open_batch: Mapped[str | None] = mapped_column(String(80))
    last_batch: Mapped[str | None] = mapped_column(String(80))
    next_seq: Mapped[int] = mapped_column(Integer)


class BatchRow(Base):
    """A delivered slice ``[start, end)`` of a stream and the hold that pays for it."""

    __tablename__ = "dl_batches"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    entitlement_id: Mapped[str] = mapped_column(String(40), index=True)
    part: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(BigInteger)
    end: Mapped[int] = mapped_column(BigInteger)
    records: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger)
    hold_id: Mapped[str | None] = mapped_column(String(200))
    hold_amount: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(10))  # pending | posted | expired (charged, unacknowledged) | voided
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CallRow(Base):
    """One metered call (SPARQL or retrieval) of an entitlement: its cap's hold and its first answer.

    ``state``: ``held`` (running: its cap is reserved), ``settled`` (charged; ``response`` is the
    answer a retry with the same key gets back) or ``failed`` (its hold released; a retry runs again).
    """

    __tablename__ = "dl_calls"
    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    entitlement_id: Mapped[str] = mapped_column(String(40), index=True)
    idempotency_key: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    request_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(10))
    attempt: Mapped[int] = mapped_column(Integer)
    cap_tokens: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int | None] = mapped_column(BigInteger)
    hold_id: Mapped[str | None] = mapped_column(String(200))
    hold_amount: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int | None] = mapped_column(BigInteger)
    response: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
