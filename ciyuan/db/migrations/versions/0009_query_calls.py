"""metered query calls (SPARQL, retrieval): one row per call and idempotency key

Revision ID: 0009_query
Revises: 0008

``dl_calls`` keeps each metered call of an entitlement: its idempotency key (unique per
entitlement), the cap it reserved (a ledger hold), what it settled and the first answer, so a retry
with the same key returns that answer and is not billed again. Nothing existing changes, so a home
at 0008 upgrades by adding the table.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_query"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "dl_calls",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("entitlement_id", sa.String(40), nullable=False, index=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("cap_tokens", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=True),
        sa.Column("hold_id", sa.String(200), nullable=True),
        sa.Column("hold_amount", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=True),
        sa.Column("response", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
        sa.UniqueConstraint("entitlement_id", "idempotency_key", name="uq_dl_calls_key"),
        sa.CheckConstraint("cap_tokens >= 0 AND hold_amount >= 0", name="ck_dl_calls_nonneg"),
    )


def downgrade() -> None:
    op.drop_table("dl_calls")
