"""``POST /v1/orders`` answered by the hot path (ciyuan.api.fast_orders) is the same as through the full app.

The hot path takes ``Content-Type: application/json`` exactly; ``application/json; charset=utf-8`` goes
the full way (FastAPI route, limits middleware). Every outcome is asked both ways and compared:
status, body and the headers a client reads.
"""

from __future__ import annotations

import json

from ciyuan.db import tx
from ciyuan.ledger import ledger

FAST, FULL = "application/json", "application/json; charset=utf-8"
# not ``Connection``: the full path refuses a bad key before reading the body and so closes the
# connection; the hot path has read the small body already and keeps it open
HEADERS = ("content-type", "content-length", "www-authenticate", "idempotent-replayed")


def _post(c, body: dict | bytes, ctype: str, key: str | None = "k"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"Content-Type": ctype, **({"Idempotency-Key": key} if key is not None else {})}
    return c.post("/v1/orders", content=raw, headers=hdrs)


def _same(a, b) -> None:
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.json() == b.json()
    for h in HEADERS:
        assert a.headers.get(h) == b.headers.get(h), h


def test_errors_are_the_same_both_ways(mkt):
    alice = mkt.client(mkt.keys["alice"])
    q = alice.post("/v1/quotes", json={"listing_id": mkt.listing["id"]}).json()
    for client, body, key in [
        (mkt.client("not-a-key"), {"quote_id": q["id"]}, "k"),  # 401
        (mkt.client(mkt.keys["prov"]), {"quote_id": q["id"]}, "k"),  # 403: not a buyer
        (alice, {"quote_id": "q_missing"}, "k"),  # 404
        (alice, {"quote_id": q["id"]}, "k"),  # 402: no funds yet
        (alice, {"quote_id": q["id"]}, None),  # 422: no Idempotency-Key
        (alice, {"quote_id": q["id"], "extra": 1}, "k"),  # 422: unknown field
        (alice, {"quote_id": "bad id!"}, "k"),  # 422: not an id
        (alice, b"{not json", "k"),  # 422
    ]:
        _same(_post(client, body, FAST, key), _post(client, body, FULL, key))


def test_an_order_and_its_replays_are_the_same_both_ways(mkt):
    alice = mkt.client(mkt.keys["alice"])
    q = alice.post("/v1/quotes", json={"listing_id": mkt.listing["id"]}).json()
    tx.run(lambda s: ledger.deposit(s, "dep", mkt.accounts["alice"].id, q["amount"], "CNY"))
    first = _post(alice, {"quote_id": q["id"]}, FAST)
    assert first.status_code == 201 and first.json()["amount"] == q["amount"]
    again_fast, again_full = _post(alice, {"quote_id": q["id"]}, FAST), _post(alice, {"quote_id": q["id"]}, FULL)
    _same(again_fast, again_full)
    assert again_fast.status_code == 200 and again_fast.headers["idempotent-replayed"] == "true"
    assert again_fast.json() == first.json()
    _same(_post(alice, {"quote_id": q["id"]}, FAST, "k2"), _post(alice, {"quote_id": q["id"]}, FULL, "k2"))  # 409
    assert tx.run(ledger.check)["ok"]
    legs = tx.run(lambda s: ledger.charge_legs(s, leg="buyer"))
    assert [t.charge_id for t in legs] == [f"order:{first.json()['id']}"]  # charged once


