"""Fixtures of the exchange tests: a small real version, accounts and a published listing."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

LANGS = ["zh", "en", "ja"]
DOMAINS = ["law", "medicine", "finance"]


def make_version(name: str = "corpus", n: int = 300, seed: int = 7):
    """A real version made by the store's builder, with known per-record token counts."""
    from ciyuan.store import VersionBuilder

    rng = random.Random(seed)
    b = VersionBuilder(name, made_by={"tool": "tests"})
    for i in range(n):
        b.add(
            {
                "id": f"r{i:06d}",
                "text": f"record {i} " * (1 + i % 5),
                "meta": {"language": LANGS[i % 3], "domain": rng.choice(DOMAINS), "score": round(rng.random(), 3)},
                "tokens": {"cl100k_base": 10 + (i * 37) % 200},
            }
        )
    return b.commit()


@pytest.fixture
def market_env(db_home):
    """Operator, provider, two buyers and one listing at 12.00 CNY per million tokens."""
    from ciyuan.db import tx
    from ciyuan.market import accounts, listings

    def setup(s):
        return {
            name: accounts.create_account(s, name, role)
            for name, role in [("op", "operator"), ("prov", "provider"), ("alice", "buyer"), ("bob", "buyer")]
        }

    accs = tx.run(setup)
    version = make_version()
    listing = listings.publish(version.ref, provider="prov", price_per_mtok="12.00", sample=3, license="CC-BY-4.0")
    return SimpleNamespace(home=db_home, accounts=accs, version=version, listing=listing)
