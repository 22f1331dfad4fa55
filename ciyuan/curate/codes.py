"""Rejection codes: ``step.rule``, the stable name of why curation rejected a record.

Kept apart from the steps so that ``ciyuan show --rejected --reason`` can match codes without
importing the steps (and their models).
"""

from __future__ import annotations


def rejection_code(step: str, rule: str | None) -> str:
    """The stable code of a rejection: ``step.rule`` (just ``step`` when a rule is unknown)."""
    return f"{step}.{rule}" if rule else step


def code_matches(code: str, query: str) -> bool:
    """Whether ``query`` names ``code``: the code itself, or a prefix of it ending at ``.`` or ``_``.

    ``quality`` and ``quality.gopher`` match ``quality.gopher_stop_words``; ``langid.language``
    matches ``langid.language_fr``; ``qual`` matches nothing.
    """
    q = query.strip().lower()
    c = code.lower()
    return bool(q) and (c == q or (c.startswith(q) and (q[-1] in "._" or c[len(q)] in "._")))
