"""Price schedules are arbitrage-free: monotone, subadditive, and splitting never pays off."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciyuan.errors import InvalidInput
from ciyuan.market.pricing import build_schedule, find_split_arbitrage

rates = st.decimals(min_value=0, max_value=500, places=2).map(str)


@st.composite
def schedules(draw):
    """Random schedules, many of them invalid; tests keep the ones publishing accepts."""
    n = draw(st.integers(0, 5))
    starts = sorted(draw(st.sets(st.integers(1, 5_000_000), min_size=n, max_size=n)))
    tiers = [{"from_tokens": s, "price_per_mtok": draw(rates)} for s in starts]
    return draw(rates), tiers, draw(st.sampled_from(["graduated", "volume"]))


def accepted(spec):
    base, tiers, mode = spec
    try:
        return build_schedule(base, "CNY", tiers, mode)
    except InvalidInput:
        return None


tokens = st.integers(0, 12_000_000)


@settings(max_examples=300, deadline=None)
@given(schedules(), tokens, tokens)
def test_accepted_schedules_are_monotone_and_subadditive(spec, a, b):
    s = accepted(spec)
    if s is None:
        return
    assert s.price(a + b) >= max(s.price(a), s.price(b))  # monotone
    assert s.price(a + b) <= s.price(a) + s.price(b)  # subadditive after rounding
    assert s.exact(a + b) <= s.exact(a) + s.exact(b)


@settings(max_examples=200, deadline=None)
@given(schedules(), st.lists(st.integers(1, 3_000_000), min_size=1, max_size=12))
def test_splitting_a_purchase_never_costs_less(spec, parts):
    s = accepted(spec)
    if s is None:
        return
    assert sum(s.price(p) for p in parts) >= s.price(sum(parts))


@settings(max_examples=200, deadline=None)
@given(schedules())
def test_refusal_is_exactly_non_monotone_or_non_subadditive(spec):
    base, tiers, mode = spec
    try:
        build_schedule(base, "CNY", tiers, mode)
    except InvalidInput as exc:
        assert exc.code in ("price_not_monotone", "price_not_subadditive")
        assert "tier" in exc.message and exc.hint
        if exc.code == "price_not_subadditive":
            # the message's witness really is cheaper when split
            from ciyuan.market.pricing import PriceSchedule, Tier

            sched = PriceSchedule(
                "CNY",
                (Tier(0, Fraction(base)), *(Tier(t["from_tokens"], Fraction(t["price_per_mtok"])) for t in tiers)),
                mode,
            )
            a, b = find_split_arbitrage(sched)
            assert sched.exact(a + b) > sched.exact(a) + sched.exact(b)


def test_a_non_subadditive_tier_table_is_refused_with_the_tier_named():
    with pytest.raises(InvalidInput) as err:
        build_schedule("10.00", "CNY", [{"from_tokens": 1_000_000, "price_per_mtok": "15.00"}])
    e = err.value
    assert e.code == "price_not_subadditive" and e.status == 422
    assert "tier 2 (from 1,000,000 tokens at 15 CNY" in e.message
    assert "bought separately" in e.message
    assert "no higher than the previous tier" in e.hint


def test_a_volume_cliff_is_refused_as_not_monotone():
    with pytest.raises(InvalidInput) as err:
        build_schedule("12.00", "CNY", [{"from_tokens": 1_000_000, "price_per_mtok": "6.00"}], "volume")
    assert err.value.code == "price_not_monotone"
    assert "999,999 tokens cost 12.00 CNY" in err.value.message


def test_volume_discounts_in_graduated_mode_are_accepted_and_exact():
    s = build_schedule("12.00", "CNY", [{"from_tokens": 1_000_000, "price_per_mtok": "8.00"}])
    assert s.price(1_000_000) == 1200
    assert s.price(3_000_000) == 1200 + 1600
    assert s.price(1) == 1  # 0.0012 fen rounds up to one fen: small purchases never go free
    assert s.price(0) == 0


def test_a_subadditive_but_not_concave_schedule_is_accepted():
    # 12 / 8 / 10: the rate rises again, yet f(t) >= 10 t everywhere, so no split is cheaper
    s = build_schedule(
        "12",
        "CNY",
        [{"from_tokens": 1_000_000, "price_per_mtok": "8"}, {"from_tokens": 2_000_000, "price_per_mtok": "10"}],
    )
    assert find_split_arbitrage(s) is None


@pytest.mark.parametrize("bad", ["-1", "abc", "1.1234567", "NaN", "1e12"])
def test_bad_rates_are_refused(bad):
    with pytest.raises(InvalidInput):
        build_schedule(bad, "CNY")


def test_schedule_round_trips_through_its_dict():
    s = build_schedule("12.5", "CNY", [{"from_tokens": 10, "price_per_mtok": "3.000001"}])
    again = type(s).from_dict(s.to_dict())
    assert again == s
