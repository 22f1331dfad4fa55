"""Catalog, quotes and orders over HTTP: exact counts and prices, clear 4xx errors."""

from __future__ import annotations

import json

from ciyuan.db import tx
from ciyuan.ledger import ledger
from ciyuan.market.pricing import build_schedule


def _expected(mkt, pred, budget=None):
    """Tokens of the records a selection should cover, computed straight from the version."""
    total = 0
    for rec in mkt.version.iter_records():
        if pred(rec):
            t = rec["tokens"]["cl100k_base"]
            if budget is not None and total + t > budget:
                break
            total += t
    return total


def test_catalog_search_and_detail(mkt):
    anon = mkt.client()
    page = anon.get("/v1/listings", params={"language": "zh", "min_price": "10", "max_price": "12"}).json()
    assert page["total"] == 1 and page["items"][0]["id"] == mkt.listing["id"]
    assert anon.get("/v1/listings", params={"language": "xx"}).json()["total"] == 0
    assert anon.get("/v1/listings", params={"max_price": "11.99"}).json()["total"] == 0
    assert anon.get("/v1/listings", params={"min_tokens": 10**12}).json()["total"] == 0
    assert anon.get("/v1/listings", params={"q": "corp"}).json()["total"] == 1
    assert anon.get("/v1/listings", params={"q": "%"}).json()["total"] == 0  # no wildcard injection
    detail = anon.get(f"/v1/listings/{mkt.listing['id']}").json()
    assert len(detail["sample"]) == 3 and detail["card"]["records"] == 300
    assert detail["card"]["fields"]["meta.score"] == "number"
    assert anon.get("/v1/listings/lst_missing").status_code == 404
    r = anon.get("/v1/listings", params={"max_price": "abc"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"


def test_provider_publishes_over_http_and_bad_schedules_are_refused(mkt):
    from tests.api.conftest import make_version

    prov = mkt.client(mkt.keys["prov"])
    other = make_version("corpus-two", n=50)  # mkt.version is listed already: one active listing per version
    body = {
        "dataset": other.ref,
        "price_per_mtok": "20.00",
        "tiers": [{"from_tokens": 1000, "price_per_mtok": "25.00"}],
        "sample": 0,
    }
    r = prov.post("/v1/listings", json=body)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "price_not_subadditive" and "tier 2" in err["message"] and err["hint"]
    body["tiers"] = [{"from_tokens": 1000, "price_per_mtok": "15.00"}]
    r = prov.post("/v1/listings", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["price"]["tiers"][1] == {"from_tokens": 1000, "price_per_mtok": "15"}
    assert mkt.client().get("/v1/listings").json()["total"] == 2
    # 'suggested' asks the appraisal below the market: the listing charges exactly the appraised rate
    third = make_version("corpus-three", n=50)
    r = prov.post("/v1/listings", json={"dataset": third.ref, "price_per_mtok": "suggested", "sample": 0})
    assert r.status_code == 201, r.text
    from ciyuan.appraise import engine
    from ciyuan.market.pricing import PriceSchedule

    minor = engine.load(third.ref)["price"]["price_per_mtok_minor"]
    assert PriceSchedule.from_dict(r.json()["price"]).price(1_000_000) == minor
    assert prov.post("/v1/listings", json={**body, "dataset": "nope"}).status_code == 404


def test_quotes_are_exact(mkt):
    c = mkt.client(mkt.keys["alice"])
    lid = mkt.listing["id"]
    sched = build_schedule("12.00", "CNY")
    whole = c.post("/v1/quotes", json={"listing_id": lid}).json()
    assert whole["tokens"] == _expected(mkt, lambda r: True) == mkt.listing["tokens"]
    assert whole["amount"] == sched.price(whole["tokens"]) and whole["records"] == 300
    f = {
        "and": [
            {"field": "meta.language", "op": "eq", "value": "zh"},
            {"field": "meta.score", "op": "ge", "value": 0.5},
        ]
    }
    q = c.post("/v1/quotes", json={"listing_id": lid, "selection": {"filter": f}}).json()
    assert q["tokens"] == _expected(mkt, lambda r: r["meta"]["language"] == "zh" and r["meta"]["score"] >= 0.5)
    again = c.post("/v1/quotes", json={"listing_id": lid, "selection": {"filter": f}}).json()
    assert again["selection_id"] == q["selection_id"] and again["id"] != q["id"]
    b = c.post("/v1/quotes", json={"listing_id": lid, "selection": {"filter": f, "token_budget": 2000}}).json()
    assert (
        b["tokens"]
        == _expected(mkt, lambda r: r["meta"]["language"] == "zh" and r["meta"]["score"] >= 0.5, 2000)
        <= 2000
    )
    assert b["selection_id"] != q["selection_id"]
    for bad, code in [
        ({"field": "meta.language", "op": "like", "value": "z"}, "bad_filter"),
        ({"field": "meta.score", "op": "ge", "value": "high"}, "bad_filter"),
        ({"field": "text; DROP TABLE x", "op": "eq", "value": 1}, "bad_filter"),
        ({"field": "meta.language", "op": "eq", "value": "klingon"}, "empty_selection"),
        ({"field": "meta.langauge", "op": "eq", "value": "zh"}, "unknown_field"),
        ({"field": "meta.langauge", "op": "ne", "value": "zh"}, "unknown_field"),
    ]:
        r = c.post("/v1/quotes", json={"listing_id": lid, "selection": {"filter": bad}})
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == code
    typo = c.post("/v1/quotes", json={"listing_id": lid, "selection": {"filter": {
        "field": "meta.langauge", "op": "eq", "value": "zh"}}}).json()["error"]
    assert "meta.langauge" in typo["message"] and "meta.language" in typo["hint"]  # names it, suggests the field
    absent = {"field": "meta.langauge", "op": "exists", "value": False}  # asking whether a key exists is fine
    assert c.post("/v1/quotes", json={"listing_id": lid, "selection": {"filter": absent}}).status_code == 201
    assert c.post("/v1/quotes", json={"listing_id": "lst_nope"}).status_code == 404


def test_orders_replay_conflict_and_funds(mkt):
    alice = mkt.accounts["alice"].id
    c = mkt.client(mkt.keys["alice"])
    q = c.post("/v1/quotes", json={"listing_id": mkt.listing["id"]}).json()
    r = c.post("/v1/orders", json={"quote_id": q["id"]}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 402 and r.json()["error"]["code"] == "insufficient_funds"
    tx.run(lambda s: ledger.deposit(s, "dep", alice, q["amount"], "CNY"))
    assert c.post("/v1/orders", json={"quote_id": q["id"]}).status_code == 422  # key required
    first = c.post("/v1/orders", json={"quote_id": q["id"]}, headers={"Idempotency-Key": "k"})
    assert first.status_code == 201
    order = first.json()
    assert order["amount"] == q["amount"] and order["entitlement"]["tokens"] == q["tokens"]
    assert order["entitlement"]["selection_id"] == q["selection_id"]
    replay = c.post("/v1/orders", json={"quote_id": q["id"]}, headers={"Idempotency-Key": "k"})
    assert replay.status_code == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == order
    q2 = c.post("/v1/quotes", json={"listing_id": mkt.listing["id"]}).json()
    r = c.post("/v1/orders", json={"quote_id": q2["id"]}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_conflict"
    r = c.post("/v1/orders", json={"quote_id": q["id"]}, headers={"Idempotency-Key": "k2"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "quote_used"
    me = c.get("/v1/me").json()
    assert me["balances"][0]["available"] == 0
    assert [o["id"] for o in c.get("/v1/orders").json()] == [order["id"]]
    ent = c.get(f"/v1/entitlements/{order['entitlement']['id']}").json()
    assert ent["tokens_remaining"] == q["tokens"]
    op = mkt.client(mkt.keys["op"])
    chk = op.get("/v1/ledger/check").json()
    assert chk["ok"], json.dumps(chk)
    r = op.post("/v1/ledger/deposits", json={"account": "alice", "amount": "1.005"})
    assert r.status_code == 422 and "decimals" in r.json()["error"]["message"]
    r = op.post("/v1/ledger/deposits", json={"account": "alice", "amount": "1.00", "transfer_id": "t1"})
    assert r.status_code == 201 and r.json()["amount"] == 100
    assert (
        op.post("/v1/ledger/deposits", json={"account": "alice", "amount": "1.00", "transfer_id": "t1"}).json()["id"]
        == "t1"
    )
    assert (
        op.post("/v1/ledger/deposits", json={"account": "alice", "amount": "2.00", "transfer_id": "t1"}).status_code
        == 409
    )


def test_unknown_routes_and_methods_are_json_4xx(mkt):
    c = mkt.client()
    r = c.get("/v1/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = c.put("/v1/listings")
    assert r.status_code == 405 and "error" in r.json()
    assert c.get("/openapi.json").json()["info"]["title"] == "ciyuan exchange"
    assert c.get("/docs").status_code == 200


def test_listing_search_sorts_through_the_catalog(mkt):
    """``sort`` reaches ``catalog.search``: the answer says which order it is, an unknown one is 422."""
    from ciyuan.market import catalog

    anon = mkt.client()
    for sort in catalog.SORTS:
        r = anon.get("/v1/listings", params={"sort": sort, "limit": 1})
        assert r.status_code == 200 and r.json()["sort"] == sort, r.text
    assert anon.get("/v1/listings", params={"sort": "cheapest"}).status_code == 422
