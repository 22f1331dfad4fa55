"""Orders committed together (``place_orders`` in one unit of work, ``submit_order`` from concurrent
callers): each order gets the answer it would get alone, a refused one moves no money, idempotency
keys still return the first answer, and the ledger and its audit chain check out (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

from sqlalchemy import select

from ciyuan.clock import utc_now
from ciyuan.db import tx
from ciyuan.errors import CiyuanError, Conflict, NotFound
from ciyuan.ledger import audit, ledger
from ciyuan.ledger.ledger import InsufficientFunds
from ciyuan.market import accounts, order_group, orders, quotes
from ciyuan.market.accounts import Unauthenticated
from ciyuan.market.orders import OrderRequest
from ciyuan.market.quotes import QuoteExpired
from ciyuan.market.tables import OrderRow

ZH = {"filter": {"field": "meta.language", "op": "eq", "value": "zh"}}


def _buyer(prefix: str) -> str:
    return tx.run(lambda s: accounts.create_account(s, f"{prefix}-{uuid.uuid4().hex[:8]}", "buyer")).id


def _quote(buyer: str, listing: str, *, age_s: int = 0) -> dict:
    return quotes.create_quote(buyer, listing, ZH, now=utc_now() - timedelta(seconds=age_s))


def _code(answer: object) -> str:
    """What an answer says, comparable between buyers: the error's class and code, or ok / replay."""
    if isinstance(answer, CiyuanError):
        return f"{type(answer).__name__}:{answer.code}"
    return "replay" if answer[1] else "ok"


def _clean() -> None:
    check = tx.run(ledger.check)
    assert check["ok"], check["differences"]
    ver = tx.run(audit.verify)
    assert ver["ok"] and ver["unlogged_transfers"] == 0, ver["problems"]
    buyer_legs = tx.run(lambda s: ledger.charge_legs(s, leg="buyer"))
    paid = tx.run(lambda s: s.execute(select(OrderRow.id, OrderRow.amount).where(OrderRow.status == "paid")).all())
    by_charge = {t.charge_id: t.amount for t in buyer_legs}
    assert len(by_charge) == len(buyer_legs)  # one buyer leg per charge
    assert {f"order:{o.id}": o.amount for o in paid} == by_charge  # every paid order charged once, exactly


def _scenario(buyer: str, other: str, listing: str) -> tuple[list[OrderRequest], int]:
    """Nine requests of one buyer that meet every outcome, and the deposit that funds two of them."""
    q1, q2, q3, q5 = (_quote(buyer, listing) for _ in range(4))
    old = _quote(buyer, listing, age_s=3600)  # past its lifetime
    theirs = _quote(other, listing)
    reqs = [
        OrderRequest(buyer, q1["id"], "k1"),  # ok
        OrderRequest(buyer, q1["id"], "k1"),  # the same again in the batch: a replay of the first
        OrderRequest(buyer, q2["id"], "k1"),  # the key again for another quote
        OrderRequest(buyer, q1["id"], "k2"),  # the quote again under another key
        OrderRequest(buyer, q3["id"], "k3"),  # ok: the money covers two orders
        OrderRequest(buyer, "q_missing", "k4"),
        OrderRequest(buyer, theirs["id"], "k5"),  # another buyer's quote
        OrderRequest(buyer, old["id"], "k6"),
        OrderRequest(buyer, q5["id"], "k7"),  # not enough money left for a third
    ]
    assert q1["amount"] == q3["amount"] == q5["amount"]  # the same selection, the same price
    return reqs, 2 * q1["amount"]


def test_each_order_of_a_batch_gets_the_answer_it_would_get_alone(market_env) -> None:
    listing = market_env.listing["id"]
    together, alone = _buyer("together"), _buyer("alone")
    reqs_b, money = _scenario(together, alone, listing)
    reqs_a, _ = _scenario(alone, together, listing)
    for b in (together, alone):
        tx.run(lambda s, b=b: ledger.deposit(s, f"dep-{b}", b, money, "CNY"))
    batch = tx.run(lambda s: orders.place_orders(s, reqs_b, fee_bps=1000))
    one_by_one: list = []
    for r in reqs_a:
        try:
            one_by_one.append(orders.place_order(r.buyer_id, r.quote_id, r.idempotency_key))
        except CiyuanError as exc:
            one_by_one.append(exc)
    want = ["ok", "replay", "Conflict:idempotency_conflict", "Conflict:quote_used", "ok", "NotFound:not_found",
            "NotFound:not_found", "QuoteExpired:quote_expired", "InsufficientFunds:insufficient_funds"]
    assert [_code(a) for a in one_by_one] == want
    assert [_code(a) for a in batch] == want
    assert batch[1][0] == batch[0][0]  # the replay answers with the first order itself
    assert batch[0][0]["id"] in str(batch[3])  # quote_used names the order that paid it
    spent = batch[0][0]["amount"] + batch[4][0]["amount"]
    for b in (together, alone):
        assert tx.run(lambda s, b=b: ledger.balance(s, ledger.BUYER, b, "CNY")).posted == money - spent
    # the accepted ones again, in a later batch: replays with the very same answer, nothing moves
    again = tx.run(lambda s: orders.place_orders(s, [reqs_b[0], reqs_b[4]], fee_bps=1000))
    assert again == [(batch[0][0], True), (batch[4][0], True)]
    assert tx.run(lambda s: ledger.balance(s, ledger.BUYER, together, "CNY")).posted == money - spent
    _clean()


