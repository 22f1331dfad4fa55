"""Normalise text so that later rules, hashes and tokens see one spelling of the same content."""

from __future__ import annotations

import re
import unicodedata

import ftfy
from ftfy.badness import BADNESS_RE, is_bad

from ciyuan.curate.steps.base import TEXT, Param, Step

# C0/C1 controls except tab and newline, plus invisible format characters that only hide content
# (zero-width space, BOM, word joiner, soft hyphen). ZWJ/ZWNJ stay: emoji and Indic scripts need them.
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2060\ufeff\u00ad]")
# Whitespace other than newline (incl. NBSP, ideographic space), in runs that are not already one
# plain space: rewriting every single space with itself was most of the collapsing time.
_HSPACE_RE = re.compile(r"[^\S\n ][^\S\n]*| [^\S\n]+")
_HSPACE_TABS_RE = re.compile(r"[^\S\n\t ][^\S\n\t]*| [^\S\n\t]+")
_BLANKS_RE = re.compile(r"\n{3,}")


def _mojibake_anchors(pattern: re.Pattern) -> tuple[re.Pattern, int] | None:
    """(class of characters every match of ``pattern`` contains, longest match), or None if unsure.

    ftfy's badness regex tries 37 alternatives at every position of a text: about 10 ms for a 30 kB
    man page, most of ``normalize``. Each alternative has a mandatory position that only non-ASCII
    characters from an explicit set can fill, and no match is longer than a few characters, so
    searching only the few characters around those anchors gives the same answer. Derived from
    ftfy's compiled pattern at import (so an ftfy upgrade is followed); any construct this walk does
    not understand (a lookaround, an end anchor, an unbounded repeat) makes it give up: None.
    """
    try:
        from re import _constants as C  # type: ignore[attr-defined]
        from re import _parser as P  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - Python < 3.11
        return None
    tree = list(P.parse(pattern.pattern, pattern.flags))
    if pattern.flags & re.IGNORECASE or len(tree) != 1 or tree[0][0] is not C.BRANCH:
        return None

    def explicit(op: object, av: object) -> set[int] | None:
        if op is C.LITERAL:
            return {av}  # type: ignore[arg-type]
        if op is C.IN:
            chars: set[int] = set()
            for o, a in av:  # type: ignore[attr-defined]
                if o is C.LITERAL:
                    chars.add(a)
                elif o is C.RANGE:
                    chars.update(range(a[0], a[1] + 1))
                else:  # NEGATE, CATEGORY: not a closed set
                    return None
            return chars
        return None

    anchors: set[int] = set()
    longest = 0
    for alt in tree[0][1][1]:
        _, hi = alt.getwidth()
        longest = max(longest, hi)
        sets = []
        for op, av in alt:
            if op is C.AT and av is not C.AT_BEGINNING:
                return None  # an end or word-boundary anchor would see the window's edge
            if op in (C.ASSERT, C.ASSERT_NOT, C.GROUPREF):
                return None
            chars = explicit(op, av)
            if chars is not None and min(chars) > 127:
                sets.append(chars)
        if not sets:
            return None
        anchors |= min(sets, key=len)
    if longest > 64:
        return None
    return re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(anchors)) + "]"), longest


_ANCHORS = _mojibake_anchors(BADNESS_RE)


def looks_like_mojibake(text: str) -> bool:
    """Same answer as ``ftfy.badness.is_bad(text)``, searching only around the characters mojibake needs.

    ``pattern.search(text, lo, hi)`` treats ``^`` as the real start of ``text`` and sees no
    character past ``hi``; the pattern has no end anchor or lookahead, so a match found in a window
    is a match in the text, and every match lies within ``longest`` characters of its anchor.
    """
    if _ANCHORS is None:
        return is_bad(text)
    anchor_re, width = _ANCHORS
    lo = hi = -1
    for m in anchor_re.finditer(text):
        i = m.start()
        a, b = max(0, i - width), i + width + 1
        if a <= hi:
            hi = b
            continue
        if hi >= 0 and BADNESS_RE.search(text, lo, hi):
            return True
        lo, hi = a, b
    return hi >= 0 and BADNESS_RE.search(text, lo, hi) is not None


class Normalize(Step):
    name = "normalize"
    modalities = TEXT
    kind = "mapper"
    description = "Unicode NFC, mojibake repair (ftfy), control characters removed, whitespace collapsed."
    params = (
        Param("form", "str", "NFC", "Unicode normalisation form.", ("NFC", "NFKC", "none")),
        Param("fix_mojibake", "bool", True, "Repair mis-decoded text (UTF-8 read as Latin-1 etc.) with ftfy."),
        Param("remove_control", "bool", True, "Drop control and invisible format characters (keeps \\n, \\t)."),
        Param(
            "collapse_whitespace",
            "bool",
            True,
            "Runs of spaces/tabs become one space, lines are trimmed, 3+ newlines become 2.",
        ),
        Param("keep_tabs", "bool", False, "Keep tab characters when collapsing whitespace (for TSV/code)."),
    )

    def normalize(self, text: str) -> str:
        """The normalised form of ``text`` (pure; also used by exact_dedup)."""
        if self.fix_mojibake and not text.isascii() and looks_like_mojibake(text):
            text = ftfy.fix_text(text, normalization=None)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self.remove_control:
            text = _CONTROL_RE.sub("", text)
        if self.form != "none" and not text.isascii():
            text = unicodedata.normalize(self.form, text)
        if self.collapse_whitespace:
            text = (_HSPACE_TABS_RE if self.keep_tabs else _HSPACE_RE).sub(" ", text)
            # spaces now come one at a time, so trimming lines is two plain replaces
            text = text.replace(" \n", "\n").replace("\n ", "\n")
            if "\n\n\n" in text:
                text = _BLANKS_RE.sub("\n\n", text)
            text = text.strip()
        return text

    def process(self, record: dict) -> None:
        text = record.get("text")
        if not text:
            return
        new = self.normalize(text)
        if new != text:
            record["text"] = new
            self.mark_changed(record, text)
