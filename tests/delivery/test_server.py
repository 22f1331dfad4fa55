"""Delivery through a real uvicorn server on loopback: concurrency, a SIGKILL crash, DataLoader workers."""

from __future__ import annotations

import threading
import time

import pytest

from ciyuan.db import tx
from ciyuan.delivery import plan, stream, usage
from ciyuan.delivery.metering import Cursor
from ciyuan.ledger import audit, ledger
from ciyuan.sdk import ApiError, Client, TokenStream


def usage_positions(ent: str) -> list[tuple[int, int, int]]:
    rows = tx.run(lambda s: usage.usage(s, entitlement_id=ent, limit=1000))["items"]
    return sorted((u["part"], u["start"], u["end"]) for u in rows)


def assert_billed_once(ent: str, quote: dict | None = None) -> dict:
    """Posted batches tile each partition without overlap; money ties; ledger and audit are clean."""
    m = tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))
    pos = usage_positions(ent)
    for (p1, _s1, e1), (p2, s2, _e2) in zip(pos, pos[1:], strict=False):
        assert p1 != p2 or e1 == s2  # contiguous, never overlapping
    p = plan.plan(ent, None)
    assert m["tokens_posted"] + m["tokens_held"] <= p.tokens
    assert m["amount_posted"] == p.price(m["tokens_posted"])
    if quote is not None:
        assert m["tokens_posted"] == quote["tokens"] and m["amount_posted"] == quote["amount"]
    check = tx.run(ledger.check)
    assert check["ok"], check["differences"]
    assert tx.run(audit.verify)["ok"]
    return m


@pytest.mark.slow
def test_32_concurrent_clients_never_exceed_entitlement_or_balance(db_home, h, server_factory) -> None:
    env = h.make_market(deposit="40.00")  # covers about two thirds of the selection's 59.56
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    srv = server_factory().start()
    parts = 16
    errors: list[BaseException] = []
    outcomes: list[str] = []

    def client(i: int) -> None:
        part = i % parts  # two clients race on every partition
        c = Client(srv.url, env.key)
        cursor = str(Cursor(parts, part, 0))
        try:
            for _ in range(200):
                try:
                    b = c.fetch(ent, cursor, max_tokens=700, parts=parts, part=part)
                except ApiError as exc:
                    if exc.code == "cursor_stale":  # the other client moved on: continue from the stream's state
                        st = next(s for s in c.meter(ent)["streams"] if s["part"] == part)
                        cursor = st["cursor"]
                        continue
                    if exc.status == 402:
                        outcomes.append("402")
                        return
                    raise
                if b.done:
                    outcomes.append("done")
                    return
                cursor = b.next_cursor
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert "402" in outcomes  # the balance ran out before the entitlement did
    m = assert_billed_once(ent)
    bal = tx.run(lambda s: ledger.balance(s, ledger.BUYER, env.buyer, "CNY"))
    assert bal.posted >= 0 and bal.available >= 0
    assert bal.debits_posted == m["amount_posted"]


@pytest.mark.slow
def test_sigkill_mid_stream_then_resume_bills_every_record_once(db_home, h, server_factory) -> None:
    env = h.make_market()
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    srv = server_factory(CIYUAN_HOLD_TIMEOUT_S="3").start()
    c = Client(srv.url, env.key, retries=12)
    seen: list[str] = []
    cursor = str(Cursor(2, 0, 0))
    for _ in range(3):  # three batches received; the third is open (held, not acknowledged)
        b = c.fetch(ent, cursor, max_tokens=3000, parts=2, part=0)
        seen += b.table.column("id").to_pylist()
        cursor = b.next_cursor
    # a second consumer takes one batch of partition 1 and vanishes: its hold must not stay open
    lost = c.fetch(ent, None, max_tokens=3000, parts=2, part=1)
    srv.kill()
    assert tx.run(lambda s: ledger.get_transfer(s, f"dl:{lost.batch_id}")).state == "pending"
    restart = threading.Timer(1.0, srv.start)  # same port: the client's retries ride over the outage
    restart.start()
    for b in c.batches(ent, cursor, max_tokens=3000, parts=2, part=0):
        seen += b.table.column("id").to_pylist()
    restart.join()
    # the vanished batch's hold is posted at its deadline (the restarted server's sweeper): it was
    # sent, so it is charged; only then does the consumer of partition 1 come back, and re-reads it free
    for _ in range(300):
        lost_state = tx.run(lambda s: ledger.get_transfer(s, f"dl:{lost.batch_id}")).state
        if lost_state != "pending":
            break
        time.sleep(0.05)
    assert lost_state == "posted"
    for b in c.batches(ent, lost.cursor, max_tokens=3000, parts=2, part=1):
        seen += b.table.column("id").to_pylist()
    assert sorted(seen) == [f"r{i:05d}" for i in range(h.N_RECORDS)] and len(seen) == len(set(seen))
    assert_billed_once(ent, e["quote"])
    c2 = Client(srv.url, env.key)
    c2.fetch(ent, None, max_tokens=3000, parts=2, part=1)  # re-reading part 1's start is a free replay
    for _ in range(200):
        open_holds = [t for t in tx.run(lambda s: ledger.transfers(s, ref=f"ent:{ent}"))
                      if t.kind == "pending" and t.state == "pending"]
        if not open_holds:
            break
        time.sleep(0.1)
    assert not open_holds


