"""Arbitrage-free price schedules: per million tokens, with volume tiers, rounded up to minor units.

A schedule is a function f(n) from a token count to an exact rational price in minor units.
Publishing accepts it only if it is monotone (more tokens never cost less) and subadditive
(f(a+b) <= f(a) + f(b): one purchase never costs more than two). The charged price is
``ceil(f(n))``; ceil keeps both properties because ``ceil(x+y) <= ceil(x) + ceil(y)`` and ceil is
monotone, so splitting a purchase into many small ones can never cost less in total.

Two tier modes:
* ``graduated`` (default): each token is charged at the rate of the tier it falls in;
* ``volume``: every token of a purchase is charged at the rate of the tier the total falls in.

Both give piecewise linear functions with integer breakpoints, so subadditivity is decided
exactly by checking the vertices of the regions where f(a), f(b) and f(a+b) are linear
(see :func:`find_split_arbitrage`); there is no sampling.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from ciyuan.errors import InvalidInput
from ciyuan.ledger.money import CURRENCIES, check_currency, format_amount, format_rate, parse_rate

MTOK = 1_000_000
MAX_TIERS = 32
MAX_TOKENS = 10**15
MODES = ("graduated", "volume")


@dataclass(frozen=True)
class Tier:
    from_tokens: int
    rate: Fraction  # major units per million tokens


@dataclass(frozen=True)
class PriceSchedule:
    currency: str
    tiers: tuple[Tier, ...]
    mode: str = "graduated"

    # -- evaluation ---------------------------------------------------------------------------
    def _minor_rate(self, tier: Tier) -> Fraction:
        return tier.rate * 10 ** CURRENCIES[self.currency] / MTOK  # minor units per token

    def tier_index(self, tokens: int) -> int:
        idx = 0
        for i, t in enumerate(self.tiers):
            if tokens >= t.from_tokens:
                idx = i
        return idx

    def exact(self, tokens: int) -> Fraction:
        """The exact price of ``tokens`` tokens in minor units (a fraction)."""
        if tokens <= 0:
            return Fraction(0)
        if self.mode == "volume":
            return self._minor_rate(self.tiers[self.tier_index(tokens)]) * tokens
        total = Fraction(0)
        for i, t in enumerate(self.tiers):
            end = self.tiers[i + 1].from_tokens if i + 1 < len(self.tiers) else None
            if tokens <= t.from_tokens:
                break
            span = (min(tokens, end) if end is not None else tokens) - t.from_tokens
            total += self._minor_rate(t) * span
        return total

    def price(self, tokens: int) -> int:
        """What a purchase of ``tokens`` tokens is charged, in minor units (rounded up)."""
        return math.ceil(self.exact(tokens))

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "currency": self.currency,
            "mode": self.mode,
            "unit": "per_million_tokens",
            "rounding": "ceil_minor_unit",
            "tiers": [{"from_tokens": t.from_tokens, "price_per_mtok": format_rate(t.rate)} for t in self.tiers],
        }

    @classmethod
    def from_dict(cls, data: dict) -> PriceSchedule:
        return build_schedule(
            data["tiers"][0]["price_per_mtok"], data["currency"], data["tiers"][1:], data.get("mode", "graduated")
        )

    @property
    def base_rate(self) -> Fraction:
        return self.tiers[0].rate

    def describe(self, i: int) -> str:
        t = self.tiers[i]
        return (
            f"tier {i + 1} (from {t.from_tokens:,} tokens at {format_rate(t.rate)} {self.currency} per million tokens)"
        )


def _fmt(schedule: PriceSchedule, value: Fraction) -> str:
    return format_amount(math.ceil(value), schedule.currency)


def find_split_arbitrage(s: PriceSchedule) -> tuple[int, int] | None:
    """A pair (a, b) with f(a+b) > f(a) + f(b), or None when f is subadditive.

    f is linear on integer intervals bounded by the tier starts T (and T-1 for the volume jumps),
    so g(a, b) = f(a) + f(b) - f(a+b) is linear on polygons whose edges lie on a = c, b = c or
    a + b = c for those bounds; its minimum is at a vertex, i.e. among the points below. Along the
    unbounded directions (everything in the last tier) g is constant, so no further points matter.
    """
    bounds = {1}
    for t in s.tiers:
        for c in (t.from_tokens - 1, t.from_tokens, t.from_tokens + 1):
            if c >= 1:
                bounds.add(c)
    pts = sorted(bounds)
    candidates: set[tuple[int, int]] = set()
    for a in pts:
        for b in pts:
            candidates.add((min(a, b), max(a, b)))
            if b > a:
                candidates.add((min(a, b - a), max(a, b - a)))
    for a, b in sorted(candidates):
        if s.exact(a + b) > s.exact(a) + s.exact(b):
            return a, b
    return None


def validate(s: PriceSchedule) -> PriceSchedule:
    """Refuse a schedule that is not monotone or not subadditive, naming the tier and a witness."""
    for i in range(1, len(s.tiers)):
        start = s.tiers[i].from_tokens
        if s.exact(start) < s.exact(start - 1):
            raise InvalidInput(
                f"price schedule is not monotone: {s.describe(i)} makes {start:,} tokens cost "
                f"{_fmt(s, s.exact(start))} {s.currency} while {start - 1:,} tokens cost "
                f"{_fmt(s, s.exact(start - 1))} {s.currency}; a buyer would pay less for more",
                hint="in volume mode a cheaper tier must not undercut the tier before it at its start; "
                "use graduated tiers (the default) for volume discounts",
                code="price_not_monotone",
            )
    witness = find_split_arbitrage(s)
    if witness is not None:
        a, b = witness
        i = s.tier_index(a + b)
        worse = next((j for j in range(1, len(s.tiers)) if s.tiers[j].rate > s.tiers[j - 1].rate), i)
        raise InvalidInput(
            f"price schedule is not subadditive: {a + b:,} tokens in one purchase cost "
            f"{_fmt(s, s.exact(a + b))} {s.currency} but {a:,} and {b:,} tokens bought separately cost "
            f"{_fmt(s, s.exact(a) + s.exact(b))} {s.currency}; {s.describe(worse)} charges more than "
            f"the tier before it",
            hint="make each tier's price per million tokens no higher than the previous tier's "
            "(bigger purchases may only get cheaper per token)",
            code="price_not_subadditive",
        )
    return s


def build_schedule(
    price_per_mtok: str | int | Fraction, currency: str, tiers: list[dict] | None = None, mode: str = "graduated"
) -> PriceSchedule:
    """Build and validate a schedule from a base rate and extra tiers ``[{from_tokens, price_per_mtok}]``."""
    cur = check_currency(currency)
    if mode not in MODES:
        raise InvalidInput(f"tier mode {mode!r} is unknown", hint=f"use one of {', '.join(MODES)}")
    base = price_per_mtok if isinstance(price_per_mtok, Fraction) else parse_rate(price_per_mtok)
    out = [Tier(0, base)]
    extra = list(tiers or [])
    if len(extra) + 1 > MAX_TIERS:
        raise InvalidInput(f"{len(extra) + 1} tiers is more than the {MAX_TIERS} allowed", hint="merge tiers")
    for n, item in enumerate(extra, start=2):
        if (
            not isinstance(item, dict)
            or set(item) - {"from_tokens", "price_per_mtok"}
            or "from_tokens" not in item
            or "price_per_mtok" not in item
        ):
            raise InvalidInput(
                f"tier {n} must be an object with from_tokens and price_per_mtok, got {item!r}",
                hint='write tiers like [{"from_tokens": 1000000000, "price_per_mtok": "10.00"}]',
            )
        start = item["from_tokens"]
        if isinstance(start, bool) or not isinstance(start, int) or not 0 < start <= MAX_TOKENS:
            raise InvalidInput(
                f"tier {n}: from_tokens {start!r} must be a whole number from 1 to {MAX_TOKENS:,}",
                hint="tiers start at a token count",
            )
        if start <= out[-1].from_tokens:
            raise InvalidInput(
                f"tier {n}: from_tokens {start:,} does not rise above tier {n - 1}'s {out[-1].from_tokens:,}",
                hint="list tiers in increasing from_tokens",
            )
        out.append(Tier(start, parse_rate(item["price_per_mtok"], what=f"tier {n} price_per_mtok")))
    return validate(PriceSchedule(cur, tuple(out), mode))


def load_tiers_file(path: str | Path) -> tuple[list[dict], str]:
    """Read ``--tiers FILE`` (JSON or YAML): a list of tiers or ``{mode, tiers}``."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise InvalidInput(f"cannot read tiers file {p}: {exc.strerror}", hint="check the path") from None
    try:
        data: Any = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(f"tiers file {p} is not valid JSON/YAML: {exc}", hint="fix the file") from None
    mode = "graduated"
    if isinstance(data, dict):
        mode = data.get("mode", mode)
        data = data.get("tiers")
    if not isinstance(data, list):
        raise InvalidInput(
            f"tiers file {p} must hold a list of tiers",
            hint='e.g. [{"from_tokens": 1000000000, "price_per_mtok": "10.00"}]',
        )
    return data, mode
