"""Delivered means billed, once: every path a batch can take, against the real ledger (SQLite and PostgreSQL).

A batch is charged when it is acknowledged or when its ack deadline passes unacknowledged (its hold is
posted, never voided: the records were sent); reading an already charged batch again is free; the
server caps a batch by tokens, bytes, the buyer's available funds and the entitlement's tokens.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest

from ciyuan.config import settings
from ciyuan.db import tx
from ciyuan.delivery import metering, plan, receipts, rowcache, stream, usage
from ciyuan.ledger import audit, ledger
from ciyuan.ledger.ledger import InsufficientFunds
from ciyuan.sdk import Client, TokenStream

LATER = timedelta(seconds=10_000)


def meter(ent: str) -> dict:
    return tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))


def buyer_balance(env) -> ledger.Balance:
    return tx.run(lambda s: ledger.balance(s, ledger.BUYER, env.buyer, "CNY"))


def transfers(ent: str) -> list[ledger.Transfer]:
    return tx.run(lambda s: ledger.transfers(s, ref=f"ent:{ent}"))


def clean(ent: str) -> dict:
    """Ledger and audit chain check out, and the charges are exactly the price of the tokens posted."""
    check = tx.run(ledger.check)
    assert check["ok"], check["differences"]
    assert tx.run(audit.verify)["ok"]
    m = meter(ent)
    assert m["amount_posted"] == plan.plan(ent, None).price(m["tokens_posted"])
    rows = tx.run(lambda s: usage.usage(s, entitlement_id=ent, limit=1000))["items"]
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
    d = stream.next_batch(env.buyer, ent, None, max_tokens=100_000_000, now=t0)
    assert d.kind == "new" and d.end - d.start == h.N_RECORDS  # the test selection fits the server's caps
    rep = stream.sweep(now=t0 + LATER)
    bal = buyer_balance(env)
    assert bal.debits_posted == e["quote"]["amount"] == d.hold_amount > 0 and bal.debits_pending == 0
    hold = tx.run(lambda s: ledger.get_transfer(s, f"dl:{d.batch_id}"))
    assert hold.state == "posted"  # not voided, not expired
    assert rep["posted"] == 1
    m = clean(ent)
    assert m["tokens_posted"] == e["quote"]["tokens"] and m["tokens_held"] == 0
    doc = tx.run(lambda s: receipts.statement(s, plan.plan(ent, None)))
    assert doc["totals"]["amount"] == e["quote"]["amount"]
    # asking again is a free replay of what was paid for: no second charge, and no free second copy either
    again = stream.next_batch(env.buyer, ent, None, max_tokens=100_000_000, now=t0 + LATER)
    assert again.kind == "replay" and again.sha256 == d.sha256
    assert buyer_balance(env).debits_posted == e["quote"]["amount"]
    assert [t.kind for t in transfers(ent)].count("pending") == 1


def test_ack_posts_the_hold_and_moves_the_resume_point(db_home, h) -> None:
    env = h.make_market()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    a = stream.next_batch(env.buyer, ent, None, max_tokens=2000)
    assert meter(ent)["streams"][0]["cursor"] == a.cursor and buyer_balance(env).debits_pending == a.hold_amount
    r = stream.ack(env.buyer, ent, a.next_cursor)
    assert r.kind == "acked" and r.posted["batch_id"] == a.batch_id and r.posted["on"] == "ack"
    assert tx.run(lambda s: ledger.get_transfer(s, f"dl:{a.batch_id}")).state == "posted"
    st = meter(ent)["streams"][0]
    assert st["cursor"] == a.next_cursor and st["acked"] == st["charged"] == a.end
    assert buyer_balance(env).debits_posted == r.posted["amount"] == plan.plan(ent, None).price(a.tokens)
    assert stream.ack(env.buyer, ent, a.next_cursor).posted is None  # acknowledging twice charges once
    clean(ent)


def test_charged_batches_are_redelivered_free(db_home, h) -> None:
    """Charged by ack or by expiry, a batch read again (any cursor up to the charged offset) costs nothing."""
    env = h.make_market()
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    t0 = datetime.now(UTC)
    a = stream.next_batch(env.buyer, ent, None, max_tokens=3000, now=t0)
    b = stream.next_batch(env.buyer, ent, a.next_cursor, max_tokens=3000, now=t0)  # acknowledges a
    assert stream.sweep(now=t0 + LATER)["posted"] == 1  # b: sent, never acknowledged
    paid = meter(ent)
    n_transfers = len(tx.run(lambda s: ledger.transfers(s)))
    assert paid["tokens_posted"] == a.tokens + b.tokens and paid["streams"][0]["cursor"] == b.cursor
    seen, cursor = [], None
    while True:  # from the very start, with another batch size: every record up to the charged offset, free
        d = stream.next_batch(env.buyer, ent, cursor, max_tokens=1000, now=t0 + LATER)
        if d.kind != "replay":
            break
        assert d.sha256 == metering.digest(d.table)
        seen += d.table.column("id").to_pylist()
        cursor = d.next_cursor
    assert d.kind == "new" and d.start == b.end  # the first record not yet charged
    assert seen == a.table.column("id").to_pylist() + b.table.column("id").to_pylist()
    assert meter(ent)["tokens_posted"] == paid["tokens_posted"]  # replays charged nothing
    assert len(tx.run(lambda s: ledger.transfers(s))) == n_transfers + 1  # only d's hold
    st = meter(ent)["streams"][0]
    assert st["unacknowledged_batch"] is None and st["acked"] == b.end  # asking past b acknowledged it
    clean(ent)


def _record_bytes(table) -> list[int]:
    """Bytes of each record as the server's byte cap counts them, computed here from the records."""
    out = []
    for r in table.to_pylist():
        n = 8
        for k in ("id", "modality", "text", "media", "media_ref", "meta"):
            v = r[k]
            n += 0 if v is None else len(v.encode() if isinstance(v, str) else v)
        out.append(n)
    return out


