"""Shared fixtures: a fresh ciyuan home per test, and the database over SQLite and PostgreSQL.

``home`` gives an embedded (SQLite) exchange home. ``db_home`` is parametrised: once with SQLite,
once with a fresh PostgreSQL database made for the test and dropped after it.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# No timing in tests: a busy CI machine must not fail a property because one example was slow.
hypothesis_settings.register_profile("ciyuan", deadline=None)
hypothesis_settings.load_profile("ciyuan")

# Helpers shared by every test folder (clihelp) import by name, as each folder's own do.
sys.path.insert(0, str(Path(__file__).parent))

# Every publish builds a knowledge-base index (issue 15); with torch installed (the test extra) that
# would embed every published test corpus with MiniLM, minutes over the suite. Tests that are about
# vectors ask for them (``CIYUAN_KB_VECTORS=auto``, tests/knowledge).
os.environ.setdefault("CIYUAN_KB_VECTORS", "off")

PG_ADMIN_URL = os.environ.get("CIYUAN_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_unavailable() -> str | None:
    """None when the PostgreSQL server answers, else why not (printed with the skip)."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return None
    except Exception as exc:  # any failure means "no server here"
        return f"PostgreSQL at {PG_ADMIN_URL} did not answer: {exc}"


PG_UNAVAILABLE = _pg_unavailable()


def reset_process_state() -> None:
    """Forget cached settings and engines after the environment changed."""
    from ciyuan import db
    from ciyuan.config import settings

    db.dispose_all()
    settings.cache_clear()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, embedded ciyuan home (SQLite) for one test."""
    h = tmp_path / "home"
    monkeypatch.setenv("CIYUAN_HOME", str(h))
    monkeypatch.delenv("CIYUAN_DATABASE_URL", raising=False)
    monkeypatch.delenv("CIYUAN_STORAGE_URL", raising=False)
    reset_process_state()
    yield h
    reset_process_state()


def make_pg_database() -> str:
    """Create an empty PostgreSQL database and return its URL."""
    import psycopg

    name = f"ciyuan_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_home(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh home whose database is SQLite, then (second run) a new PostgreSQL database."""
    if request.param == "sqlite":
        yield home
        return
    if PG_UNAVAILABLE:
        pytest.skip(PG_UNAVAILABLE)
    url = make_pg_database()
    monkeypatch.setenv("CIYUAN_DATABASE_URL", url)
    reset_process_state()
    try:
        yield home
    finally:
        reset_process_state()
        drop_pg_database(url)
