"""Quotes expire, entitlements cover exactly the quoted records, and delivery's hooks hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ciyuan.db import tx
from ciyuan.errors import Conflict
from ciyuan.ledger import ledger
from ciyuan.market import listings, orders, quotes
from ciyuan.market.quotes import QuoteExpired

T0 = datetime(2030, 6, 1, tzinfo=UTC)


def test_expired_quote_is_410_and_entitlement_is_exact(market_env):
    alice = market_env.accounts["alice"].id
    lid = market_env.listing["id"]
    tx.run(lambda s: ledger.deposit(s, "d", alice, 10_000, "CNY"))
    sel = {"filter": {"field": "meta.domain", "op": "in", "value": ["law"]}}
    q = quotes.create_quote(alice, lid, sel, now=T0)
    with pytest.raises(QuoteExpired) as err:
        orders.place_order(alice, q["id"], "k", now=T0 + timedelta(seconds=901))
    assert err.value.status == 410
    order, replay = orders.place_order(alice, q["id"], "k", now=T0 + timedelta(seconds=899))
    assert not replay
    ent_id = order["entitlement"]["id"]

    def draw(s):
        ent = orders.get_entitlement(s, ent_id, alice)
        res = orders.entitlement_selection(s, ent)
        return ent, res

    ent, res = tx.run(draw)
    recs = list(market_env.version.iter_records())
    want = [i for i, r in enumerate(recs) if r["meta"]["domain"] == "law"]
    assert res.ordinals().tolist() == want
    assert res.tokens == sum(recs[i]["tokens"]["cl100k_base"] for i in want) == ent.tokens
    tx.run(lambda s: orders.record_draw(s, ent_id, ent.tokens - 1))
    with pytest.raises(Conflict):
        tx.run(lambda s: orders.record_draw(s, ent_id, 2))
    assert tx.run(lambda s: orders.record_draw(s, ent_id, 1)).status == "exhausted"
    with pytest.raises(Exception) as nf:
        tx.run(lambda s: orders.get_entitlement(s, ent_id, market_env.accounts["bob"].id))
    assert nf.value.status == 404


def test_listing_shows_what_the_provider_declared(market_env):
    """Publishing without --license uses the declared licence; the declared description reaches the catalog."""
    from ciyuan.db import tx
    from ciyuan.store import VersionBuilder

    b = VersionBuilder("declared", made_by={"tool": "tests"})
    for i in range(20):
        b.add({"id": f"d{i}", "text": f"declared {i}", "tokens": {"cl100k_base": 5}})
    declared = {"description": "turbine logs", "creator": "windco", "keywords": ["wind"]}
    b.extra = {"license": "CC-BY-4.0", "card": declared}
    v = b.commit()
    lst = listings.publish(v.ref, provider="prov", price_per_mtok="10", sample=0)
    assert lst["license"] == "CC-BY-4.0"
    detail = tx.run(lambda s: listings.listing_detail(s, lst["id"]))
    card = detail["card"]
    assert (card["description"], card["creator"], card["keywords"]) == ("turbine logs", "windco", ["wind"])
    # an explicit licence at publish still wins (one active listing per version: delist the first)
    listings.delist(lst["id"], actor="prov")
    assert listings.publish(v.ref, provider="prov", price_per_mtok="10", sample=0, license="MIT")["license"] == "MIT"
