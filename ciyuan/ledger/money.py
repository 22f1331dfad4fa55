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


MAX_TEXT = 64  # characters of a decimal input; anything longer is not a price or an amount
MAX_MAGNITUDE = 18  # decimal exponent of the largest value parsed at all (every real limit is far below)


def _decimal(text: str | int, what: str) -> Decimal:
    """Exact decimal text, refused unless finite and of sane size, with trailing zeros stripped.

    The checks read the digits and exponent only, never compute with the value: ``1e999999999``
    would overflow the decimal context (``decimal.Overflow``, a 500 before) and ``1e-999999999``
    would make a fraction with a billion-digit denominator.
    """
    if isinstance(text, bool):
        raise InvalidInput(f"{what} must be a decimal number, not {text!r}", hint="write it like 12.50")
    raw = str(text).strip()
    if len(raw) > MAX_TEXT:
        raise InvalidInput(
            f"{what} is {len(raw)} characters long; a decimal number here has at most {MAX_TEXT}",
            hint="write it like 12.50",
        )
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise InvalidInput(f"{what} {raw!r} is not a decimal number", hint="write it like 12.50") from None
    if not value.is_finite():
        raise InvalidInput(f"{what} {raw!r} is not a finite number", hint="write it like 12.50")
    if value.is_zero():
        return Decimal(0)
    sign, digits, exp = value.as_tuple()
    assert isinstance(exp, int)  # finite
    while len(digits) > 1 and digits[-1] == 0:  # 12.500 -> 12.5, exactly, without a context
        digits, exp = digits[:-1], exp + 1
    value = Decimal((sign, digits, exp))
    if value.adjusted() > MAX_MAGNITUDE:
        raise InvalidInput(
            f"{what} {raw} is out of range (above 10^{MAX_MAGNITUDE})",
            hint="check the unit: major units, e.g. 12.50",
        )
    return value


def _places(value: Decimal) -> int:
    """Decimals of a value from :func:`_decimal` (trailing zeros already stripped)."""
    exp = value.as_tuple().exponent
    assert isinstance(exp, int)
    return max(0, -exp)


def parse_amount(text: str | int, currency: str, *, what: str = "amount") -> int:
    """Major-unit decimal text ("12.34") to minor units (1234); refuses sub-minor precision."""
    exp = CURRENCIES[check_currency(currency)]
    value = _decimal(text, what)
    if _places(value) > exp:
        raise InvalidInput(
            f"{what} {text} has more than {exp} decimals for {currency}",
            hint=f"{currency} is counted in units of {Decimal(1).scaleb(-exp)}",
        )
    minor = value.scaleb(exp)  # exact: at most 18 + 2 significant digits
    if minor <= 0 or minor > MAX_AMOUNT:
        raise InvalidInput(
            f"{what} {text} must be positive and at most {format_amount(MAX_AMOUNT, currency)}",
            hint="give a positive amount",
        )
    return int(minor)


def parse_rate(text: str | int, *, what: str = "price_per_mtok") -> Fraction:
    """A non-negative major-unit rate (per million tokens) with at most 6 decimals, as an exact fraction."""
    value = _decimal(text, what)
    if value < 0:
        raise InvalidInput(f"{what} {text} is negative", hint="prices are zero or more")
    if _places(value) > 6:
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
