"""UTC time for every layer: one place that says how naive timestamps are read.

SQLite hands timestamps back naive although they were stored as UTC; PostgreSQL hands them back
aware. Every comparison of a stored time with ``now`` goes through :func:`aware` so the two
backends agree, and every "now" is taken through :func:`utc_now` so tests can pin it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


@overload
def aware(ts: datetime) -> datetime: ...
@overload
def aware(ts: None) -> None: ...
def aware(ts: datetime | None) -> datetime | None:
    """``ts`` as an aware time in UTC (a naive one was stored as UTC); None stays None."""
    if ts is None:
        return None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def utc_now(now: datetime | None = None) -> datetime:
    """``now`` if the caller pinned one (tests, replays), else the current UTC time."""
    return now or datetime.now(UTC)
