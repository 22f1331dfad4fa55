"""The metered stream's state machine against the real ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ciyuan.db import tx
from ciyuan.delivery import encoding, metering, plan, stream, usage
from ciyuan.errors import CiyuanError, Conflict, InvalidInput
from ciyuan.ledger import audit, ledger
from ciyuan.ledger.ledger import InsufficientFunds
from ciyuan.market import orders, quotes


def drain(buyer: str, ent: str, max_tokens: int, *, parts: int = 1, part: int = 0, now=None) -> list[str]:
    ids, cursor = [], None
    while True:
        d = stream.next_batch(buyer, ent, cursor, parts=parts, part=part, max_tokens=max_tokens, now=now)
        if d.kind == "done":
            return ids
        assert d.kind == "new"
        # the server's digest (from leaves cached with the row groups) is what a buyer recomputes
        assert d.sha256 == metering.digest(d.table)
        ids.extend(d.table.column("id").to_pylist())
        cursor = d.next_cursor


def meter(ent: str) -> dict:
    return tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))


@pytest.mark.parametrize("max_tokens", [1, 4000, 10**7])
def test_every_record_once_and_total_equals_price_of_total(db_home, h, max_tokens: int) -> None:
    env = h.make_market(price="1234.567891")
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    ids = drain(env.buyer, ent, max_tokens)
    assert ids == [f"r{i:05d}" for i in range(h.N_RECORDS)]
    m = meter(ent)
    assert m["tokens_posted"] == e["quote"]["tokens"] and m["tokens_held"] == 0
    assert m["amount_posted"] == e["quote"]["amount"]  # exactly, not just within a unit
    bal = tx.run(lambda s: ledger.balance(s, ledger.BUYER, env.buyer, "CNY"))
    assert bal.debits_posted == e["quote"]["amount"] and bal.debits_pending == 0
    check = tx.run(ledger.check)
    assert check["ok"], check["differences"]
    ent_row = tx.run(lambda s: orders.get_entitlement(s, ent, env.buyer))
    assert ent_row.tokens_drawn == ent_row.tokens and ent_row.status == "exhausted"
    assert tx.run(audit.verify)["ok"]


def test_graduated_tiers_split_across_partitions_still_exact(db_home, h) -> None:
    env = h.make_market(
        price="30",
        tiers=[{"from_tokens": 10_000, "price_per_mtok": "20"}, {"from_tokens": 40_000, "price_per_mtok": "7.5"}],
    )
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    seen = []
    for part in (2, 0, 1):  # out of order: the marginal price depends on what is posted, not where
        seen += drain(env.buyer, ent, 3000, parts=3, part=part)
    assert sorted(seen) == [f"r{i:05d}" for i in range(h.N_RECORDS)]
    assert meter(ent)["amount_posted"] == e["quote"]["amount"]


def test_retry_redelivers_under_the_same_hold(db_home, h) -> None:
    env = h.make_market()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    a = stream.next_batch(env.buyer, ent, None, max_tokens=2000)
    b = stream.next_batch(env.buyer, ent, a.cursor, max_tokens=999_999)  # lost response, same cursor
    assert b.kind == "redelivery" and b.batch_id == a.batch_id and b.sha256 == a.sha256
    assert b.table.equals(a.table)
    holds = [t for t in tx.run(lambda s: ledger.transfers(s, ref=f"ent:{ent}")) if t.kind == "pending"]
    assert len(holds) == 1
    # the ack is the next request; re-sending the ack request redelivers the next batch, no new hold
    c = stream.next_batch(env.buyer, ent, a.next_cursor, max_tokens=2000)
    c2 = stream.next_batch(env.buyer, ent, a.next_cursor, max_tokens=2000)
    assert c.kind == "new" and c2.kind == "redelivery" and c2.batch_id == c.batch_id
    assert c.posted["batch_id"] == a.batch_id
    assert len([t for t in tx.run(lambda s: ledger.transfers(s, ref=f"ent:{ent}")) if t.kind == "post"]) == 1


def test_timeout_posts_the_hold_and_resume_replays_free(db_home, h) -> None:
    """Was: the timeout voided the hold and resuming held the batch again. Now the sent batch is charged."""
    env = h.make_market()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    t0 = datetime.now(UTC)
    a = stream.next_batch(env.buyer, ent, None, max_tokens=2000, now=t0)
    later = t0 + timedelta(seconds=10_000)
    assert stream.sweep(now=later) == {"posted": 1, "voided": 0, "entitlements": 1}
    assert tx.run(lambda s: ledger.get_transfer(s, f"dl:{a.batch_id}")).state == "posted"
    m = meter(ent)
    assert m["tokens_held"] == 0 and m["tokens_posted"] == a.tokens
    assert m["streams"][0]["cursor"] == a.cursor  # not acknowledged: resume at its start
    again = stream.next_batch(env.buyer, ent, a.cursor, max_tokens=2000, now=later)
    assert again.kind == "replay" and (again.start, again.end) == (a.start, a.end) and again.sha256 == a.sha256
    assert meter(ent)["tokens_posted"] == a.tokens
    assert tx.run(ledger.check)["ok"]


def test_late_ack_after_timeout_is_charged_once(db_home, h) -> None:
    env = h.make_market()
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    t0 = datetime.now(UTC)
    a = stream.next_batch(env.buyer, ent, None, max_tokens=2000, now=t0)
    later = t0 + timedelta(seconds=10_000)
    b = stream.next_batch(env.buyer, ent, a.next_cursor, max_tokens=2000, now=later)
    assert b.kind == "new" and b.start == a.end  # a was charged at its deadline; the ack changes no money
    posts = [t for t in tx.run(lambda s: ledger.transfers(s, ref=f"ent:{ent}")) if t.kind == "post"]
    assert [t.pending_id for t in posts] == [f"dl:{a.batch_id}"]
    assert meter(ent)["streams"][0]["acked"] == a.end  # acknowledged now
    cursor = b.next_cursor
    while True:
        d = stream.next_batch(env.buyer, ent, cursor, max_tokens=2000, now=later)
        if d.kind == "done":
            break
        cursor = d.next_cursor
    assert meter(ent)["amount_posted"] == e["quote"]["amount"]
    assert tx.run(ledger.check)["ok"]


def test_replay_is_free_and_stale_cursors_are_4xx(db_home, h) -> None:
    env = h.make_market()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    a = stream.next_batch(env.buyer, ent, None, max_tokens=2000)
    b = stream.next_batch(env.buyer, ent, a.next_cursor, max_tokens=2000)
    before = meter(ent)
    r = stream.next_batch(env.buyer, ent, a.cursor, max_tokens=10**6)
    assert r.kind == "replay" and r.table.equals(a.table) and r.next_cursor == a.next_cursor
    assert meter(ent) == before
    with pytest.raises(Conflict) as exc:
        stream.next_batch(env.buyer, ent, f"c1.1.0.{b.end + 1}")
    assert exc.value.status == 409
    with pytest.raises(Conflict):
        stream.next_batch(env.buyer, ent, None, parts=2)  # started with one partition
    with pytest.raises(InvalidInput):
        stream.next_batch(env.buyer, ent, "c1.1.0.99999999")
    with pytest.raises(CiyuanError) as exc:
        stream.next_batch("someone_else", ent, None)
    assert exc.value.status == 404


def test_holds_stop_at_the_balance(db_home, h) -> None:
    env = h.make_market(deposit="10.00")  # the selection costs ~59.56; 10.00 covers a few batches
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    cursor, got = None, 0
    with pytest.raises(InsufficientFunds) as exc:
        while True:
            d = stream.next_batch(env.buyer, ent, cursor, max_tokens=5000)
            got += d.tokens
            cursor = d.next_cursor
    assert exc.value.status == 402
    bal = tx.run(lambda s: ledger.balance(s, ledger.BUYER, env.buyer, "CNY"))
    assert bal.available >= 0 and bal.posted >= 0
    assert tx.run(ledger.check)["ok"]


def test_prepaid_entitlement_streams_without_holds(db_home, h) -> None:
    env = h.make_market()
    q = quotes.create_quote(
        env.buyer, env.listing["id"], {"filter": {"field": "meta.language", "op": "eq", "value": "zh"}}
    )
    order, _ = orders.place_order(env.buyer, q["id"], "paid-1")
    ent = order["entitlement"]["id"]
    ids = drain(env.buyer, ent, 3000)
    assert ids == [f"r{i:05d}" for i in range(0, h.N_RECORDS, 2)]
    assert [t.kind for t in tx.run(lambda s: ledger.transfers(s, ref=f"ent:{ent}"))] == []
    assert meter(ent)["amount_posted"] == 0 and meter(ent)["tokens_posted"] == q["tokens"]


def test_metered_order_is_idempotent(db_home, h) -> None:
    env = h.make_market()
    q = quotes.create_quote(env.buyer, env.listing["id"], None)
    a, ra = usage.place_metered_order(env.buyer, q["id"], "same")
    b, rb = usage.place_metered_order(env.buyer, q["id"], "same")
    assert (ra, rb) == (False, True) and a["id"] == b["id"]
    q2 = quotes.create_quote(env.buyer, env.listing["id"], None)
    with pytest.raises(Conflict):
        usage.place_metered_order(env.buyer, q2["id"], "same")


def test_arrow_bodies_reuse_whole_row_groups_and_decode_to_the_batch(db_home, h) -> None:
    """Bodies assembled from cached row-group messages are the batch exactly, cut anywhere."""
    import pyarrow as pa

    enc = encoding.IpcEncoder(pa.ipc.IpcWriteOptions(compression="zstd"), chunk_rows=8192)
    env = h.make_market()
    for key, selection in (("k1", None), ("k2", None),
                           ("k3", {"filter": {"field": "meta.language", "op": "eq", "value": "zh"}})):
        ent = h.metered_entitlement(env, selection, key=key)["entitlement"]["id"]
        cursor = None
        for max_tokens in (3000, 9000):  # batch edges fall inside row groups and on them
            while (d := stream.next_batch(env.buyer, ent, cursor, max_tokens=max_tokens, encode=enc,
                                            fmt="arrow")).kind != "done":
                assert pa.ipc.open_stream(d.body).read_all().equals(d.table)
                cursor = d.next_cursor
                if max_tokens == 3000 and int(cursor.rsplit(".", 1)[1]) > 60:
                    break
    assert enc._cache  # whole row groups were encoded once and reused
