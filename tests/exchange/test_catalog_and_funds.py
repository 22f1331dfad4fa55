"""Rules the faces used to carry, tested at the market layer: catalog order and pages, facet menus,
the buyers-only deposit rule and who sees which delivery usage."""

from __future__ import annotations

import pytest

from ciyuan.db import tx
from ciyuan.errors import CiyuanError, InvalidInput
from ciyuan.ledger import ledger
from ciyuan.market import accounts, catalog, funds, listings
from tests.exchange.conftest import make_version


@pytest.fixture
def shelf(market_env):
    """Four listings of different sizes and prices besides the fixture's one (12.00 CNY, 300 records)."""
    made = [market_env.listing]
    shelf_ = (("b-mid", 40, "30.00"), ("a-small", 20, "5.00"), ("d-big", 80, "12.00"), ("c-one", 10, "99"))
    for name, n, price in shelf_:
        v = make_version(name, n=n, seed=len(made))
        made.append(listings.publish(v.ref, provider="prov", price_per_mtok=price, sample=0))
    return made


def _ids(page: dict) -> list[str]:
    return [it["id"] for it in page["items"]]


def test_every_sort_is_a_total_order_and_pages_tile_it(shelf):
    by_id = {it["id"]: it for it in shelf}
    want = {
        "newest": [it["id"] for it in reversed(shelf)],  # created one after another
        "name": sorted(by_id, key=lambda i: (by_id[i]["dataset"], i)),
        "price_asc": sorted(by_id, key=lambda i: (float(by_id[i]["price_per_mtok"]), by_id[i]["dataset"], i)),
        "tokens_asc": sorted(by_id, key=lambda i: (by_id[i]["tokens"], by_id[i]["dataset"], i)),
    }
    for sort, order in want.items():
        whole = tx.run(lambda s, sort=sort: catalog.search(s, sort=sort, limit=100))
        assert _ids(whole) == order, sort
        pages, offset = [], 0
        while offset is not None:
            page = tx.run(lambda s, sort=sort, offset=offset: catalog.search(s, sort=sort, limit=2, offset=offset))
            assert page["total"] == len(shelf) and page["sort"] == sort
            pages += _ids(page)
            offset = page["next_offset"]
        assert pages == order, sort  # no listing repeated or skipped at a page boundary
    desc = _ids(tx.run(lambda s: catalog.search(s, sort="price_desc", limit=100)))
    assert [float(by_id[i]["price_per_mtok"]) for i in desc] == sorted(
        (float(it["price_per_mtok"]) for it in shelf), reverse=True)  # fmt: skip


def test_an_unknown_sort_is_refused_with_the_known_ones(market_env):
    with pytest.raises(InvalidInput) as err:
        tx.run(lambda s: catalog.search(s, sort="cheapest"))
    assert err.value.code == "bad_sort" and "price_asc" in err.value.hint


def test_facet_values_are_those_of_active_listings(market_env):
    assert tx.run(catalog.facet_values) == {
        "modality": ["text"], "language": ["en", "ja", "zh"], "domain": ["finance", "law", "medicine"],
    }  # fmt: skip
    listings.delist(market_env.listing["id"], actor=None)
    assert tx.run(catalog.facet_values) == {"modality": [], "language": [], "domain": []}


def test_deposits_go_to_buyers_only(market_env):
    alice = market_env.accounts["alice"]
    t = tx.run(lambda s: funds.deposit(s, "alice", "dep-a", 5_000, "CNY"))
    assert (t.amount, t.credit_account_id) == (5_000, ledger.account_id(ledger.BUYER, alice.id, "CNY"))
    tx.run(lambda s: funds.deposit(s, alice.id, "dep-a", 5_000, "CNY"))  # a replay is harmless
    assert tx.run(lambda s: ledger.balance(s, ledger.BUYER, alice.id, "CNY")).available == 5_000
    before = len(tx.run(ledger.transfers))
    for name in ("prov", "op"):
        with pytest.raises(InvalidInput) as err:
            tx.run(lambda s, name=name: funds.deposit(s, name, f"dep-{name}", 100, "CNY"))
        assert err.value.code == "deposit_not_buyer" and name in err.value.message
    assert len(tx.run(ledger.transfers)) == before  # nothing was written for the refused ones


def test_usage_and_balances_visibility_by_role(market_env):
    a = market_env.accounts
    assert accounts.usage_filter(a["alice"]) == {"buyer_id": a["alice"].id}
    assert accounts.usage_filter(a["prov"]) == {"provider_id": a["prov"].id}
    assert accounts.usage_filter(a["op"]) == {}
    assert [accounts.balances_owner(a[n]) for n in ("alice", "prov", "op")] == [a["alice"].id, a["prov"].id, None]
    stranger = accounts.Account("x", "mallory", "auditor", a["op"].created_at)
    with pytest.raises(CiyuanError) as err:
        accounts.usage_filter(stranger)
    assert err.value.status == 403


def test_ids_that_cannot_name_a_row_are_404_on_every_lookup(market_env):
    """One id guard (``db.ids.get_row``): too long, empty or not text is a 404, never a database error."""
    from ciyuan.db.ids import is_id
    from ciyuan.errors import NotFound
    from ciyuan.market import orders, quotes

    alice = market_env.accounts["alice"].id
    assert is_id("lst_" + "a" * 36) and not is_id("a" * 41) and not is_id("") and not is_id(7)
    lookups = [
        lambda s, i: listings.listing_detail(s, i),
        lambda s, i: listings.own_listing(s, i, None),
        lambda s, i: quotes.get_quote(s, i, alice),
        lambda s, i: orders.get_order(s, i, alice),
        lambda s, i: orders.get_entitlement(s, i, alice),
    ]
    for look in lookups:
        for bad in ("x" * 41, "x" * 5000, "", 12):
            with pytest.raises(NotFound):
                tx.run(lambda s, look=look, bad=bad: look(s, bad))
