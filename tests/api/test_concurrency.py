"""Concurrent orders over a real HTTP server: one order per Idempotency-Key, never below zero."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

from typer.testing import CliRunner

from ciyuan.cli.main import app
from ciyuan.db import tx
from ciyuan.ledger import ledger
from ciyuan.ledger.tables import TransferRow
from ciyuan.market.tables import OrderRow


def _count(model, **where):
    from sqlalchemy import func, select

    def q(s):
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return s.execute(stmt).scalar_one()

    return tx.run(q)


def _ledger_check_cli_clean():
    res = CliRunner().invoke(app, ["ledger", "check", "--json"])
    assert res.exit_code == 0, res.output


def test_fifty_identical_orders_make_one_order_and_one_charge(mkt):
    alice = mkt.accounts["alice"].id
    tx.run(lambda s: ledger.deposit(s, "dep", alice, 100_000, "CNY"))
    c = mkt.client(mkt.keys["alice"], limits=__import__("httpx").Limits(max_connections=60))
    q = c.post(
        "/v1/quotes",
        json={
            "listing_id": mkt.listing["id"],
            "selection": {"filter": {"field": "meta.language", "op": "eq", "value": "zh"}},
        },
    )
    assert q.status_code == 201, q.text
    quote = q.json()
    key = str(uuid.uuid4())

    def go(_):
        r = c.post("/v1/orders", json={"quote_id": quote["id"]}, headers={"Idempotency-Key": key})
        return r.status_code, r.json()

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(go, range(50)))
    statuses = sorted(s for s, _ in results)
    assert statuses.count(201) == 1 and statuses.count(200) == 49, statuses
    assert len({body["id"] for _, body in results}) == 1
    assert _count(OrderRow) == 1
    assert _count(TransferRow, debit_account_id=ledger.account_id(ledger.BUYER, alice, "CNY")) == 1
    bal = tx.run(lambda s: ledger.balance(s, ledger.BUYER, alice, "CNY"))
    assert bal.posted == 100_000 - quote["amount"]
    _ledger_check_cli_clean()


def test_thirty_two_orders_never_overdraw(mkt):
    bob = mkt.accounts["bob"].id
    c = mkt.client(mkt.keys["bob"], limits=__import__("httpx").Limits(max_connections=40))
    quotes = []
    for i in range(32):
        r = c.post("/v1/quotes", json={"listing_id": mkt.listing["id"], "selection": {"token_budget": 4000 + i}})
        assert r.status_code == 201, r.text
        quotes.append(r.json())
    price = quotes[0]["amount"]
    deposit = price * 10 + price // 2  # covers about ten of the thirty-two
    tx.run(lambda s: ledger.deposit(s, "dep", bob, deposit, "CNY"))

    def go(q):
        r = c.post("/v1/orders", json={"quote_id": q["id"]}, headers={"Idempotency-Key": q["id"]})
        return r.status_code, r.json(), q["amount"]

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(go, quotes))
    paid = [amt for status, _, amt in results if status == 201]
    refused = [body for status, body, _ in results if status != 201]
    refused_amounts = [amt for status, _, amt in results if status != 201]
    assert all(b["error"]["code"] == "insufficient_funds" for b in refused), refused[:3]
    assert 0 < len(paid) < 32
    bal = tx.run(lambda s: ledger.balance(s, ledger.BUYER, bob, "CNY"))
    assert bal.posted == deposit - sum(paid) >= 0
    assert bal.available >= 0
    assert deposit - sum(paid) < min(refused_amounts)  # refused only when it truly did not fit
    assert _count(OrderRow) == len(paid)
    _ledger_check_cli_clean()
