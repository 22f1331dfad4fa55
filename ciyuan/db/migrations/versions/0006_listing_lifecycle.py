"""listing lifecycle: price versions, delisting, one active listing per provider and version

Revision ID: 0006
Revises: 0005

* ``ex_listing_prices``: every price a listing ever had (version 1 is the price it was published at);
  rows are only added, so a quote or entitlement can always name the price it was made with.
* ``ex_listings.price_version`` (current), ``delisted_at``; ``ex_quotes.price_version`` and
  ``ex_entitlements.price_version`` (existing rows: version 1, the only price there was).
* A partial unique index allows one *active* listing per (provider, version). Existing duplicates
  (the same version published again and again) keep the newest active and are marked delisted.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ACTIVE = sa.text("status = 'active'")


def upgrade() -> None:
    op.create_table(
        "ex_listing_prices",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("listing_id", sa.String(40), sa.ForeignKey("ex_listings.id"), nullable=False, index=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("price_schedule", sa.Text, nullable=False),
        sa.Column("base_rate_micro", sa.BigInteger, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("listing_id", "version", name="uq_ex_listing_prices_version"),
    )
    with op.batch_alter_table("ex_listings") as b:
        b.add_column(sa.Column("price_version", sa.Integer, nullable=False, server_default="1"))
        b.add_column(sa.Column("delisted_at", TS, nullable=True))
    with op.batch_alter_table("ex_quotes") as b:
        b.add_column(sa.Column("price_version", sa.Integer, nullable=False, server_default="1"))
    with op.batch_alter_table("ex_entitlements") as b:
        b.add_column(sa.Column("price_version", sa.Integer, nullable=False, server_default="1"))
    op.execute(
        "INSERT INTO ex_listing_prices (listing_id, version, currency, price_schedule, base_rate_micro, created_at) "
        "SELECT id, 1, currency, price_schedule, base_rate_micro, created_at FROM ex_listings"
    )
    # duplicates from before this rule: keep the newest active listing of each (provider, version)
    op.execute(
        "UPDATE ex_listings SET status = 'delisted', delisted_at = created_at WHERE status = 'active' AND EXISTS ("
        "SELECT 1 FROM ex_listings newer WHERE newer.status = 'active' AND newer.provider_id = ex_listings.provider_id "
        "AND newer.version_id = ex_listings.version_id AND (newer.created_at > ex_listings.created_at OR "
        "(newer.created_at = ex_listings.created_at AND newer.id > ex_listings.id)))"
    )
    op.create_index(
        "uq_ex_listings_active_version",
        "ex_listings",
        ["provider_id", "version_id"],
        unique=True,
        sqlite_where=ACTIVE,
        postgresql_where=ACTIVE,
    )


def downgrade() -> None:
    op.drop_index("uq_ex_listings_active_version", table_name="ex_listings")
    with op.batch_alter_table("ex_entitlements") as b:
        b.drop_column("price_version")
    with op.batch_alter_table("ex_quotes") as b:
        b.drop_column("price_version")
    with op.batch_alter_table("ex_listings") as b:
        b.drop_column("delisted_at")
        b.drop_column("price_version")
    op.drop_table("ex_listing_prices")
