"""Database engine, sessions and migrations: SQLite embedded by default, PostgreSQL by URL.

Every layer declares its tables on :data:`Base`; the schema itself is made only by the Alembic
migrations in ``ciyuan/db/migrations`` so that SQLite and PostgreSQL get the same tables.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from ciyuan.config import Settings, settings

MIGRATIONS = Path(__file__).parent / "migrations"


class Base(DeclarativeBase):
    pass


_engines: dict[str, Engine] = {}
_migrated: set[str] = set()
_lock = threading.Lock()


def _make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, pool_size=20,
                               max_overflow=40)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - driver glue
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, see below
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover - driver glue
            # Take the write lock at the start so two writers never deadlock on lock upgrade;
            # this makes every transaction serializable, which the ledger relies on.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    engine = create_engine(url, pool_size=20, max_overflow=40)
    _ping_when_idle(engine)
    return engine


PING_IDLE_S = 5.0  # a pooled connection idle longer than this is pinged before it is handed out


def _ping_when_idle(engine: Engine) -> None:
    """``pool_pre_ping``, for connections that sat idle: a ping per checkout was a round trip per unit of work.

    A connection back from a unit of work a moment ago is live; one idle for :data:`PING_IDLE_S`
    may have been dropped (a server restart, an idle timeout) and is pinged first; a dead one is
    replaced by the pool before anyone uses it.
    """

    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_conn, record):  # pragma: no cover - driver glue
        record.info["ciyuan_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, _proxy):  # pragma: no cover - driver glue
        since = record.info.pop("ciyuan_idle_since", None)
        if since is not None and time.monotonic() - since > PING_IDLE_S:
            try:
                engine.dialect.do_ping(dbapi_conn)
            except Exception as exc:
                raise DisconnectionError("pooled connection is gone") from exc


def engine(s: Settings | None = None) -> Engine:
    """The engine for the configured database, created once and migrated to the newest schema."""
    url = (s or settings()).database_url
    with _lock:
        if url not in _engines:
            _engines[url] = _make_engine(url)
        eng = _engines[url]
        if url not in _migrated:
            migrate(eng)
            _migrated.add(url)
    return eng


def migrate(eng: Engine) -> None:
    """Bring the schema to the newest Alembic revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def dispose_all() -> None:
    """Forget every engine (tests switch databases; servers fork)."""
    with _lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()
        _migrated.clear()


_factories: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@contextmanager
def session(s: Settings | None = None) -> Iterator[Session]:
    """A unit of work: committed when the block ends, rolled back when it raises."""
    eng = engine(s)
    factory = _factories.get(eng)
    if factory is None:  # one per engine: building a sessionmaker per unit of work is measurable on hot paths
        factory = _factories[eng] = sessionmaker(bind=eng, expire_on_commit=False)
    with factory() as sess, sess.begin():
        yield sess
