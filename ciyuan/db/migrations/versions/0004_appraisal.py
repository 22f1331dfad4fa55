"""appraisal: one row per appraisal of a version (the full result is appraisal.json beside the version)

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "appraisals",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("version_id", sa.String(64), sa.ForeignKey("versions.id"), nullable=False, index=True),
        sa.Column("provider", sa.String(200), nullable=True),
        sa.Column("appraised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("quality", sa.Float, nullable=False),
        sa.Column("uniqueness", sa.Float, nullable=False),
        sa.Column("utility_lift", sa.Float, nullable=True),
        sa.Column("tokenizer", sa.String(100), nullable=False),
        sa.Column("tokens_total", sa.BigInteger, nullable=False),
        sa.Column("tokens_unique", sa.BigInteger, nullable=False),
        sa.Column("formula", sa.String(40), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("price_per_mtok_minor", sa.BigInteger, nullable=False),
        sa.Column("location", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("appraisals")