def _caps(monkeypatch, **env: str) -> None:
    from ciyuan import db

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    db.dispose_all()
    settings.cache_clear()


def test_huge_max_tokens_is_capped_by_the_servers_token_and_byte_caps(db_home, h, monkeypatch) -> None:
    env = h.make_market()
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    _caps(monkeypatch, CIYUAN_DELIVERY_MAX_BATCH_TOKENS="3000")
    d = stream.next_batch(env.buyer, ent, None, max_tokens=100_000_000)
    toks = d.table.column("tokens").to_pylist()
    nxt = plan.plan(ent, None).tok[d.end]
    assert d.limit == "tokens" and d.tokens == sum(toks) <= 3000 < d.tokens + nxt
    _caps(monkeypatch, CIYUAN_DELIVERY_MAX_BATCH_TOKENS="100000000", CIYUAN_DELIVERY_MAX_BATCH_BYTES="1500")
    cursor, sent, limits = d.next_cursor, d.tokens, set()
    while (d := stream.next_batch(env.buyer, ent, cursor, max_tokens=100_000_000)).kind != "done":
        sizes = _record_bytes(d.table)
        assert sum(sizes) <= 1500 or len(sizes) == 1
        if d.limit == "bytes":  # the cut is where the next record would pass the cap
            following = rowcache.read_positions(plan.plan(ent, None), d.end, d.end + 1)
            assert sum(sizes) + _record_bytes(following)[0] > 1500
        limits.add(d.limit)
        sent += d.tokens
        cursor = d.next_cursor
    assert limits <= {"bytes", "end"} and "bytes" in limits
    m = clean(ent)
    assert sent == m["tokens_posted"] == e["quote"]["tokens"] and m["amount_posted"] == e["quote"]["amount"]