def test_a_key_revoked_after_it_was_cached_is_refused_and_charges_nothing(mkt):
    from ciyuan.market import accounts

    info, secret = tx.run(lambda s: accounts.create_key(s, "alice"))
    c = mkt.client(secret)
    q1, q2 = (c.post("/v1/quotes", json={"listing_id": mkt.listing["id"]}).json() for _ in range(2))
    tx.run(lambda s: ledger.deposit(s, "dep", mkt.accounts["alice"].id, q1["amount"] + q2["amount"], "CNY"))
    assert _post(c, {"quote_id": q1["id"]}, FAST, "a").status_code == 201  # the key is now cached
    tx.run(lambda s: accounts.revoke_key(s, info["id"]))
    fast, full = _post(c, {"quote_id": q2["id"]}, FAST, "b"), _post(c, {"quote_id": q2["id"]}, FULL, "b")
    _same(fast, full)
    assert fast.status_code == 401 and "revoked" in fast.json()["error"]["message"]
    legs = tx.run(lambda s: ledger.charge_legs(s, leg="buyer"))
    assert len(legs) == 1  # only the order made before the revocation
    assert tx.run(ledger.check)["ok"]


def test_concurrent_orders_with_mixed_failures_answer_as_the_full_path_does(mkt):
    """Many orders at once through the hot path (committed together in shared units of work):
    each answer is the one the full path gives for the same request afterwards, byte for byte
    for the ones that were paid (a replay) and by status and code for the refused ones."""
    import threading

    alice, bob = mkt.client(mkt.keys["alice"]), mkt.client(mkt.keys["bob"])
    qa = [alice.post("/v1/quotes", json={"listing_id": mkt.listing["id"]}).json() for _ in range(4)]
    qb = [bob.post("/v1/quotes", json={"listing_id": mkt.listing["id"]}).json() for _ in range(3)]
    price = qa[0]["amount"]
    tx.run(lambda s: ledger.deposit(s, "dep-a", mkt.accounts["alice"].id, 2 * price, "CNY"))  # two of four
    tx.run(lambda s: ledger.deposit(s, "dep-b", mkt.accounts["bob"].id, 3 * price, "CNY"))  # all three
    calls = [(alice, {"quote_id": q["id"]}, f"a{i}") for i, q in enumerate(qa)]
    calls += [(bob, {"quote_id": q["id"]}, f"b{i}") for i, q in enumerate(qb)]
    calls += [(bob, {"quote_id": qb[0]["id"]}, "b0"),  # a racing replay
              (bob, {"quote_id": qb[1]["id"]}, "b-other"),  # the quote again, another key
              (bob, {"quote_id": qa[0]["id"]}, "b-theirs"),  # alice's quote: 404
              (alice, {"quote_id": "q_missing"}, "a-missing")]
    got: dict[int, object] = {}
    start = threading.Barrier(len(calls))

    def post(n: int) -> None:
        client, body, key = calls[n]
        start.wait()
        got[n] = _post(client, body, FAST, key)

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = [got[n].status_code for n in range(len(calls))]
    assert sorted(codes[:4]) == [201, 201, 402, 402]  # alice: as many as her money covers
    assert sorted([codes[5], codes[8]]) == [201, 409] and codes[6] == 201  # one of two keys pays bob's quote
    assert codes[9:] == [404, 404]
    for n, (client, body, key) in enumerate(calls):
        fast, full = got[n], _post(client, body, FULL, key)
        if fast.status_code in (200, 201):  # the full path replays the very order
            assert full.status_code == 200 and full.json() == fast.json(), (n, full.text)
        else:
            assert full.status_code == fast.status_code, (n, fast.text, full.text)
            assert full.json()["error"]["code"] == fast.json()["error"]["code"]
    b0 = [got[n] for n in (4, 7) if got[n].status_code in (200, 201)]
    assert sorted(r.status_code for r in b0) == [200, 201] and b0[0].json() == b0[1].json()
    rep = tx.run(ledger.check)
    assert rep["ok"], rep["differences"]
    legs = tx.run(lambda s: ledger.charge_legs(s, leg="buyer"))
    assert len(legs) == len({t.charge_id for t in legs}) == 2 + 3  # each paid order charged once
    for who in ("alice", "bob"):
        assert tx.run(lambda s, who=who: ledger.balance(s, ledger.BUYER, mkt.accounts[who].id, "CNY")).available == 0
