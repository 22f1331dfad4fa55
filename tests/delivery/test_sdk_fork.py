"""One ``Client`` shared across forked DataLoader workers and threads: no response ever crosses.

The README's pattern: a client quotes and orders in the parent (its keep-alive connection is open)
and is then handed to ``TokenStream`` under a DataLoader with two forked workers. Before the fix
both children inherited the parent's httpx pool and wrote to one socket, so a response could be
read by the worker that did not ask for it (records twice, paid records never). Now the httpx
client is rebuilt in each process, and every stream response names the request it answers
(request id, requested cursor, part, parts), which the SDK checks before it hands anything over.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections import Counter

import httpx
import pytest

from ciyuan.db import tx
from ciyuan.delivery import plan, stream
from ciyuan.delivery.metering import Cursor
from ciyuan.ledger import ledger
from ciyuan.sdk import ApiError, Client, TokenStream

RUNS = 10


def _posted(ent: str) -> dict:
    return tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))


def _ids(batch: dict | list) -> list[str]:
    return list(batch["id"]) if isinstance(batch, dict) else [r["id"] for r in batch]


@pytest.mark.slow
def test_one_client_shared_by_forked_dataloader_workers_delivers_each_paid_record_once(home, h,
                                                                                     server_factory) -> None:
    from torch.utils.data import DataLoader

    env = h.make_market()
    srv = server_factory().start()
    c = Client(srv.url, env.key)  # ONE client: quotes, orders and streams, as the README does
    for run in range(RUNS):
        q = c.quote(env.listing["id"])
        ent = c.order(q["id"], metered=True, idempotency_key=f"run-{run}")["entitlement"]["id"]
        assert c.meter(ent)["tokens_posted"] == 0  # the parent's keep-alive connection is open now
        ds = TokenStream(c, ent, max_tokens=600, num_workers=2)
        loader = DataLoader(ds, batch_size=5, num_workers=2, multiprocessing_context="fork")
        seen = [i for batch in loader for i in _ids(batch)]
        dup = [k for k, n in Counter(seen).items() if n > 1]
        assert not dup, f"run {run}: records delivered twice: {dup[:5]}"
        assert sorted(seen) == [f"r{i:05d}" for i in range(h.N_RECORDS)], f"run {run}: paid records missing"
        m = _posted(ent)
        assert m["tokens_posted"] == q["tokens"] and m["amount_posted"] == q["amount"], f"run {run}: {m}"
        assert c.meter(ent)["tokens_posted"] == q["tokens"]  # the parent's client still answers its own requests
    check = tx.run(ledger.check)
    assert check["ok"], check["differences"]


def _child_uses_own_connection(c: Client, inherited_id: int, out: multiprocessing.Queue) -> None:
    out.put((id(c.http) != inherited_id or c.http is None, os.getpid()))


def test_a_forked_child_never_uses_the_parents_http_client(home, h, server_factory) -> None:
    """Deterministic: the parent's pool exists before the fork; the child must build its own."""
    env = h.make_market()
    srv = server_factory().start()
    c = Client(srv.url, env.key)
    c.balance()  # the parent's connection is open and pooled
    parent_http = c.http
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue = ctx.Queue()
    p = ctx.Process(target=_child_uses_own_connection, args=(c, id(parent_http), out))
    p.start()
    own, pid = out.get(timeout=60)
    p.join(60)
    assert pid != os.getpid()
    assert own, "the forked child reused the parent's httpx client (and its socket)"
    assert c.http is parent_http  # the parent keeps its own
    assert c.balance()["account_id"] == env.buyer


def test_threads_share_a_client_without_crossing(home, h, server_factory) -> None:
    env = h.make_market()
    srv = server_factory().start()
    c = Client(srv.url, env.key)
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    got: dict[int, list[str]] = {}
    errors: list[BaseException] = []

    def run(part: int) -> None:
        try:
            got[part] = [r["id"] for r in c.stream(ent, max_tokens=500, parts=4, part=part)]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    seen = [i for k in range(4) for i in got[k]]
    assert sorted(seen) == [f"r{i:05d}" for i in range(h.N_RECORDS)]


class Crossing(httpx.BaseTransport):
    """Network fault injection: the first stream request gets the answer to ANOTHER request.

    ``mode="other-part"`` answers with a real response the server gave for another partition (its
    own request id); ``mode="other-cursor"`` forwards the request with its cursor replaced (same
    request id, so only the echoed cursor tells). Both are real answers of the real server.
    """

    def __init__(self, mode: str, times: int = 1):
        self.inner = httpx.HTTPTransport()
        self.mode, self.left = mode, times
        self.crossed = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if "/records" in request.url.path and self.left > 0:
            self.left -= 1
            self.crossed += 1
            params = dict(request.url.params)
            if self.mode == "other-part":
                other = str(Cursor(2, 1, 0))
                headers = {k: v for k, v in request.headers.items() if k.lower() != "ciyuan-request-id"}
                headers["Ciyuan-Request-Id"] = "someone-else"
                url = request.url.copy_with(params={**params, "cursor": other, "parts": "2", "part": "1"})
            else:
                headers = dict(request.headers)
                url = request.url.copy_with(params={**params, "cursor": str(Cursor(2, 0, 0))})
            resp = self.inner.handle_request(httpx.Request(request.method, url, headers=headers))
            resp.read()
            return resp
        return self.inner.handle_request(request)


@pytest.mark.parametrize("mode", ["other-part", "other-cursor"])
def test_a_crossed_response_is_refused_before_anything_is_handed_over(home, h, server_factory, mode: str) -> None:
    env = h.make_market()
    srv = server_factory().start()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    honest = Client(srv.url, env.key)
    first = honest.fetch(ent, str(Cursor(2, 0, 0)), max_tokens=1000, parts=2, part=0)  # part 0's first batch
    # crossed once: refused, re-asked with the same cursor (a free redelivery), the right batch arrives
    t = Crossing(mode)
    c = Client(srv.url, env.key, transport=t, backoff=0.0)
    b = c.fetch(ent, str(Cursor(2, 0, 0)), max_tokens=1000, parts=2, part=0)
    assert t.crossed == 1
    assert b.cursor == str(Cursor(2, 0, 0)) and b.batch_id == first.batch_id and b.table.equals(first.table)
    # crossed every time: a clear error, and nothing was acknowledged on the client's behalf
    always = Client(srv.url, env.key, transport=Crossing(mode, times=100), retries=2, backoff=0.0)
    with pytest.raises(ApiError) as err:
        always.fetch(ent, first.next_cursor, max_tokens=1000, parts=2, part=0)
    assert err.value.code == "crossed_response" and "another request" in err.value.message
    part0 = [s for s in honest.meter(ent)["streams"] if s["part"] == 0][0]
    assert part0["acked"] == 0  # the refused answers acknowledged nothing of part 0
