"""PII redaction: typed placeholders instead of e-mails, phones, IDs, card numbers and IP addresses.

Every digit pattern is validated (ID checksum and birth date, Luhn and issuer prefix, address
ranges) and bounded by non-digits, so dates, versions, prices and part numbers stay untouched.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from ciyuan.curate.steps.base import Param, Step, curation_meta

PLACEHOLDERS = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "cn_id": "<CN_ID>",
    "bank_card": "<BANK_CARD>",
    "ipv4": "<IPV4>",
    "ipv6": "<IPV6>",
}

EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9_.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
)
CN_ID_RE = re.compile(
    r"(?<![A-Za-z0-9_-])[1-9]\d{5}"  # region
    r"(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])"  # birth date
    r"\d{3}[\dXx](?![A-Za-z0-9_-])"  # sequence + check character
)
# 13-19 digits, optionally grouped by single spaces or hyphens (4-4-4-4, 4-6-5, ...).
CARD_RE = re.compile(r"(?<![A-Za-z0-9_.,-])(?:\d[ -]?){12,18}\d(?![A-Za-z0-9_]|[.,-]\d)")
_PHONE_PATTERNS = [
    # mainland China mobile, optional +86 / 0086, optional 3-4-4 grouping
    r"(?:(?:\+|00)86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}",
    # mainland China landline with area code: 010-12345678, (0755) 1234 5678
    r"\(?0\d{2,3}\)?[ -]\d{3,4}[ -]?\d{4}",
    # international with a leading + and 7-15 digits in groups
    r"\+[1-9]\d{0,2}[ -]?(?:\(\d{1,4}\)[ -]?)?\d{1,4}(?:[ -]?\d{2,4}){1,4}",
    # North American 3-3-4
    r"\(\d{3}\)[ -]?\d{3}[-. ]\d{4}|\d{3}[-.]\d{3}[-.]\d{4}",
]
PHONE_RE = re.compile(r"(?<![A-Za-z0-9_+.-])(?:" + "|".join(_PHONE_PATTERNS) + r")(?![A-Za-z0-9_]|[.-]\d)")
IPV4_RE = re.compile(
    r"(?<![A-Za-z0-9_.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![A-Za-z0-9_]|\.\d)"
)
IPV6_RE = re.compile(r"(?<![A-Za-z0-9_:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%[A-Za-z0-9]+)?(?![A-Za-z0-9_:])")
_VERSION_CTX_RE = re.compile(r"(?:\bv|\bver\.?|version|release|build|版本|版)\s*$", re.IGNORECASE)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def cn_id_valid(s: str) -> bool:
    """GB 11643 checksum of an 18-character resident identity number."""
    if len(s) != 18 or not s[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(s[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == s[17].upper()


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _issuer_ok(digits: str) -> bool:
    """Length and issuer prefix of real card schemes; bare barcodes (EAN-13) rarely fit both."""
    n, d = len(digits), digits
    if n == 13:
        return False  # only pre-2000 Visa; EAN-13 barcodes look the same
    if d[0] == "4":
        return n in (16, 19)
    if d[:2] in ("34", "37"):
        return n == 15
    if d[:2] in ("36", "38", "30"):
        return n == 14
    if "51" <= d[:2] <= "55" or "2221" <= d[:4] <= "2720":
        return n == 16
    if d[:2] in ("62", "65") or d[:4] == "6011" or d[:2] == "35":
        return 16 <= n <= 19
    return False


def _card_ok(m: re.Match, text: str) -> bool:
    raw = m.group()
    digits = raw.replace(" ", "").replace("-", "")
    if not _issuer_ok(digits):
        return False
    seps = {c for c in raw if not c.isdigit()}
    if len(seps) > 1:  # mixed separators: not how card numbers are written
        return False
    return luhn_valid(digits)


def _phone_ok(m: re.Match, text: str) -> bool:
    digits = sum(c.isdigit() for c in m.group())
    if not 7 <= digits <= 15:
        return False
    return not _VERSION_CTX_RE.search(text[max(0, m.start() - 12) : m.start()])


def _ipv4_ok(m: re.Match, text: str) -> bool:
    return not _VERSION_CTX_RE.search(text[max(0, m.start() - 12) : m.start()])


def _ipv6_ok(m: re.Match, text: str) -> bool:
    s = m.group().split("%")[0]
    if s.count(":") < 2 or (s.count(":") < 7 and "::" not in s) or s == "::":
        return False
    if sum(c in "0123456789abcdefABCDEF" for c in s) < 3:
        return False
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return False
    return True


# (type, pattern, validator) in priority order: an earlier type wins an overlap.
Detector = tuple[str, re.Pattern, Callable[[re.Match, str], bool] | None]
DETECTORS: list[Detector] = [
    ("email", EMAIL_RE, None),
    ("ipv6", IPV6_RE, _ipv6_ok),
    ("cn_id", CN_ID_RE, lambda m, t: cn_id_valid(m.group())),
    ("bank_card", CARD_RE, _card_ok),
    ("ipv4", IPV4_RE, _ipv4_ok),
    ("phone", PHONE_RE, _phone_ok),
]


# Cheap necessary conditions, one C-level scan each: every e-mail has an '@', every IPv6 match two
# colons at most four hex digits apart, and every phone, ID, card or IPv4 match a run of at least
# seven characters of digits and separators that starts and ends with a digit. Text without them
# (most prose) skips the detectors and their validators.
_DIGIT_HINT_RE = re.compile(r"\d[\d .()-]{5,}\d")
_IPV6_HINT_RE = re.compile(r":[0-9A-Fa-f]{0,4}:")
_DIGIT_KINDS = frozenset({"cn_id", "bank_card", "ipv4", "phone"})


def _candidate_kinds(text: str) -> set[str]:
    kinds = set()
    if "@" in text:
        kinds.add("email")
    if _IPV6_HINT_RE.search(text):
        kinds.add("ipv6")
    if _DIGIT_HINT_RE.search(text):
        kinds |= _DIGIT_KINDS
    return kinds


def find_pii(text: str, types: set[str] | None = None) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, type) spans in ``text``, validated, in text order."""
    spans: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []
    kinds = _candidate_kinds(text)
    if types is not None:
        kinds &= types
    if not kinds:
        return spans
    for kind, pattern, ok in DETECTORS:
        if kind not in kinds:
            continue
        for m in pattern.finditer(text):
            if ok is not None and not ok(m, text):
                continue
            s, e = m.span()
            if any(s < te and ts < e for ts, te in taken):
                continue
            spans.append((s, e, kind))
            taken.append((s, e))
    spans.sort()
    return spans


