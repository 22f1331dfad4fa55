"""Exact money: integer minor units (fen for CNY), parsed from decimal text, never through floats."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from fractions import Fraction

from ciyuan.errors import InvalidInput

# ISO 4217 minor-unit exponents of the currencies the exchange settles in.
CURRENCIES: dict[str, int] = {"CNY": 2, "USD": 2, "EUR": 2, "HKD": 2, "JPY": 0}
MAX_AMOUNT = 10**15  # minor units; far above any real order, far below int64


def check_currency(code: str) -> str:
    """The upper-case code, or an error listing the supported ones."""
    cur = (code or "").upper()
    if cur not in CURRENCIES:
        raise InvalidInput(
            f"currency {code!r} is not supported",
            hint=f"use one of {', '.join(sorted(CURRENCIES))}",
            code="bad_currency",
        )
    return cur


def _decimal(text: str | int, what: str) -> Decimal:
    if isinstance(text, bool):
        raise InvalidInput(f"{what} must be a decimal number, not {text!r}", hint="write it like 12.50")
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation:
        raise InvalidInput(f"{what} {text!r} is not a decimal number", hint="write it like 12.50") from None
    if not value.is_finite():
        raise InvalidInput(f"{what} {text!r} is not a finite number", hint="write it like 12.50")
    return value


def parse_amount(text: str | int, currency: str, *, what: str = "amount") -> int:
    """Major-unit decimal text ("12.34") to minor units (1234); refuses sub-minor precision."""
    exp = CURRENCIES[check_currency(currency)]
    value = _decimal(text, what)
    minor = value.scaleb(exp)
    if minor != minor.to_integral_value():
        raise InvalidInput(
            f"{what} {text} has more than {exp} decimals for {currency}",
            hint=f"{currency} is counted in units of {Decimal(1).scaleb(-exp)}",
        )
    if minor <= 0 or minor > MAX_AMOUNT:
        raise InvalidInput(
            f"{what} {text} must be positive and at most {format_amount(MAX_AMOUNT, currency)}",
            hint="give a positive amount",
        )
    return int(minor)


def parse_rate(text: str | int, *, what: str = "price per million tokens") -> Fraction:
    """A non-negative major-unit rate with at most 6 decimals, as an exact fraction."""
    value = _decimal(text, what)
    if value < 0:
        raise InvalidInput(f"{what} {text} is negative", hint="prices are zero or more")
    if value.scaleb(6) != value.scaleb(6).to_integral_value():
        raise InvalidInput(f"{what} {text} has more than 6 decimals", hint="round it to at most 6 decimals")
    if value > 10**9:
        raise InvalidInput(f"{what} {text} is above 1,000,000,000", hint="check the unit: price per million tokens")
    return Fraction(value)


def format_amount(minor: int, currency: str) -> str:
    """Minor units back to major-unit text with exactly the currency's decimals."""
    exp = CURRENCIES.get(currency, 2)
    sign = "-" if minor < 0 else ""
    q, r = divmod(abs(int(minor)), 10**exp)
    return f"{sign}{q}.{r:0{exp}d}" if exp else f"{sign}{q}"


def format_rate(rate: Fraction) -> str:
    """An exact rate (at most 6 decimals) as plain decimal text without trailing zeros."""
    text = f"{Decimal(rate.numerator) / Decimal(rate.denominator):f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text
