"""Run a unit of work with retries for the races a concurrent database reports.

PostgreSQL may abort a transaction on a deadlock or serialization failure, and two requests
racing to insert the same idempotency key see a unique violation; re-running the whole unit
then finds the winner's row and returns it. SQLite writers are serialised by BEGIN IMMEDIATE,
so there the only retry is a (rare) busy database.

Layers above register work for after the commit with :func:`after_commit` (the ledger remembers the
accounts it created), so this module imports nothing above the database.

An error marked ``commit_first`` (a hold found expired while being posted) is raised only after
the unit of work committed, so the state change that explains the error is kept.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from ciyuan import db
from ciyuan.config import Settings
from ciyuan.errors import CiyuanError, Conflict

T = TypeVar("T")
RETRY_SQLSTATES = {"40001", "40P01", "23505"}
MAX_ATTEMPTS = 12


def _retryable(exc: DBAPIError) -> bool:
    orig = getattr(exc, "orig", None)
    state = getattr(orig, "sqlstate", None)
    if state in RETRY_SQLSTATES:
        return True
    text = str(orig or exc).lower()
    return "database is locked" in text or "unique constraint failed" in text


def after_commit(sess: Session, fn: Callable[[Session], None]) -> None:
    """Run ``fn(sess)`` once this unit of work has committed (not if it rolls back or is retried)."""
    hooks = sess.info.setdefault("after_commit", [])
    if fn not in hooks:
        hooks.append(fn)


def _after_commit(sess: Session) -> None:
    for fn in sess.info.pop("after_commit", []):
        fn(sess)


def read(fn: Callable[[Session], T], s: Settings | None = None) -> T:
    """``fn(session)`` for reads only: on PostgreSQL without a transaction (autocommit), so a lookup on
    a hot path (authenticating a request) costs its statements' round trips and no BEGIN/COMMIT.

    Each statement sees what was committed when it ran; use :func:`run` when reads must agree.
    On SQLite it is :func:`run` (the connection is already in the process).
    """
    eng = db.engine(s)
    if eng.dialect.name != "postgresql":
        return run(fn, s)
    with eng.connect().execution_options(isolation_level="AUTOCOMMIT") as conn, Session(bind=conn) as sess:
        return fn(sess)


def run(fn: Callable[[Session], T], s: Settings | None = None) -> T:
    """``fn(session)`` in one transaction, re-run on deadlock, serialization or duplicate-key races."""
    for attempt in range(MAX_ATTEMPTS):
        deferred: CiyuanError | None = None
        try:
            with db.session(s) as sess:
                try:
                    result = fn(sess)
                except CiyuanError as exc:
                    if not getattr(exc, "commit_first", False):
                        raise
                    deferred = exc  # e.g. a hold found expired: keep the expiry, then report
            _after_commit(sess)
            if deferred is not None:
                raise deferred
            return result
        except DBAPIError as exc:
            if not _retryable(exc) or attempt == MAX_ATTEMPTS - 1:
                if isinstance(exc, IntegrityError):
                    raise Conflict(
                        "a concurrent request changed the same record",
                        hint="retry the request with the same idempotency key",
                    ) from exc
                raise
            time.sleep(min(0.2, 0.005 * 2**attempt) * random.random())
    raise AssertionError("unreachable")