def redact(text: str, types: set[str] | None = None, placeholders: dict | None = None) -> tuple[str, dict]:
    """``text`` with PII replaced by placeholders, and how many of each type were replaced."""
    ph = placeholders or PLACEHOLDERS
    spans = find_pii(text, types)
    if not spans:
        return text, {}
    out, pos, counts = [], 0, {}
    for s, e, kind in spans:
        out.append(text[pos:s])
        out.append(ph[kind])
        counts[kind] = counts.get(kind, 0) + 1
        pos = e
    out.append(text[pos:])
    return "".join(out), counts


class Pii(Step):
    name = "pii"
    kind = "mapper"
    description = "Redact e-mail, phone, Chinese ID, bank card (Luhn), IPv4/IPv6 with typed placeholders."
    params = (
        Param("types", "list[str]", list(PLACEHOLDERS), "PII types to redact: " + ", ".join(PLACEHOLDERS) + "."),
        Param("reject_over", "int", 0, "Reject a record with more PII matches than this (0 = never reject)."),
    )

    def setup(self) -> None:
        bad = sorted(set(self.types) - set(PLACEHOLDERS))
        if bad:
            from ciyuan.errors import InvalidInput

            raise InvalidInput(f"pii: unknown type(s) {', '.join(bad)}", hint=f"use {', '.join(PLACEHOLDERS)}")
        self._types = set(self.types)

    def process(self, record: dict) -> None:
        text = record.get("text")
        if not text:
            return
        new, counts = redact(text, self._types)
        if not counts:
            return
        record["text"] = new
        self.stats.counters.update(counts)
        cur = curation_meta(record)
        pii = cur.setdefault("pii", {})
        for k, v in counts.items():
            pii[k] = pii.get(k, 0) + v
        self.mark_changed(record, text)
        total = sum(counts.values())
        if self.reject_over and total > self.reject_over:
            self.reject(record, "too_much_pii", f"pii: {total} matches > {self.reject_over}")
