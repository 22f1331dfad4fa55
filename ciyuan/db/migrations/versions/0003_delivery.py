"""delivery: meters, streams, batches, usage, hash-chained audit log

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
GENESIS = "0" * 64


def upgrade() -> None:
    op.create_table(
        "dl_meters",
        sa.Column("entitlement_id", sa.String(40), primary_key=True),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("tokens_held", sa.BigInteger, nullable=False),
        sa.Column("tokens_posted", sa.BigInteger, nullable=False),
        sa.Column("amount_posted", sa.BigInteger, nullable=False),
        sa.Column("records_posted", sa.BigInteger, nullable=False),
        sa.Column("batches_posted", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("tokens_held >= 0 AND tokens_posted >= 0", name="ck_dl_meters_nonneg"),
    )
    op.create_table(
        "dl_streams",
        sa.Column("entitlement_id", sa.String(40), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True),
        sa.Column("parts", sa.Integer, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("acked", sa.BigInteger, nullable=False),
        sa.Column("open_batch", sa.String(80), nullable=True),
        sa.Column("last_batch", sa.String(80), nullable=True),
        sa.Column("next_seq", sa.Integer, nullable=False),
        sa.CheckConstraint("acked >= 0 AND acked <= size", name="ck_dl_streams_acked"),
    )
    op.create_table(
        "dl_batches",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("entitlement_id", sa.String(40), nullable=False, index=True),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("start", sa.BigInteger, nullable=False),
        sa.Column("end", sa.BigInteger, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("hold_id", sa.String(200), nullable=True),
        sa.Column("hold_amount", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("resolved_at", TS, nullable=True),
    )
    op.create_index("ix_dl_batches_state_expires", "dl_batches", ["state", "expires_at"])
    op.create_table(
        "dl_usage",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("batch_id", sa.String(80), nullable=False, unique=True),
        sa.Column("entitlement_id", sa.String(40), nullable=False, index=True),
        sa.Column("buyer_id", sa.String(40), nullable=False, index=True),
        sa.Column("provider_id", sa.String(40), nullable=False, index=True),
        sa.Column("listing_id", sa.String(40), nullable=False),
        sa.Column("part", sa.Integer, nullable=False),
        sa.Column("start", sa.BigInteger, nullable=False),
        sa.Column("end", sa.BigInteger, nullable=False),
        sa.Column("records", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tokenizer", sa.String(100), nullable=False),
        sa.Column("tokenizer_version", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("transfer_id", sa.String(200), nullable=True),
        sa.Column("posted_at", TS, nullable=False, index=True),
    )
    op.create_table(
        "dl_audit",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("ref", sa.String(250), nullable=False, unique=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_table(
        "dl_audit_head",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(
        sa.table("dl_audit_head", sa.column("id", sa.Integer), sa.column("seq", sa.BigInteger),
                 sa.column("hash", sa.String)),
        [{"id": 1, "seq": 0, "hash": GENESIS}],
    )


def downgrade() -> None:
    for name in ("dl_audit_head", "dl_audit", "dl_usage", "dl_batches", "dl_streams", "dl_meters"):
        op.drop_table(name)
