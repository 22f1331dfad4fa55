"""Price suggestion: factors behave, tiers are monotone and subadditive, the exchange accepts them."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ciyuan.appraise.price import suggest_price, total_price, utility_factor

LIFT_UP = {"mean": 0.2, "low": 0.1, "high": 0.3}


def test_factors_move_the_price_the_right_way():
    base = suggest_price(0.8, 1.0, LIFT_UP)["price_per_mtok_minor"]
    assert suggest_price(0.4, 1.0, LIFT_UP)["price_per_mtok_minor"] < base
    assert suggest_price(0.8, 0.05, LIFT_UP)["price_per_mtok_minor"] < base / 10
    assert suggest_price(0.8, 1.0, None)["price_per_mtok_minor"] < base
    assert (
        suggest_price(0.8, 1.0, None, domain="medical")["price_per_mtok_minor"]
        > suggest_price(0.8, 1.0, None)["price_per_mtok_minor"]
    )
    assert utility_factor({"mean": -0.1, "low": -0.2, "high": -0.05})[0] == 0.5
    assert utility_factor({"mean": 0.1, "low": -0.2, "high": 0.3})[0] == 1.0


@settings(max_examples=200, deadline=None)
@given(
    q=st.floats(0, 1),
    u=st.floats(0, 1),
    a=st.integers(0, 20_000_000_000),
    b=st.integers(0, 20_000_000_000),
)
def test_tiers_are_monotone_and_subadditive(q, u, a, b):
    p = suggest_price(q, u, LIFT_UP)
    tiers = p["tiers"]
    assert total_price(a + b, tiers) <= total_price(a, tiers) + total_price(b, tiers)
    assert total_price(max(a, b), tiers) >= total_price(min(a, b), tiers)
    rates = [t["rate_minor"] for t in tiers]
    assert rates == sorted(rates, reverse=True)


def test_exchange_accepts_the_suggested_schedule():
    try:
        from ciyuan.market.pricing import build_schedule
    except ImportError:  # the exchange is built elsewhere; nothing to check against yet
        return
    p = suggest_price(0.9, 0.7, LIFT_UP, domain="legal")
    s = build_schedule(**p["schedule"])
    for n in (1, 999_999, 10**6, 10**8, 10**8 + 1, 5 * 10**9, 2 * 10**10):
        assert s.price(n) == total_price(n, p["tiers"])
