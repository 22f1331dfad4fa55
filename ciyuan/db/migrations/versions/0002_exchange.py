"""exchange: accounts, API keys, ledger, listings, quotes, orders, entitlements

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "ex_accounts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "ex_api_keys",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("account_id", sa.String(40), sa.ForeignKey("ex_accounts.id"), nullable=False, index=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("hint", sa.String(20), nullable=False),
        sa.Column("scopes", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_table(
        "ex_ledger_accounts",
        sa.Column("id", sa.String(120), primary_key=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("owner_id", sa.String(40), nullable=True, index=True),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("flags", sa.Integer, nullable=False),
        sa.Column("debits_pending", sa.BigInteger, nullable=False),
        sa.Column("debits_posted", sa.BigInteger, nullable=False),
        sa.Column("credits_pending", sa.BigInteger, nullable=False),
        sa.Column("credits_posted", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "ex_transfers",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column(
            "debit_account_id", sa.String(120), sa.ForeignKey("ex_ledger_accounts.id"), nullable=False, index=True
        ),
        sa.Column(
            "credit_account_id", sa.String(120), sa.ForeignKey("ex_ledger_accounts.id"), nullable=False, index=True
        ),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("pending_id", sa.String(200), nullable=True),
        sa.Column("expires_at", TS, nullable=True),
        sa.Column("ref", sa.String(200), nullable=True, index=True),
        sa.Column("body_hash", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.CheckConstraint("amount >= 0", name="ck_transfer_amount_nonneg"),
    )
    op.create_index("ix_ex_transfers_pending_state", "ex_transfers", ["state", "expires_at"])
    op.create_table(
        "ex_listings",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("provider_id", sa.String(40), sa.ForeignKey("ex_accounts.id"), nullable=False, index=True),
        sa.Column("dataset", sa.String(200), nullable=False),
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("schedule", sa.String(100), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("price_schedule", sa.Text, nullable=False),
        sa.Column("base_rate_micro", sa.BigInteger, nullable=False),
        sa.Column("license", sa.Text, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("card", sa.Text, nullable=False),
        sa.Column("sample", sa.Text, nullable=False),
        sa.Column("index_location", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "ex_listing_tags",
        sa.Column("listing_id", sa.String(40), sa.ForeignKey("ex_listings.id"), primary_key=True),
        sa.Column("facet", sa.String(20), primary_key=True),
        sa.Column("value", sa.String(100), primary_key=True),
    )
    op.create_index("ix_ex_listing_tags_facet_value", "ex_listing_tags", ["facet", "value"])
    op.create_table(
        "ex_quotes",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("listing_id", sa.String(40), sa.ForeignKey("ex_listings.id"), nullable=False),
        sa.Column("buyer_id", sa.String(40), sa.ForeignKey("ex_accounts.id"), nullable=False, index=True),
        sa.Column("selection", sa.Text, nullable=False),
        sa.Column("selection_id", sa.String(64), nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_table(
        "ex_orders",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("buyer_id", sa.String(40), sa.ForeignKey("ex_accounts.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("quote_id", sa.String(40), sa.ForeignKey("ex_quotes.id"), nullable=False),
        sa.Column("listing_id", sa.String(40), sa.ForeignKey("ex_listings.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("fee", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("buyer_id", "idempotency_key", name="uq_ex_orders_buyer_key"),
    )
    op.create_table(
        "ex_entitlements",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("order_id", sa.String(40), sa.ForeignKey("ex_orders.id"), nullable=False, unique=True),
        sa.Column("buyer_id", sa.String(40), sa.ForeignKey("ex_accounts.id"), nullable=False, index=True),
        sa.Column("listing_id", sa.String(40), sa.ForeignKey("ex_listings.id"), nullable=False),
        sa.Column("version_id", sa.String(64), nullable=False),
        sa.Column("schedule", sa.String(100), nullable=False),
        sa.Column("selection", sa.Text, nullable=False),
        sa.Column("selection_id", sa.String(64), nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("tokens_drawn", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )


def downgrade() -> None:
    for table in [
        "ex_entitlements",
        "ex_orders",
        "ex_quotes",
        "ex_listing_tags",
        "ex_listings",
        "ex_transfers",
        "ex_ledger_accounts",
        "ex_api_keys",
        "ex_accounts",
    ]:
        op.drop_table(table)
