"""Listing lifecycle: one active listing per version and provider, price versions, delist/relist.

Every test here fails on the code before migration 0006: publishing the same version again made a
second listing, there was no price change, no delist and no relist, and the CLI picked a provider.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ciyuan.db import tx
from ciyuan.delivery import plan, stream, usage
from ciyuan.errors import Conflict, NotFound
from ciyuan.ledger import ledger
from ciyuan.market import catalog, listings, orders, quotes
from ciyuan.market.pricing import build_schedule

WHOLE = {"filter": None, "token_budget": None}


def _cli(*args: str):
    from ciyuan.cli.main import app

    return CliRunner().invoke(app, list(args))


def test_publishing_the_same_version_again_is_a_conflict_naming_the_listing(market_env):
    lid = market_env.listing["id"]
    with pytest.raises(Conflict) as err:
        listings.publish(market_env.version.ref, provider="prov", price_per_mtok="9.00")
    assert err.value.code == "already_listed" and err.value.status == 409
    assert lid in err.value.message and f"ciyuan listing price {lid}" in err.value.hint
    page = tx.run(lambda s: catalog.search(s, q=market_env.version.dataset))
    assert [it["id"] for it in page["items"]] == [lid]  # still exactly one listing


def test_price_change_is_a_new_price_version_and_quotes_keep_theirs_through_orders(market_env):
    alice = market_env.accounts["alice"].id
    lid = market_env.listing["id"]
    tx.run(lambda s: ledger.deposit(s, "d1", alice, 10_000_000, "CNY"))
    old = quotes.create_quote(alice, lid, WHOLE)
    assert old["price_version"] == 1
    after = listings.change_price(lid, actor="prov", price_per_mtok="24.00")
    assert after["price_version"] == 2 and after["price_per_mtok"] == "24"
    assert [(p["version"], p["price_per_mtok"]) for p in after["price_history"]] == [(1, "12"), (2, "24")]
    new = quotes.create_quote(alice, lid, WHOLE)
    tokens = old["tokens"]
    assert new["tokens"] == tokens and new["price_version"] == 2
    assert old["amount"] == build_schedule("12.00", "CNY").price(tokens)
    assert new["amount"] == build_schedule("24.00", "CNY").price(tokens) > old["amount"]
    # the old quote is paid at its own price, and its entitlement remembers the price version
    order, _ = orders.place_order(alice, old["id"], "k-old")
    assert order["amount"] == old["amount"] and order["entitlement"]["price_version"] == 1
    order2, _ = orders.place_order(alice, new["id"], "k-new")
    assert order2["amount"] == new["amount"] and order2["entitlement"]["price_version"] == 2
    # the same price again is refused, a change of currency too
    with pytest.raises(Conflict):
        listings.change_price(lid, actor="prov", price_per_mtok="24.00")
    with pytest.raises(Exception) as cur:
        listings.change_price(lid, actor="prov", price_per_mtok="3", currency="USD")
    assert cur.value.status == 422
    # another provider cannot reprice it (404: not yours)
    tx.run(lambda s: __import__("ciyuan.market.accounts", fromlist=["x"]).create_account(s, "rival", "provider"))
    with pytest.raises(NotFound):
        listings.change_price(lid, actor="rival", price_per_mtok="1.00")


def test_a_metered_order_of_an_old_quote_streams_at_the_old_price(market_env):
    alice = market_env.accounts["alice"].id
    lid = market_env.listing["id"]
    tx.run(lambda s: ledger.deposit(s, "d1", alice, 10_000_000, "CNY"))
    q = quotes.create_quote(alice, lid, WHOLE)
    listings.change_price(lid, actor="prov", price_per_mtok="36.00")
    order, _ = usage.place_metered_order(alice, q["id"], "k-metered")
    ent = order["entitlement"]["id"]
    assert plan.plan(ent, alice).schedule == build_schedule("12.00", "CNY")
    cursor = None
    while (d := stream.next_batch(alice, ent, cursor, max_tokens=5000)).kind != "done":
        cursor = d.next_cursor
    bal = tx.run(lambda s: ledger.balance(s, ledger.BUYER, alice, "CNY"))
    assert 10_000_000 - bal.available == q["amount"]  # billed exactly the quote, not the new price


def test_delist_stops_quotes_and_orders_hides_it_and_keeps_entitlements(market_env):
    alice, bob = market_env.accounts["alice"].id, market_env.accounts["bob"].id
    lid = market_env.listing["id"]
    for who in (alice, bob):
        tx.run(lambda s, w=who: ledger.deposit(s, f"d:{w}", w, 10_000_000, "CNY"))
    order, _ = orders.place_order(alice, quotes.create_quote(alice, lid, WHOLE)["id"], "k1")
    pending = quotes.create_quote(bob, lid, WHOLE)  # quoted before the delist, ordered after
    out = listings.delist(lid, actor="prov")
    assert out["status"] == "delisted" and out["delisted_at"] is not None
    with pytest.raises(NotFound) as e1:
        quotes.create_quote(bob, lid, WHOLE)
    assert e1.value.code == "listing_delisted"
    with pytest.raises(NotFound) as e2:
        orders.place_order(bob, pending["id"], "k2")
    assert e2.value.code == "listing_delisted"
    assert tx.run(lambda s: catalog.search(s))["total"] == 0
    with pytest.raises(NotFound):
        tx.run(lambda s: listings.listing_detail(s, lid))
    # the paid entitlement still delivers every record
    ent_id = order["entitlement"]["id"]
    cursor, got = None, 0
    while (d := stream.next_batch(alice, ent_id, cursor, max_tokens=5000)).kind != "done":
        got += d.end - d.start
        cursor = d.next_cursor
    assert got == market_env.version.to_dict()["records"]
    # the provider still sees it; relisting offers it again
    mine = tx.run(lambda s: listings.provider_listings(s, "prov"))
    assert [(m["id"], m["status"]) for m in mine] == [(lid, "delisted")]
    with pytest.raises(Conflict):
        listings.delist(lid, actor="prov")
    assert listings.relist(lid, actor="prov")["status"] == "active"
    assert quotes.create_quote(bob, lid, WHOLE)["price_version"] == 1


def test_relist_is_refused_while_the_version_is_listed_again(market_env):
    lid = market_env.listing["id"]
    listings.delist(lid, actor="prov")
    second = listings.publish(market_env.version.ref, provider="prov", price_per_mtok="15.00")
    with pytest.raises(Conflict) as err:
        listings.relist(lid, actor="prov")
    assert second["id"] in err.value.message


def test_publish_needs_a_provider(market_env):
    with pytest.raises(Exception) as err:
        listings.publish(market_env.version.ref, provider="", price_per_mtok="9.00")
    assert err.value.status == 422 and err.value.code == "no_provider"


# -- CLI -------------------------------------------------------------------------------------------


def test_cli_publish_without_provider_is_refused_even_with_one_provider(db_home):
    from ciyuan.market import accounts
    from tests.exchange.conftest import make_version

    tx.run(lambda s: accounts.create_account(s, "only", "provider"))
    v = make_version("solo", n=20)
    res = _cli("publish", v.ref, "--price-per-mtok", "10", "--json")
    assert res.exit_code == 2, res.output
    err = json.loads(res.stdout)["error"]
    assert err["code"] == "no_provider" and "--provider" in err["hint"]
    assert tx.run(lambda s: catalog.search(s))["total"] == 0


def test_cli_listing_lifecycle(market_env):
    lid = market_env.listing["id"]
    res = _cli("publish", market_env.version.ref, "--price", "9", "--provider", "prov", "--json")
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["code"] == "already_listed"
    assert lid in json.loads(res.stdout)["error"]["message"]

    res = _cli("listing", "price", lid, "--price-per-mtok", "20.50", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["price_version"] == 2

    res = _cli("listing", "show", lid, "--json")
    assert res.exit_code == 0, res.output
    hist = json.loads(res.stdout)["price_history"]
    assert [(h["version"], h["price_per_mtok"]) for h in hist] == [(1, "12"), (2, "20.5")]
    assert "price version" in _cli("listing", "show", lid).output

    res = _cli("listing", "delist", lid, "--provider", "prov", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "delisted"
    res = _cli("listing", "list", "--status", "delisted", "--json")
    assert [x["id"] for x in json.loads(res.stdout)] == [lid]
    res = _cli("listing", "relist", lid, "--json")
    assert res.exit_code == 0 and json.loads(res.stdout)["status"] == "active"
    res = _cli("listing", "list", "--provider", "prov", "--json")
    assert [(x["id"], x["status"], x["price_version"]) for x in json.loads(res.stdout)] == [(lid, "active", 2)]
    assert lid in _cli("listing", "list").output

    tx.run(lambda s: __import__("ciyuan.market.accounts", fromlist=["x"]).create_account(s, "rival", "provider"))
    res = _cli("listing", "delist", lid, "--provider", "rival", "--json")
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["code"] == "not_found"


def test_concurrent_publishes_of_one_version_make_one_listing(market_env):
    """Racing publishers: the partial unique index and the re-check in the writing unit leave exactly one."""
    from concurrent.futures import ThreadPoolExecutor

    from tests.exchange.conftest import make_version

    v = make_version("raced", n=60)

    def attempt(i: int) -> str:
        try:
            return listings.publish(v.ref, provider="prov", price_per_mtok=f"{10 + i}.00", sample=0)["id"]
        except Conflict as exc:
            return exc.code

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(attempt, range(4)))
    won = [r for r in results if r.startswith("lst_")]
    assert len(won) == 1 and sorted(r for r in results if not r.startswith("lst_")) == ["already_listed"] * 3
    assert [it["id"] for it in tx.run(lambda s: catalog.search(s, q="raced"))["items"]] == won