def test_huge_max_tokens_is_capped_by_the_buyers_funds(db_home, h) -> None:
    env = h.make_market(deposit="10.00")  # the whole selection costs 59.56
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    p = plan.plan(ent, None)
    funds = buyer_balance(env).available
    d = stream.next_batch(env.buyer, ent, None, max_tokens=100_000_000)
    assert d.kind == "new" and d.limit == "funds" and 0 < d.hold_amount <= funds
    assert p.price(d.tokens + int(p.tok[d.end])) > funds  # the largest batch the funds cover
    cursor, sent = d.next_cursor, d.tokens
    with pytest.raises(InsufficientFunds) as exc:
        while True:
            d = stream.next_batch(env.buyer, ent, cursor, max_tokens=100_000_000)
            assert buyer_balance(env).available >= 0  # every hold fitted the funds
            sent += d.tokens
            cursor = d.next_cursor
    assert exc.value.status == 402 and "deposit at least" in exc.value.hint and cursor in exc.value.hint
    # the request that was refused still acknowledged (and charged) the batch before it
    m = clean(ent)
    assert m["tokens_posted"] == sent and m["tokens_held"] == 0
    bal = buyer_balance(env)
    assert bal.debits_posted == m["amount_posted"] == p.price(sent) <= funds and bal.available >= 0
    tx.run(lambda s: ledger.deposit(s, "dep-2", env.buyer, 10_000_00, "CNY"))
    while (d := stream.next_batch(env.buyer, ent, cursor, max_tokens=100_000_000)).kind != "done":
        cursor = d.next_cursor
    m = clean(ent)
    assert m["tokens_posted"] == e["quote"]["tokens"] and m["amount_posted"] == e["quote"]["amount"]


# -- through a real server: the request, and consumers that crash ----------------------------


def _wait(fn, what: str, tries: int = 600):
    """Poll ``fn`` until it returns something truthy (the server's sweeper works in the background)."""
    for _ in range(tries):
        got = fn()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def _hold_state(batch_id: str) -> str:
    return tx.run(lambda s: ledger.get_transfer(s, f"dl:{batch_id}")).state


@pytest.mark.slow
def test_http_request_for_everything_never_acknowledged_is_charged(db_home, h, server_factory) -> None:
    """The issue's reproduction over HTTP: one GET with max_tokens=100000000 and no ack."""
    import httpx

    env = h.make_market()
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    srv = server_factory(CIYUAN_HOLD_TIMEOUT_S="1").start()
    auth = {"Authorization": f"Bearer {env.key}"}
    r = httpx.get(f"{srv.url}/v1/entitlements/{ent}/records", params={"max_tokens": 100_000_000}, headers=auth)
    assert r.status_code == 200 and len(r.content.splitlines()) == h.N_RECORDS
    batch = r.headers["Ciyuan-Batch-Id"]
    assert _wait(lambda: _hold_state(batch) != "pending", "the sweeper") and _hold_state(batch) == "posted"
    assert buyer_balance(env).debits_posted == e["quote"]["amount"] == int(r.headers["Ciyuan-Hold-Amount"])
    doc = json.loads(httpx.get(f"{srv.url}/v1/entitlements/{ent}/receipt", headers=auth).content)
    assert doc["receipt"]["totals"]["amount"] == e["quote"]["amount"]
    again = httpx.get(f"{srv.url}/v1/entitlements/{ent}/records", params={"max_tokens": 100_000_000}, headers=auth)
    assert again.headers["Ciyuan-Batch-Kind"] == "replay"  # the same request again: free, nothing new held
    assert buyer_balance(env).debits_posted == e["quote"]["amount"] and buyer_balance(env).debits_pending == 0
    clean(ent)


