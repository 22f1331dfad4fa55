"""Ids that come from outside (a URL, a form, a JSON body): one rule for what can name a row.

Every market and delivery id (``lst_…``, ``q_…``, ``ord_…``, ``ent_…``) is at most 40 characters of
letters, digits and underscores. Anything else names no row: looking it up is a plain 404, never a
database error (PostgreSQL would refuse a longer string for a ``varchar(40)`` key).
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

MAX_ID = 40
ID_PATTERN = rf"^[A-Za-z0-9_]{{1,{MAX_ID}}}$"  # what the HTTP API accepts in a path or body

T = TypeVar("T")


def is_id(value: Any) -> bool:
    """True if ``value`` could be a row id (a string of 1 to 40 characters)."""
    return isinstance(value, str) and 1 <= len(value) <= MAX_ID


def get_row(sess: Session, model: type[T], ident: Any, **kw: Any) -> T | None:
    """``sess.get(model, ident, **kw)``, or None when ``ident`` cannot be an id at all."""
    return sess.get(model, ident, **kw) if is_id(ident) else None
