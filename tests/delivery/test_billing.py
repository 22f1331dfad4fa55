"""Delivered means billed, once: every path a batch can take, against the real ledger (SQLite and PostgreSQL).

A batch is charged when it is acknowledged or when its ack deadline passes unacknowledged (its hold is
posted, never voided: the records were sent); reading an already charged batch again is free; the
server caps a batch by tokens, bytes, the buyer's available funds and the entitlement's tokens.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ciyuan.config import settings
from ciyuan.exchange import audit, delivery, ledger, metering, receipts, tx
from ciyuan.exchange.ledger import InsufficientFunds

LATER = timedelta(seconds=10_000)


def meter(ent: str) -> dict:
    return tx.run(lambda s: delivery.meter_state(s, delivery.plan(ent, None)))


def buyer_balance(env) -> ledger.Balance:
    return tx.run(lambda s: ledger.balance(s, ledger.BUYER, env.buyer, "CNY"))


def transfers(ent: str) -> list[ledger.Transfer]:
    return tx.run(lambda s: ledger.transfers(s, ref=f"ent:{ent}"))


def clean(ent: str) -> dict:
    """Ledger and audit chain check out, and the charges are exactly the price of the tokens posted."""
    check = tx.run(ledger.check)
    assert check["ok"], check["differences"]
    tx.run(audit.sync_ledger)
    assert tx.run(audit.verify)["ok"]
    m = meter(ent)
    assert m["amount_posted"] == delivery.plan(ent, None).price(m["tokens_posted"])
    rows = tx.run(lambda s: delivery.usage(s, entitlement_id=ent, limit=1000))["items"]
    pos = sorted((u["part"], u["start"], u["end"]) for u in rows)
    for (p1, _s1, e1), (p2, s2, _e2) in zip(pos, pos[1:], strict=False):
        assert p1 != p2 or e1 == s2, "two charged batches overlap or leave a gap"
    assert sum(u["amount"] for u in rows) == m["amount_posted"]
    return m


def test_huge_unacknowledged_batch_is_charged_when_it_expires(db_home, h) -> None:
    """Issue 10, defect 1: one request for everything, never acknowledged, used to be free (hold voided)."""
    env = h.make_market()
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    t0 = datetime.now(UTC)
    d = delivery.next_batch(env.buyer, ent, None, max_tokens=100_000_000, now=t0)
    assert d.kind == "new" and d.end - d.start == h.N_RECORDS  # the test selection fits the server's caps
    rep = delivery.sweep(now=t0 + LATER)
    bal = buyer_balance(env)
    assert bal.debits_posted == e["quote"]["amount"] == d.hold_amount > 0 and bal.debits_pending == 0
    hold = tx.run(lambda s: ledger.get_transfer(s, f"dl:{d.batch_id}"))
    assert hold.state == "posted"  # not voided, not expired
    assert rep["posted"] == 1
    m = clean(ent)
    assert m["tokens_posted"] == e["quote"]["tokens"] and m["tokens_held"] == 0
    doc = tx.run(lambda s: receipts.statement(s, delivery.plan(ent, None)))
    assert doc["totals"]["amount"] == e["quote"]["amount"]
    # asking again is a free replay of what was paid for: no second charge, and no free second copy either
    again = delivery.next_batch(env.buyer, ent, None, max_tokens=100_000_000, now=t0 + LATER)
    assert again.kind == "replay" and again.sha256 == d.sha256
    assert buyer_balance(env).debits_posted == e["quote"]["amount"]
    assert [t.kind for t in transfers(ent)].count("pending") == 1
