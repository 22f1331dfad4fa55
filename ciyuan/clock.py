"""UTC time for every layer: one place that says how naive timestamps are read.

SQLite hands timestamps back naive although they were stored as UTC; PostgreSQL hands them back
aware. Every comparison of a stored time with ``now`` goes through :func:`aware` so the two
backends agree, and every "now" is taken through :func:`utc_now` so tests can pin it.
"""

from __future__ import annotations

from datetime import UTC, datetime


def aware(ts: datetime | None) -> datetime | None:
    """``ts`` as an aware UTC time (a naive one was stored as UTC); None stays None."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def utc_now(now: datetime | None = None) -> datetime:
    """``now`` if the caller pinned one (tests, replays), else the current UTC time."""
    return now or datetime.now(UTC)