def test_a_revoked_key_refuses_only_its_own_order(market_env) -> None:
    listing = market_env.listing["id"]
    alice, bob = market_env.accounts["alice"].id, market_env.accounts["bob"].id
    ka, kb = (tx.run(lambda s, n=n: accounts.create_key(s, n))[0] for n in (alice, bob))
    qa, qb = _quote(alice, listing), _quote(bob, listing)
    for b, q in ((alice, qa), (bob, qb)):
        tx.run(lambda s, b=b, q=q: ledger.deposit(s, f"dep-{b}", b, q["amount"], "CNY"))
    tx.run(lambda s: accounts.revoke_key(s, ka["id"]))
    out = tx.run(lambda s: orders.place_orders(s, [OrderRequest(alice, qa["id"], "a", key_id=ka["id"]),
                                                  OrderRequest(bob, qb["id"], "b", key_id=kb["id"]),
                                                  OrderRequest(bob, qb["id"], "c", key_id="key_gone")],
                                               fee_bps=1000))
    assert isinstance(out[0], Unauthenticated) and "revoked" in out[0].message
    assert _code(out[1]) == "ok"
    assert isinstance(out[2], Unauthenticated)  # a key that does not exist, though bob's quote is fine
    assert tx.run(lambda s: ledger.balance(s, ledger.BUYER, alice, "CNY")).posted == qa["amount"]
    assert tx.run(lambda s: ledger.balance(s, ledger.BUYER, bob, "CNY")).posted == 0
    _clean()


def test_concurrent_callers_share_units_of_work_and_each_gets_its_own_answer(market_env) -> None:
    listing = market_env.listing["id"]
    buyers = [_buyer(f"c{i}") for i in range(6)]
    qs = {b: [_quote(b, listing) for _ in range(3)] for b in buyers}
    price = qs[buyers[0]][0]["amount"]
    for i, b in enumerate(buyers):  # buyer i can pay for i % 3 + 1 of its 3 quotes
        tx.run(lambda s, b=b, i=i: ledger.deposit(s, f"dep-{b}", b, price * (i % 3 + 1), "CNY"))
    calls = []
    for b in buyers:
        for j, q in enumerate(qs[b]):
            calls.append((b, q["id"], f"k{j}"))
        calls.append((b, qs[b][0]["id"], "k0"))  # a racing replay of its first order
        calls.append((b, qs[b][0]["id"], "other"))  # the same quote under another key: quote_used or the payer
        calls.append((b, "q_missing", "m"))
    answers: dict[int, object] = {}
    start = threading.Barrier(len(calls))

    def call(n: int) -> None:
        b, q, k = calls[n]
        start.wait()
        try:
            answers[n] = order_group.submit_order(b, q, k)
        except CiyuanError as exc:
            answers[n] = exc

    threads = [threading.Thread(target=call, args=(n,)) for n in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, b in enumerate(buyers):
        mine = [(calls[n], answers[n]) for n in range(len(calls)) if calls[n][0] == b]
        by_key: dict[str, list] = {}
        for (_, _q, k), a in mine:
            by_key.setdefault(k, []).append(a)
        assert isinstance(by_key["m"][0], NotFound)
        paid = {a[0]["quote_id"]: a[0] for (_, _, k), a in mine if not isinstance(a, CiyuanError) and not a[1]}
        assert len(paid) == i % 3 + 1  # exactly as many orders as the money covers, each quote once
        refused = [a for k in ("k0", "k1", "k2", "other") for a in by_key[k] if isinstance(a, CiyuanError)]
        assert all(isinstance(a, InsufficientFunds | Conflict) for a in refused), refused
        k0 = [a for a in by_key["k0"] if not isinstance(a, CiyuanError)]
        if k0:  # both calls under k0 answer with the one order, one of them as a replay
            assert {a[0]["id"] for a in k0} == {k0[0][0]["id"]} and sorted(a[1] for a in k0) == [False, True]
        bal = tx.run(lambda s, b=b: ledger.balance(s, ledger.BUYER, b, "CNY"))
        assert bal.available == bal.posted == price * (i % 3 + 1) - price * len(paid) == 0  # none overdrawn
    _clean()


def test_an_order_replayed_through_the_other_path_is_the_same(market_env) -> None:
    alice = market_env.accounts["alice"].id
    q = _quote(alice, market_env.listing["id"])
    tx.run(lambda s: ledger.deposit(s, "dep", alice, q["amount"], "CNY"))
    first, replayed = order_group.submit_order(alice, q["id"], "same")
    assert not replayed
    assert orders.place_order(alice, q["id"], "same") == (first, True)
    assert order_group.submit_order(alice, q["id"], "same") == (first, True)
    try:
        order_group.submit_order(alice, q["id"], "")
        raise AssertionError("an empty key is refused before any database work")
    except CiyuanError as exc:
        assert exc.code == "bad_idempotency_key"
    _clean()


def test_an_expired_quote_in_a_batch_charges_nothing(market_env) -> None:
    alice = market_env.accounts["alice"].id
    old, new = _quote(alice, market_env.listing["id"], age_s=3600), _quote(alice, market_env.listing["id"])
    tx.run(lambda s: ledger.deposit(s, "dep", alice, old["amount"] + new["amount"], "CNY"))
    out = tx.run(lambda s: orders.place_orders(s, [OrderRequest(alice, old["id"], "o"),
                                                  OrderRequest(alice, new["id"], "n")], fee_bps=1000))
    assert isinstance(out[0], QuoteExpired) and _code(out[1]) == "ok"
    assert tx.run(lambda s: ledger.balance(s, ledger.BUYER, alice, "CNY")).posted == old["amount"]
    _clean()
