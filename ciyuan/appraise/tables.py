"""ORM mapping of the appraisal table (created by migration 0004): the headline figures per appraisal.

Why a row as well as the JSON file: the exchange and the catalog list and sort versions by price
and quality without opening every version folder.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ciyuan.db import Base


class AppraisalRow(Base):
    __tablename__ = "appraisals"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("versions.id"), index=True)
    provider: Mapped[str | None] = mapped_column(String(200))
    appraised_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    quality: Mapped[float] = mapped_column(Float)
    uniqueness: Mapped[float] = mapped_column(Float)
    utility_lift: Mapped[float | None] = mapped_column(Float)
    tokenizer: Mapped[str] = mapped_column(String(100))
    tokens_total: Mapped[int] = mapped_column(BigInteger)
    tokens_unique: Mapped[int] = mapped_column(BigInteger)
    formula: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(3))
    price_per_mtok_minor: Mapped[int] = mapped_column(BigInteger)
    location: Mapped[str] = mapped_column(Text)
