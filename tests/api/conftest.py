"""A real uvicorn server on a loopback port (in a thread) over the ``db_home`` database, with a
small market: operator, provider, two buyers with keys, and one published listing."""

from __future__ import annotations

import random
import socket
import threading
import time
from types import SimpleNamespace

import httpx
import pytest


def make_version(name: str = "corpus", n: int = 300, seed: int = 7):
    from ciyuan.store import VersionBuilder

    rng = random.Random(seed)
    b = VersionBuilder(name, made_by={"tool": "tests"})
    for i in range(n):
        b.add(
            {
                "id": f"r{i:06d}",
                "text": f"record {i} " * (1 + i % 5),
                "meta": {
                    "language": ["zh", "en", "ja"][i % 3],
                    "domain": rng.choice(["law", "medicine"]),
                    "score": round(rng.random(), 3),
                },
                "tokens": {"cl100k_base": 10 + (i * 37) % 200},
            }
        )
    return b.commit()


class LiveServer:
    """uvicorn serving ``create_app()`` until stopped; requests go over real TCP."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="off", limit_concurrency=200)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        for _ in range(500):  # wait for startup, not a timing assertion
            if self.server.started:
                return self
            time.sleep(0.01)
        raise RuntimeError("uvicorn did not start")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


@pytest.fixture
def live(db_home):
    from ciyuan.api.app import create_app

    with LiveServer(create_app()) as srv:
        yield srv


@pytest.fixture
def mkt(live):
    """Accounts, keys (as secrets) and a listing; ``client(key)`` gives an httpx client with that key."""
    from ciyuan.db import tx
    from ciyuan.market import accounts, listings

    def setup(s):
        accs = {
            n: accounts.create_account(s, n, r)
            for n, r in [("op", "operator"), ("prov", "provider"), ("alice", "buyer"), ("bob", "buyer")]
        }
        keys = {n: accounts.create_key(s, n)[1] for n in accs}
        return accs, keys

    accs, keys = tx.run(setup)
    version = make_version()
    listing = listings.publish(version.ref, provider="prov", price_per_mtok="12.00", sample=3, license="CC-BY-4.0")
    clients: list[httpx.Client] = []

    def client(key: str | None = None, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        c = httpx.Client(base_url=live.url, headers=headers, timeout=120, **kw)
        clients.append(c)
        return c

    yield SimpleNamespace(url=live.url, accounts=accs, keys=keys, listing=listing, version=version, client=client)
    for c in clients:
        c.close()