READ_AHEAD_CONSUMER = """
import sys
from ciyuan.sdk import Client
url, key, ent, out = sys.argv[1:5]
c = Client(url, key)
with open(out, "a") as fh:
    for k, b in enumerate(c.batches(ent, None, max_tokens=3000)):  # read-ahead on (the default)
        fh.write("".join(i + "\\n" for i in b.table.column("id").to_pylist()))
        fh.flush()
        if k == 2:  # took three batches; the consumer now hangs until it is killed
            print("TOOK", b.next_cursor, flush=True)
            sys.stdin.read()
"""


@pytest.mark.slow
def test_read_ahead_consumer_killed_resumes_from_meter_every_record_once(db_home, h, server_factory,
                                                                         tmp_path) -> None:
    """The SDK's read-ahead never acknowledges a batch the consumer did not take; after a SIGKILL the
    consumer resumes from /meter's cursor: every record seen exactly once, billed exactly once."""
    env = h.make_market()
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    srv = server_factory(CIYUAN_HOLD_TIMEOUT_S="2").start()
    c = Client(srv.url, env.key)
    seen_file = tmp_path / "seen.txt"
    child = subprocess.Popen([sys.executable, "-c", READ_AHEAD_CONSUMER, srv.url, env.key, ent, str(seen_file)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        took = child.stdout.readline().split()
        assert took and took[0] == "TOOK", took
        taken_end = int(took[1].rsplit(".", 1)[1])
        # the read-ahead asked for the fourth batch (acknowledging the third, which was taken) ...
        _wait(lambda: (st := c.meter(ent)["streams"][0])["charged"] >= taken_end and st["open_batch"],
              "the read-ahead request")
        time.sleep(1.0)  # ... and must ask for nothing more: the fourth batch was never taken
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    st = c.meter(ent)["streams"][0]
    assert st["charged"] == taken_end, "a batch the consumer never took was acknowledged"
    fourth = st["open_batch"]
    assert _wait(lambda: _hold_state(fourth) != "pending", "the sweeper") and _hold_state(fourth) == "posted"
    st = c.meter(ent)["streams"][0]  # received by the dead consumer, so charged; but not acknowledged
    assert st["unacknowledged_batch"] == fourth and st["cursor"] == took[1] and st["charged"] > taken_end
    seen = seen_file.read_text().split()
    for b in c.batches(ent, st["cursor"], max_tokens=3000):
        seen += b.table.column("id").to_pylist()
    assert seen == [f"r{i:05d}" for i in range(h.N_RECORDS)]  # in order, none twice, none missing
    m = clean(ent)
    assert m["tokens_posted"] == e["quote"]["tokens"] and m["amount_posted"] == e["quote"]["amount"]
    assert m["streams"][0]["done"] and m["streams"][0]["unacknowledged_batch"] is None


TOKEN_STREAM_CONSUMER = """
import json, os, signal, sys
from ciyuan.sdk import Client, TokenStream
url, key, ent, out, state_path = sys.argv[1:6]
ds = TokenStream(Client(url, key), ent, max_tokens=3000)
with open(out, "a") as fh:
    for n, rec in enumerate(ds, 1):
        fh.write(rec["id"] + "\\n")
        fh.flush()
        with open(state_path + ".tmp", "w") as st:  # the training loop's checkpoint, after every record
            json.dump(ds.state_dict(), st)
        os.replace(state_path + ".tmp", state_path)
        if n == 50:  # in the middle of a batch
            os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow
def test_token_stream_killed_mid_batch_resumes_exactly_and_meter_never_points_past(db_home, h, server_factory,
                                                                                  tmp_path) -> None:
    env = h.make_market()
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    srv = server_factory(CIYUAN_HOLD_TIMEOUT_S="2").start()
    seen_file, state_file = tmp_path / "seen.txt", tmp_path / "state.json"
    child = subprocess.run([sys.executable, "-c", TOKEN_STREAM_CONSUMER, srv.url, env.key, ent, str(seen_file),
                            str(state_file)], timeout=300)
    assert child.returncode == -signal.SIGKILL
    seen = seen_file.read_text().split()
    assert len(seen) == 50
    c = Client(srv.url, env.key)
    st = c.meter(ent)["streams"][0]
    assert st["acked"] <= 50  # /meter's resume point is never past a record the loop did not get
    batch = st["open_batch"]
    assert _wait(lambda: _hold_state(batch) != "pending", "the sweeper") and _hold_state(batch) == "posted"
    resume = c.meter(ent)["streams"][0]
    assert resume["unacknowledged_batch"] == batch and resume["acked"] <= 50 <= resume["charged"]
    ds = TokenStream(c, ent, max_tokens=3000)
    ds.load_state_dict(json.loads(state_file.read_text()))
    seen += [r["id"] for r in ds]
    assert seen == [f"r{i:05d}" for i in range(h.N_RECORDS)]
    m = clean(ent)
    assert m["tokens_posted"] == e["quote"]["tokens"] and m["amount_posted"] == e["quote"]["amount"]


def test_cli_sweep_charges_batches_past_their_deadline(db_home, h) -> None:
    from typer.testing import CliRunner

    from ciyuan.cli.main import app

    env = h.make_market()
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    a = stream.next_batch(env.buyer, ent, None, max_tokens=2000, now=datetime.now(UTC) - LATER)
    res = CliRunner().invoke(app, ["delivery", "sweep", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"posted": 1, "voided": 0, "entitlements": 1}
    assert _hold_state(a.batch_id) == "posted" and meter(ent)["tokens_posted"] == a.tokens
    clean(ent)


def _lapse(batch_id: str, at: datetime) -> None:
    """Give a batch's ledger hold the short timeout holds had before this rule (it lapses at ``at``)."""
    from sqlalchemy import update

    from ciyuan.ledger.tables import TransferRow

    tx.run(lambda s: s.execute(update(TransferRow).where(TransferRow.id == f"dl:{batch_id}").values(expires_at=at)))


def test_a_hold_from_before_the_rule_that_lapsed_is_held_and_posted_afresh(db_home, h) -> None:
    env = h.make_market()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    t0 = datetime.now(UTC)
    a = stream.next_batch(env.buyer, ent, None, max_tokens=2000, now=t0)
    _lapse(a.batch_id, t0 + timedelta(seconds=300))
    assert stream.sweep(now=t0 + LATER) == {"posted": 1, "voided": 0, "entitlements": 1}
    assert _hold_state(a.batch_id) == "expired"  # the ledger handed the first hold back ...
    assert _hold_state(f"{a.batch_id}:late") == "posted"  # ... so the batch was held and posted again
    assert buyer_balance(env).debits_posted == meter(ent)["amount_posted"] == a.hold_amount > 0
    assert tx.run(ledger.check)["ok"]


def test_a_lapsed_old_hold_the_funds_no_longer_cover_is_voided_and_logged(db_home, h) -> None:
    env = h.make_market(deposit="10.00")
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    t0 = datetime.now(UTC)
    a = stream.next_batch(env.buyer, ent, None, max_tokens=2000, now=t0 - timedelta(seconds=60))
    _lapse(a.batch_id, t0 - timedelta(seconds=1))
    assert tx.run(lambda s: ledger.expire_due(s)) == 1  # the ledger hands the money back ...
    # ... and the buyer spends it
    tx.run(lambda s: ledger.charge(s, "spend", env.buyer, env.provider, buyer_balance(env).available, "CNY"))
    assert stream.sweep(now=t0 + LATER) == {"posted": 0, "voided": 1, "entitlements": 1}
    kinds = [x.kind for x in tx.run(lambda s: audit.entries(s, limit=10_000))]
    assert "delivery.unfunded" in kinds
    m = meter(ent)
    assert m["tokens_held"] == 0 and m["tokens_posted"] == 0
    assert tx.run(ledger.check)["ok"]
