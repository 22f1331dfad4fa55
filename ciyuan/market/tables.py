"""ORM mappings of the market's tables: accounts, keys, listings, quotes, orders, entitlements.

Money columns are BigInteger minor units (fen for CNY); nothing here is ever a float.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from ciyuan.db import Base


class AccountRow(Base):
    """A market participant: a provider, a buyer or the operator."""

    __tablename__ = "ex_accounts"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ApiKeyRow(Base):
    """An API key; only the sha256 of the secret is kept, never the secret."""

    __tablename__ = "ex_api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("ex_accounts.id"))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(20))
    scopes: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ListingRow(Base):
    """A listing; ``price_schedule`` is the current price version's schedule (a cache for search).

    At most one *active* listing per (provider, version): a partial unique index (migration 0006).
    """

    __tablename__ = "ex_listings"
    __table_args__ = (
        Index(
            "uq_ex_listings_active_version",
            "provider_id",
            "version_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
    )
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    provider_id: Mapped[str] = mapped_column(ForeignKey("ex_accounts.id"))
    dataset: Mapped[str] = mapped_column(String(200))
    version_id: Mapped[str] = mapped_column(String(64))
    schedule: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(3))
    price_schedule: Mapped[str] = mapped_column(Text)
    base_rate_micro: Mapped[int] = mapped_column(BigInteger)
    license: Mapped[str] = mapped_column(Text)
    records: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger)
    card: Mapped[str] = mapped_column(Text)
    sample: Mapped[str] = mapped_column(Text)
    index_location: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    price_version: Mapped[int] = mapped_column(Integer, default=1)
    delisted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ListingPriceRow(Base):
    """One price version of a listing; never changed once written, so a quote can always name its price."""

    __tablename__ = "ex_listing_prices"
    __table_args__ = (UniqueConstraint("listing_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    listing_id: Mapped[str] = mapped_column(ForeignKey("ex_listings.id"))
    version: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    price_schedule: Mapped[str] = mapped_column(Text)
    base_rate_micro: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ListingTagRow(Base):
    """Searchable facets of a listing (modality, language, domain), one row per value."""

    __tablename__ = "ex_listing_tags"
    listing_id: Mapped[str] = mapped_column(ForeignKey("ex_listings.id"), primary_key=True)
    facet: Mapped[str] = mapped_column(String(20), primary_key=True)
    value: Mapped[str] = mapped_column(String(100), primary_key=True)


class QuoteRow(Base):
    __tablename__ = "ex_quotes"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    listing_id: Mapped[str] = mapped_column(ForeignKey("ex_listings.id"))
    buyer_id: Mapped[str] = mapped_column(ForeignKey("ex_accounts.id"))
    selection: Mapped[str] = mapped_column(Text)
    selection_id: Mapped[str] = mapped_column(String(64))
    records: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    price_version: Mapped[int] = mapped_column(Integer, default=1)


class OrderRow(Base):
    __tablename__ = "ex_orders"
    __table_args__ = (UniqueConstraint("buyer_id", "idempotency_key"),
                      Index("uq_ex_orders_quote_id", "quote_id", unique=True))  # one order per quote (0008)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    buyer_id: Mapped[str] = mapped_column(ForeignKey("ex_accounts.id"))
    idempotency_key: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    quote_id: Mapped[str] = mapped_column(ForeignKey("ex_quotes.id"))
    listing_id: Mapped[str] = mapped_column(ForeignKey("ex_listings.id"))
    amount: Mapped[int] = mapped_column(BigInteger)
    fee: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EntitlementRow(Base):
    """The buyer's right to draw exactly the quoted selection; delivery counts what was drawn."""

    __tablename__ = "ex_entitlements"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("ex_orders.id"), unique=True)
    buyer_id: Mapped[str] = mapped_column(ForeignKey("ex_accounts.id"))
    listing_id: Mapped[str] = mapped_column(ForeignKey("ex_listings.id"))
    version_id: Mapped[str] = mapped_column(String(64))
    schedule: Mapped[str] = mapped_column(String(100))
    selection: Mapped[str] = mapped_column(Text)
    selection_id: Mapped[str] = mapped_column(String(64))
    records: Mapped[int] = mapped_column(BigInteger)
    tokens: Mapped[int] = mapped_column(BigInteger)
    tokens_drawn: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    price_version: Mapped[int] = mapped_column(Integer, default=1)
