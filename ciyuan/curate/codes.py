"""Rejection codes: ``step.rule``, the stable name of why curation rejected a record.

Kept apart from the steps so that ``ciyuan show --rejected --reason`` can match codes without
importing the steps (and their models).
"""

from __future__ import annotations

import re

_CODE_RE = re.compile(r"[a-z0-9_.]+")


def rejection_code(step: str, rule: str | None) -> str:
    """The stable code of a rejection: ``step.rule`` (just ``step`` when a rule is unknown)."""
    return f"{step}.{rule}" if rule else step


def _prefix(c: str, q: str) -> bool:
    """``q`` is ``c`` or a prefix ending at a step (``quality``) or, inside the rule, at a ``_``."""
    if c == q:
        return True
    if not c.startswith(q):
        return False
    nxt = c[len(q)]
    return q.endswith(".") or nxt == "." or ("." in q and nxt == "_")


def is_code_query(query: str) -> bool:
    """A ``--reason`` that looks like a code (letters, digits, ``_`` and ``.``) matches codes only;
    anything else (``"stop words"``) is looked for in the reason sentences."""
    return bool(_CODE_RE.fullmatch(query.strip().lower()))


def code_matches(code: str, query: str) -> bool:
    """Whether ``query`` names ``code``: the code, its step, a prefix of it that ends at a ``_`` of
    the rule, or its rule alone.

    ``quality`` and ``quality.gopher`` match ``quality.gopher_stop_words``; ``low_score`` matches
    ``langid.low_score``; ``langid.language`` matches ``langid.language_fr``; ``qual`` and ``exact``
    match nothing.
    """
    q = query.strip().lower()
    c = code.lower()
    if not q:
        return False
    rule = c.split(".", 1)[1] if "." in c else ""
    return _prefix(c, q) or rule == q
