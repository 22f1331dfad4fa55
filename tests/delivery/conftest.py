"""Fixtures of the delivery tests: a real multi-shard version, a listing, a buyer with a key and funds.

Everything is the real thing: the store's builder writes Parquet shards, the exchange publishes
and quotes, the ledger takes deposits. ``served`` runs a real uvicorn server on a loopback port
in a child process, so tests can also kill it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

N_RECORDS = 240


def make_version(name: str = "corpus", n: int = N_RECORDS, rows_per_shard: int = 70, batch_rows: int = 16):
    """A version spread over several shards and small row groups, with known token counts."""
    from ciyuan.store import VersionBuilder

    b = VersionBuilder(name, made_by={"tool": "tests"}, rows_per_shard=rows_per_shard, batch_rows=batch_rows)
    for i in range(n):
        b.add(
            {
                "id": f"r{i:05d}",
                "text": f"记录 {i} " + "token " * (i % 13),
                "meta": {"language": ("zh", "en")[i % 2], "score": (i * 7) % 10},
                "tokens": {"cl100k_base": 50 + (i * 37) % 400},
            }
        )
    return b.commit()


def make_market(price: str = "1000.00", deposit: str = "100000.00", tiers: list[dict] | None = None):
    """Provider, buyer (with a key) and a listing; the buyer gets ``deposit`` CNY."""
    from ciyuan.db import tx
    from ciyuan.ledger import ledger
    from ciyuan.ledger.money import parse_amount
    from ciyuan.market import accounts, listings

    def setup(sess):
        accs = {n: accounts.create_account(sess, n, r) for n, r in [("prov", "provider"), ("alice", "buyer")]}
        _, key = accounts.create_key(sess, "alice")
        ledger.deposit(sess, "dep-1", accs["alice"].id, parse_amount(deposit, "CNY"), "CNY")
        return accs, key

    accs, key = tx.run(setup)
    version = make_version()
    listing = listings.publish(version.ref, provider="prov", price_per_mtok=price, tiers=tiers, sample=2)
    return SimpleNamespace(accounts=accs, key=key, version=version, listing=listing,
                           buyer=accs["alice"].id, provider=accs["prov"].id)


def metered_entitlement(env, selection: dict | None = None, key: str = "k1") -> dict:
    from ciyuan.delivery import usage
    from ciyuan.market import quotes

    q = quotes.create_quote(env.buyer, env.listing["id"], selection)
    order, _ = usage.place_metered_order(env.buyer, q["id"], key)
    return {"quote": q, "order": order, "entitlement": order["entitlement"]}


@pytest.fixture
def market_env(db_home: Path):
    return make_market()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``ciyuan``'s app under uvicorn in a child process with this test's environment."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        code = (
            "import uvicorn; from ciyuan.api.app import create_app; "
            f"uvicorn.run(create_app(), host='127.0.0.1', port={self.port}, log_level='warning')"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code], env=self.env)
        import httpx

        for _ in range(600):
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not start")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no flushing; like a power cut for the process."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_factory():
    servers: list[Server] = []

    def make(**extra: str) -> Server:
        env = {**os.environ, **extra}
        srv = Server(env)
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def episode_market(ref: str, schedule: str = "episode-raw") -> SimpleNamespace:
    """An episode version counted under ``schedule`` and listed by a provider; a buyer with a key and
    100,000 CNY (the training-window tests)."""
    from ciyuan.db import tx
    from ciyuan.ledger import ledger
    from ciyuan.ledger.money import parse_amount
    from ciyuan.market import accounts, listings
    from ciyuan.store import resolve
    from ciyuan.store.token_cache import ensure_counts

    v = resolve(ref)
    ensure_counts(v, schedule)

    def setup(sess):
        accs = {n: accounts.create_account(sess, n, r) for n, r in [("prov", "provider"), ("alice", "buyer")]}
        key = accounts.create_key(sess, "alice")[1]
        ledger.deposit(sess, "dep-alice", accs["alice"].id, parse_amount("100000.00", "CNY"), "CNY")
        return accs, key

    accs, key = tx.run(setup)
    listing = listings.publish(v.ref, provider="prov", price_per_mtok="1000.00", schedule=schedule, sample=0)
    return SimpleNamespace(key=key, buyer=accs["alice"].id, listing=listing, version=v)


@pytest.fixture
def h() -> SimpleNamespace:
    """The helpers above, for test modules (importlib mode cannot import conftest)."""
    return SimpleNamespace(N_RECORDS=N_RECORDS, make_market=make_market, metered_entitlement=metered_entitlement,
                           make_version=make_version, metered_tokens=metered_tokens,
                           episode_market=episode_market)


def metered_tokens(env, ent: str) -> int:
    from ciyuan.db import tx
    from ciyuan.delivery import plan, stream

    return tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))["tokens_posted"]
