"""The listing lifecycle over a live server: provider-owned price changes, delist and relist.

Fails before migration 0006: the routes did not exist and publishing a version twice made two listings.
"""

from __future__ import annotations

WHOLE = {"selection": {"filter": None, "token_budget": None}}


def test_publish_again_is_409_naming_the_listing(mkt) -> None:
    lid = mkt.listing["id"]
    res = mkt.client(mkt.keys["prov"]).post("/v1/listings", json={"dataset": mkt.version.ref, "price_per_mtok": "9"})
    assert res.status_code == 409, res.text
    err = res.json()["error"]
    assert err["code"] == "already_listed" and lid in err["message"] and f"/v1/listings/{lid}/prices" in err["hint"]


def test_price_change_delist_relist_over_http(mkt) -> None:
    lid = mkt.listing["id"]
    prov, bob = mkt.client(mkt.keys["prov"]), mkt.client(mkt.keys["bob"])
    mkt.client(mkt.keys["op"]).post("/v1/ledger/deposits", json={"account": "bob", "amount": "100.00"})
    old = bob.post("/v1/quotes", json={"listing_id": lid, **WHOLE})
    assert old.status_code == 201 and old.json()["price_version"] == 1

    # who may change it: no key 401, a buyer 403, the provider 201
    assert mkt.client().post(f"/v1/listings/{lid}/prices", json={"price_per_mtok": "30"}).status_code == 401
    assert bob.post(f"/v1/listings/{lid}/prices", json={"price_per_mtok": "30"}).status_code == 403
    res = prov.post(f"/v1/listings/{lid}/prices", json={"price_per_mtok": "30"})
    assert res.status_code == 201, res.text
    assert res.json()["price_version"] == 2
    detail = mkt.client().get(f"/v1/listings/{lid}").json()
    assert [(p["version"], p["price_per_mtok"]) for p in detail["price_history"]] == [(1, "12"), (2, "30")]
    new = bob.post("/v1/quotes", json={"listing_id": lid, **WHOLE}).json()
    assert new["price_version"] == 2 and new["amount"] > old.json()["amount"]

    # the old quote is paid at its own price
    paid = bob.post("/v1/orders", json={"quote_id": old.json()["id"]}, headers={"Idempotency-Key": "o1"})
    assert paid.status_code == 201 and paid.json()["amount"] == old.json()["amount"]
    ent = paid.json()["entitlement"]
    assert ent["price_version"] == 1

    # delist: hidden, no quotes, the entitlement still delivers
    res = prov.post(f"/v1/listings/{lid}/delist")
    assert res.status_code == 200 and res.json()["status"] == "delisted"
    assert lid not in [it["id"] for it in mkt.client().get("/v1/listings").json()["items"]]
    assert mkt.client().get(f"/v1/listings/{lid}").status_code == 404
    q = bob.post("/v1/quotes", json={"listing_id": lid, **WHOLE})
    assert q.status_code == 404 and q.json()["error"]["code"] == "listing_delisted"
    late = bob.post("/v1/orders", json={"quote_id": new["id"]}, headers={"Idempotency-Key": "o2"})
    assert late.status_code == 404 and late.json()["error"]["code"] == "listing_delisted"
    assert bob.get(f"/v1/entitlements/{ent['id']}").status_code == 200
    batch = bob.get(f"/v1/entitlements/{ent['id']}/records", params={"max_tokens": 2000})
    assert batch.status_code == 200 and batch.headers["Ciyuan-Records"] != "0"

    mine = prov.get("/v1/provider/listings").json()
    assert [(m["id"], m["status"], m["price_version"]) for m in mine] == [(lid, "delisted", 2)]
    assert prov.post(f"/v1/listings/{lid}/delist").status_code == 409
    res = prov.post(f"/v1/listings/{lid}/relist")
    assert res.status_code == 200 and res.json()["status"] == "active"
    assert bob.post("/v1/quotes", json={"listing_id": lid, **WHOLE}).status_code == 201


def test_another_provider_gets_404(mkt) -> None:
    from ciyuan.db import tx
    from ciyuan.market import accounts

    key = tx.run(lambda s: (accounts.create_account(s, "rival", "provider"), accounts.create_key(s, "rival")[1]))[1]
    rival = mkt.client(key)
    lid = mkt.listing["id"]
    for path, body in ((f"/v1/listings/{lid}/prices", {"price_per_mtok": "1"}), (f"/v1/listings/{lid}/delist", None)):
        res = rival.post(path, json=body)
        assert res.status_code == 404, res.text
    assert rival.get("/v1/provider/listings").json() == []
    assert mkt.client().get(f"/v1/listings/{lid}").json()["price_version"] == 1  # unchanged


def test_provider_page_controls_change_price_delist_and_relist(mkt) -> None:
    """The web face: the provider page has the controls, in both languages, and they act."""
    from ciyuan.db import tx
    from ciyuan.market import listings

    lid = mkt.listing["id"]
    web = mkt.client(follow_redirects=False)
    assert web.post("/signin", data={"key": mkt.keys["prov"], "next": "/provider"}).status_code == 303
    page = web.get("/provider?lang=en").text
    assert f'action="/provider/listings/{lid}/price"' in page and "Delist" in page and "price version 1" in page

    res = web.post(f"/provider/listings/{lid}/price", data={"price_per_mtok": "18.00"})
    assert res.status_code == 303 and "updated=" in res.headers["location"]
    assert tx.run(lambda s: listings.listing_detail(s, lid))["price_version"] == 2
    bad = web.post(f"/provider/listings/{lid}/price", data={"price_per_mtok": "-1"})
    assert "listing_error=" in bad.headers["location"]
    assert 'data-testid="listing-error"' in web.get(bad.headers["location"]).text

    assert web.post(f"/provider/listings/{lid}/delist").status_code == 303
    page = web.get("/provider?lang=zh").text
    assert "已下架" in page and "重新上架" in page and f'action="/provider/listings/{lid}/relist"' in page
    assert mkt.client().get(f"/v1/listings/{lid}").status_code == 404
    assert web.post(f"/provider/listings/{lid}/relist").status_code == 303
    assert mkt.client().get(f"/v1/listings/{lid}").status_code == 200

    # a buyer's key cannot use the controls
    other = mkt.client(follow_redirects=False)
    other.post("/signin", data={"key": mkt.keys["bob"], "next": "/"})
    assert other.post(f"/provider/listings/{lid}/delist").status_code == 403
    assert mkt.client().get(f"/v1/listings/{lid}").status_code == 200
