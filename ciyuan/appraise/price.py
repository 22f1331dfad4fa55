"""Suggested price per million tokens from an appraisal: a documented, versioned formula.

Why a formula and not a model: a seller and a buyer must both be able to recompute the number
from the evidence. Formula ``ciyuan-price-1``::

    rate   = base[modality][domain]                     (minor units per million tokens)
    f_Q    = 0.2 + 0.8 * Q                              Q: aggregate quality in [0, 1]
    f_U    = max(U, 0.05)                               U: uniqueness against the catalog
    f_L    = 1                  if utility unmeasured or its 95 % interval contains 0
             0.5                if the whole interval is below 0 (the data hurts)
             min(2, 1 + 2*low)  if the interval is above 0 (low = its lower end)
    price  = max(1, round(rate * f_Q * f_U * f_L))      integer minor units per million tokens

Volume tiers are *graduated* (each token is charged at the rate of the tier it falls in) with
rates ``floor(price * d)`` for d = 1, 0.9, 0.8, 0.7 from 0, 100 M, 1 B and 10 B tokens. Rates never
rise, so the total f(n) is concave with f(0) = 0: it never decreases (monotone) and
f(a + b) <= f(a) + f(b) (subadditive), which is what the exchange's arbitrage check demands.
Charged totals are ``ceil`` of the exact value, which keeps both properties.
"""

from __future__ import annotations

import math
from fractions import Fraction

from ciyuan.errors import InvalidInput

FORMULA_VERSION = "ciyuan-price-1"
MTOK = 1_000_000
MINOR_DIGITS = {"CNY": 2, "USD": 2, "EUR": 2, "HKD": 2, "JPY": 0}

# Base rates in CNY fen per million tokens (v1 defaults; override with ``rates=``).
BASE_RATES: dict[str, dict[str, int]] = {
    "text": {"general": 2000, "web": 1000, "news": 2500, "code": 3000, "legal": 4000, "finance": 4000,
             "medical": 5000, "industry": 3500, "science": 3500, "education": 2500, "dialogue": 3000},
    "image": {"general": 3000},
    "audio": {"general": 3000},
    "video": {"general": 4000},
    "episode": {"general": 4000},  # robot demonstrations: priced like video until the market says otherwise
    "tabular": {"general": 2500},
    "graph": {"general": 3000},  # knowledge graphs (graph records): curated structure, priced above plain text
}  # fmt: skip
TIER_STARTS = (0, 100 * MTOK, 1000 * MTOK, 10_000 * MTOK)
TIER_DISCOUNTS = (Fraction(1), Fraction(9, 10), Fraction(8, 10), Fraction(7, 10))


def quality_factor(q: float) -> float:
    return 0.2 + 0.8 * min(max(q, 0.0), 1.0)


def uniqueness_factor(u: float) -> float:
    return max(min(u, 1.0), 0.05)


def utility_factor(lift: dict | None) -> tuple[float, str]:
    """Factor and the reason, from a ``mean_ci`` dict of the lift (or None when unmeasured)."""
    if not lift or lift.get("mean") is None:
        return 1.0, "utility not measured"
    low, high = lift.get("low"), lift.get("high")
    if low is None or high is None:
        return 1.0, "one seed: no interval, so no evidence either way"
    if high < 0:
        return 0.5, "lift below zero across the interval: the data hurt the reference model"
    if low <= 0:
        return 1.0, "interval contains zero: no evidence of lift"
    return min(2.0, 1.0 + 2.0 * low), f"lift interval above zero (lower end {low:.4f})"


def base_rate(modality: str, domain: str, rates: dict | None = None) -> int:
    table = rates or BASE_RATES
    by_domain = table.get(modality)
    if by_domain is None:
        raise InvalidInput(f"no base rate for modality {modality!r}", hint=f"use one of {', '.join(table)}")
    return int(by_domain.get(domain, by_domain["general"]))


def format_minor(minor: int | Fraction, currency: str) -> str:
    """Minor units as major-unit decimal text ("2000" fen -> "20.00")."""
    digits = MINOR_DIGITS.get(currency, 2)
    if digits == 0:
        return str(int(minor))
    q, r = divmod(int(minor), 10**digits)
    return f"{q}.{r:0{digits}d}"


def total_price(tokens: int, tiers: list[dict]) -> int:
    """Charged price (minor units, ceil) of ``tokens`` under graduated ``tiers`` [{from_tokens, rate_minor}]."""
    if tokens <= 0:
        return 0
    exact = Fraction(0)
    for i, t in enumerate(tiers):
        end = tiers[i + 1]["from_tokens"] if i + 1 < len(tiers) else None
        if tokens <= t["from_tokens"]:
            break
        span = (min(tokens, end) if end is not None else tokens) - t["from_tokens"]
        exact += Fraction(t["rate_minor"] * span, MTOK)
    return math.ceil(exact)


def check_tiers(tiers: list[dict]) -> None:
    """Refuse tiers whose rates rise (the only way graduated tiers can allow arbitrage)."""
    for a, b in zip(tiers, tiers[1:], strict=False):
        if b["from_tokens"] <= a["from_tokens"] or b["rate_minor"] > a["rate_minor"]:
            raise InvalidInput("tier rates must not rise with volume", hint="check TIER_DISCOUNTS")


def suggest_price(
    quality: float,
    uniqueness: float,
    utility_lift: dict | None = None,
    *,
    modality: str = "text",
    domain: str = "general",
    currency: str = "CNY",
    rates: dict | None = None,
) -> dict:
    """The suggested price per million tokens and volume tiers, with every factor shown."""
    rate = base_rate(modality, domain, rates)
    if currency != "CNY" and rates is None:
        raise InvalidInput(f"default base rates are in CNY, not {currency}", hint="pass rates= in your currency")
    fq, fu = quality_factor(quality), uniqueness_factor(uniqueness)
    fl, why = utility_factor(utility_lift)
    price = max(1, round(rate * fq * fu * fl))
    tiers = [{"from_tokens": s, "rate_minor": max(1, math.floor(price * d))}
             for s, d in zip(TIER_STARTS, TIER_DISCOUNTS, strict=True)]  # fmt: skip
    check_tiers(tiers)
    curve = [{"tokens": n, "price_minor": total_price(n, tiers)}
             for n in (MTOK, 10 * MTOK, 100 * MTOK, 300 * MTOK, 1000 * MTOK, 3000 * MTOK, 10_000 * MTOK,
                       30_000 * MTOK)]  # fmt: skip
    return {
        "formula": FORMULA_VERSION,
        "currency": currency,
        "base_rate_minor": rate,
        "modality": modality,
        "domain": domain,
        "factors": {"quality": fq, "uniqueness": fu, "utility": fl, "utility_reason": why},
        "price_per_mtok_minor": price,
        "price_per_mtok": format_minor(price, currency),
        "mode": "graduated",
        "tiers": tiers,
        # what the exchange's build_schedule(price_per_mtok, currency, tiers, mode) takes
        "schedule": {
            "price_per_mtok": format_minor(price, currency),
            "currency": currency,
            "mode": "graduated",
            "tiers": [
                {"from_tokens": t["from_tokens"], "price_per_mtok": format_minor(t["rate_minor"], currency)}
                for t in tiers[1:]
            ],
        },  # fmt: skip
        "curve": curve,
    }
