"""Alembic environment: runs on the connection handed over by :func:`ciyuan.db.migrate`."""

from alembic import context

conn = context.config.attributes.get("connection")
if conn is None:  # pragma: no cover - only when alembic is run by hand
    from ciyuan.db import engine

    conn = engine().connect()

context.configure(connection=conn, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
