"""Authentication and authorisation over real HTTP: 401, 403, 404 for others' things, no plaintext keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import inspect, select, text

from ciyuan import db
from ciyuan.db import tx
from ciyuan.ledger import ledger
from ciyuan.market import accounts


def _order(mkt, who="alice", key="k1"):
    tx.run(lambda s: ledger.deposit(s, f"dep-{who}", mkt.accounts[who].id, 100_000, "CNY"))
    c = mkt.client(mkt.keys[who])
    q = c.post("/v1/quotes", json={"listing_id": mkt.listing["id"]}).json()
    r = c.post("/v1/orders", json={"quote_id": q["id"]}, headers={"Idempotency-Key": key})
    assert r.status_code == 201, r.text
    return r.json()


def test_no_key_is_401_but_the_catalog_is_public(mkt):
    anon = mkt.client()
    for method, path, body in [
        ("post", "/v1/quotes", {"listing_id": "lst_x"}),
        ("get", "/v1/orders", None),
        ("get", "/v1/me", None),
        ("get", "/v1/ledger/check", None),
    ]:
        r = anon.request(method.upper(), path, json=body)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["error"]["code"] == "unauthenticated" and r.json()["error"]["hint"]
    assert anon.get("/v1/listings").status_code == 200
    assert anon.get(f"/v1/listings/{mkt.listing['id']}").json()["sample"]
    assert mkt.client("cyk_not-a-real-key").get("/v1/me").status_code == 401


def test_wrong_role_or_scope_is_403(mkt):
    prov = mkt.client(mkt.keys["prov"])
    r = prov.post("/v1/quotes", json={"listing_id": mkt.listing["id"]})
    assert r.status_code == 403 and "buyer" in r.json()["error"]["message"]
    alice = mkt.client(mkt.keys["alice"])
    assert alice.post("/v1/ledger/deposits", json={"account": "alice", "amount": "5"}).status_code == 403
    assert alice.post("/v1/listings", json={"dataset": "corpus", "price_per_mtok": "1"}).status_code == 403
    # a buyer key without orders:write
    _, narrow = tx.run(lambda s: accounts.create_key(s, "alice", ["quotes:write"]))
    c = mkt.client(narrow)
    assert c.post("/v1/quotes", json={"listing_id": mkt.listing["id"]}).status_code == 201
    r = c.post("/v1/orders", json={"quote_id": "q_x"}, headers={"Idempotency-Key": "a"})
    assert r.status_code == 403 and "orders:write" in r.json()["error"]["message"]


def test_another_buyers_order_is_404(mkt):
    order = _order(mkt, "alice")
    bob = mkt.client(mkt.keys["bob"])
    for path in [
        f"/v1/orders/{order['id']}",
        f"/v1/entitlements/{order['entitlement']['id']}",
        f"/v1/quotes/{order['quote_id']}",
    ]:
        r = bob.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] == "not_found"
    assert bob.get("/v1/orders").json() == []
    alice = mkt.client(mkt.keys["alice"])
    assert alice.get(f"/v1/orders/{order['id']}").json()["id"] == order["id"]
    # bob cannot pay alice's quote either
    r = bob.post("/v1/orders", json={"quote_id": order["quote_id"]}, headers={"Idempotency-Key": "x"})
    assert r.status_code == 404


def test_revoked_and_expired_keys_are_refused(mkt):
    info, secret = tx.run(lambda s: accounts.create_key(s, "bob"))
    c = mkt.client(secret)
    assert c.get("/v1/me").status_code == 200
    tx.run(lambda s: accounts.revoke_key(s, info["id"]))
    r = c.get("/v1/me")
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    past = datetime.now(UTC) - timedelta(seconds=1)
    _, old = tx.run(lambda s: accounts.create_key(s, "bob", None, past))
    r = mkt.client(old).get("/v1/me")
    assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


def test_operator_manages_accounts_and_keys_over_http(mkt):
    op = mkt.client(mkt.keys["op"])
    r = op.post("/v1/accounts", json={"name": "carol", "role": "buyer"})
    assert r.status_code == 201
    r = op.post("/v1/keys", json={"account": "carol", "expires": "1d"})
    assert r.status_code == 201 and r.json()["key"].startswith("cyk_")
    secret, key_id = r.json()["key"], r.json()["id"]
    assert mkt.client(secret).get("/v1/me").json()["account"]["name"] == "carol"
    assert op.delete(f"/v1/keys/{key_id}").json()["revoked_at"]
    assert mkt.client(secret).get("/v1/me").status_code == 401
    assert op.post("/v1/accounts", json={"name": "carol", "role": "buyer"}).status_code == 409


def test_no_key_is_stored_in_plaintext(mkt):
    secrets_ = list(mkt.keys.values())
    _order(mkt, "alice")
    eng = db.engine()
    found = []
    with eng.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):  # table names from the catalog
                blob = " ".join(str(v) for v in row)
                for sec in secrets_:
                    if sec in blob or sec[4:] in blob or sec[4:24] in blob:
                        found.append(table)
    assert found == []
    with db.session() as s:
        from ciyuan.market.tables import ApiKeyRow

        hashes = s.execute(select(ApiKeyRow.key_hash)).scalars().all()
    assert {accounts.hash_key(k) for k in secrets_} <= set(hashes)
