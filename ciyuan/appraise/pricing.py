"""Answers the exchange's ``--price-per-mtok suggested`` with the appraisal's suggested price.

The market layer sits above this one and imports :func:`suggest_rate` directly
(:func:`ciyuan.market.listings.suggested_rate`); this module imports nothing from the market.

The rate is the stored appraisal's ``price_per_mtok_minor`` (formula ``ciyuan-price-1``) when
the version was appraised under the same token schedule, else a fresh appraisal is made and
stored first. Currencies other than the base rates' (CNY) are refused with a hint rather than
converted at a guessed exchange rate.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ciyuan.appraise.price import MINOR_DIGITS
from ciyuan.errors import InvalidInput, NotFound


def suggest_rate(version: Any, schedule: str, currency: str) -> Fraction:
    """Major units per million tokens for ``version`` under ``schedule``."""
    from ciyuan.appraise import engine

    ref = f"{version.dataset}@{version.id}"
    try:
        ap = engine.load(ref, version.s)
        if ap.get("tokenizer") != schedule:
            raise NotFound("appraised under another schedule")
    except NotFound:
        ap = engine.appraise(ref, tokenizer=schedule, s=version.s)
    price = ap["price"]
    if price["currency"] != currency.upper():
        raise InvalidInput(
            f"the suggested price is in {price['currency']}, not {currency}",
            hint=f"publish in {price['currency']} or give an explicit --price-per-mtok",
        )
    return Fraction(int(price["price_per_mtok_minor"]), 10 ** MINOR_DIGITS.get(price["currency"], 2))

