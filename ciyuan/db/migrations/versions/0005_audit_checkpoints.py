"""audit checkpoints: signed (seq, hash) of the audit chain's head, kept so a cut or rewritten log shows

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dl_audit_checkpoints",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("signed", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dl_audit_checkpoints")
