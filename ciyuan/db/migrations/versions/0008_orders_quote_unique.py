"""one order per quote, by index

Revision ID: 0008
Revises: 0007

``ex_orders.quote_id`` gets a unique index. An order looks up "is this quote paid already" on
every call, which was a scan of the orders table without it; and the database now refuses a
second order of one quote outright (the order code already never made one: a quote belongs to one
buyer and that buyer's orders are serialised), so two racing orders of one quote can never both
charge: the second one's insert fails, its unit of work is re-run and answers ``quote_used``.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("uq_ex_orders_quote_id", "ex_orders", ["quote_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_ex_orders_quote_id", table_name="ex_orders")