def _collate(items: list[dict]) -> list[dict]:
    return items


@pytest.mark.slow
def test_token_stream_with_two_dataloader_workers_resumes_exactly(home, h, server_factory) -> None:
    import torch  # installed by the test extras (torch==2.13.0, CPU)
    from torch.utils.data import DataLoader

    env = h.make_market()
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    srv = server_factory().start()

    def loader(ds: TokenStream) -> DataLoader:
        return DataLoader(ds, batch_size=7, num_workers=2, collate_fn=_collate, prefetch_factor=2)

    ds = TokenStream(Client(srv.url, env.key), ent, max_tokens=1500, num_workers=2)
    assert isinstance(ds, torch.utils.data.IterableDataset)
    seen: list[str] = []
    for k, batch in enumerate(ds.track(loader(ds))):
        seen += [r["id"] for r in batch]
        if k == 4:  # stop after 5 batches, as a preempted job would
            break
    state = ds.state_dict()
    assert state["parts"] == 2
    ds2 = TokenStream(Client(srv.url, env.key), ent, max_tokens=1500, num_workers=2)
    ds2.load_state_dict(state)
    for batch in ds2.track(loader(ds2)):
        seen += [r["id"] for r in batch]
    assert len(seen) == len(set(seen)), "a record was seen twice"
    assert sorted(seen) == [f"r{i:05d}" for i in range(h.N_RECORDS)]
    assert_billed_once(ent, e["quote"])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:This DataLoader will create 3 worker processes")  # more workers than cores
def test_token_stream_resumes_on_another_worker_count(home, h, server_factory) -> None:
    """Saved with 2 workers, resumed with 3, then in the main process: every record once, billed once."""
    from torch.utils.data import DataLoader

    env = h.make_market()
    e = h.metered_entitlement(env)
    ent = e["entitlement"]["id"]
    srv = server_factory().start()

    def run(state: dict | None, workers: int, stop_after: int | None) -> tuple[list[str], dict]:
        ds = TokenStream(Client(srv.url, env.key), ent, max_tokens=1500, num_workers=workers or None)
        if state:
            ds.load_state_dict(state)
        seen: list[str] = []
        if workers:
            loader = DataLoader(ds, batch_size=5, num_workers=workers, collate_fn=_collate, prefetch_factor=2)
            for k, batch in enumerate(ds.track(loader)):
                seen += [r["id"] for r in batch]
                if stop_after is not None and k + 1 == stop_after:
                    break
        else:
            seen = [r["id"] for r in ds]
        return seen, ds.state_dict()

    seen, state = run(None, 2, 4)
    assert state["parts"] == 2
    more, state = run(state, 3, 3)  # the third worker has no partition of its own: it yields nothing
    assert state["parts"] == 2  # the count the stream started with is kept
    seen += more
    rest, state = run(state, 0, None)  # one iterator takes both partitions, one after the other
    seen += rest
    assert len(seen) == len(set(seen)), "a record was seen twice"
    assert sorted(seen) == [f"r{i:05d}" for i in range(h.N_RECORDS)]
    assert_billed_once(ent, e["quote"])


def test_http_errors_are_json_4xx(home, h, server_factory) -> None:
    env = h.make_market()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    srv = server_factory().start()
    import httpx

    auth = {"Authorization": f"Bearer {env.key}"}
    for path, params in [
        (f"/v1/entitlements/{ent}/records", {"cursor": "nope"}),
        (f"/v1/entitlements/{ent}/records", {"cursor": "c1.1.0.99999"}),
        (f"/v1/entitlements/{ent}/records", {"max_tokens": "0"}),
        ("/v1/entitlements/ent_missing/records", {}),
        (f"/v1/entitlements/{ent}/records", {"parts": "3", "part": "5"}),
        (f"/v1/packages/{ent}/0", {"exp": "1", "sig": "0" * 64}),
        ("/v1/usage", {"after": "-1"}),
    ]:
        r = httpx.get(srv.url + path, params=params, headers=auth)
        assert 400 <= r.status_code < 500, (path, params, r.status_code, r.text)
        assert "error" in r.json()
    assert httpx.get(srv.url + f"/v1/entitlements/{ent}/records").status_code == 401
    c = Client(srv.url, env.key)
    assert c.balance()["balances"]
    nd = c.fetch(ent, None, max_tokens=2000, fmt="ndjson")
    ar = c.fetch(ent, None, max_tokens=2000, fmt="arrow")  # the same batch again, as Arrow
    assert nd.sha256 == ar.sha256 and nd.batch_id == ar.batch_id
    c.ack(ent, ar.next_cursor)
    assert len(c.all_usage(ent)) == 1
    key = c.receipt_key()
    from ciyuan.ledger import signing

    assert signing.verify_bytes(c.receipt(ent), key["public_key"])["ok"]
