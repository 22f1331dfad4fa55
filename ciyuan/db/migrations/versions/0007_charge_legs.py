"""charge legs as columns, and the audit inbox

Revision ID: 0007
Revises: 0006

* ``ex_transfers.charge_id`` and ``ex_transfers.leg``: the legs of one charge (buyer -> holds,
  holds -> provider, holds -> platform fee) share the buyer leg's id; until now they were linked
  only by the id suffixes ``<charge>:provider`` and ``<charge>:fee``. Existing rows are backfilled
  from that scheme: a ``:provider``/``:fee`` transfer out of a ``holds`` account names its charge,
  and the posted buyer -> holds transfer with that id is the charge's ``buyer`` leg.
* ``dl_audit_inbox``: events a unit of work logs, chained into ``dl_audit`` after it commits by a
  single appender (so no order holds the chain's head while it runs). Empty on upgrade: the chain
  and its head are left exactly as they were, so every existing entry and checkpoint still verifies.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

HOLDS = "(SELECT a.id FROM ex_ledger_accounts a WHERE a.kind = 'holds')"


def upgrade() -> None:
    with op.batch_alter_table("ex_transfers") as b:
        b.add_column(sa.Column("charge_id", sa.String(200), nullable=True))
        b.add_column(sa.Column("leg", sa.String(10), nullable=True))
    op.create_index("ix_ex_transfers_charge_id", "ex_transfers", ["charge_id"])
    for leg in ("provider", "fee"):
        n = len(leg) + 1
        op.execute(sa.text(
            f"UPDATE ex_transfers SET charge_id = substr(id, 1, length(id) - {n}), leg = :leg "
            f"WHERE id LIKE :pattern AND kind = 'single' AND debit_account_id IN {HOLDS}"
        ).bindparams(leg=leg, pattern=f"%:{leg}"))
    op.execute(
        "UPDATE ex_transfers SET charge_id = id, leg = 'buyer' "
        f"WHERE kind IN ('single', 'post') AND credit_account_id IN {HOLDS} AND charge_id IS NULL "
        "AND id IN (SELECT t.charge_id FROM ex_transfers t WHERE t.charge_id IS NOT NULL)"
    )
    op.create_table(
        "dl_audit_inbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("ref", sa.String(250), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("dl_audit_inbox")
    op.drop_index("ix_ex_transfers_charge_id", "ex_transfers")
    with op.batch_alter_table("ex_transfers") as b:
        b.drop_column("leg")
        b.drop_column("charge_id")
