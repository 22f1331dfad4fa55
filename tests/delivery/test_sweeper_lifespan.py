"""The app's lifespan runs the delivery sweeper: an unacknowledged batch is charged at its deadline
even when no request ever reaches the stream routes of that app."""

from __future__ import annotations

import threading
import time

from fastapi.testclient import TestClient

from ciyuan.api.app import create_app
from ciyuan.config import settings
from ciyuan.db import tx
from ciyuan.delivery import stream
from ciyuan.ledger import ledger


def _sweepers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "ciyuan-delivery-sweep"]


def test_a_started_app_charges_an_open_batch_at_its_deadline(db_home, h, monkeypatch) -> None:
    monkeypatch.setenv("CIYUAN_HOLD_TIMEOUT_S", "1")
    settings.cache_clear()
    env = h.make_market()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    d = stream.next_batch(env.buyer, ent, None, max_tokens=3000)  # sent, held, never acknowledged
    hold = f"dl:{d.batch_id}"
    assert tx.run(lambda s: ledger.get_transfer(s, hold)).state == "pending"
    before = len(_sweepers())
    app = create_app(settings())
    with TestClient(app) as client:
        assert app.state.sweeper.running and len(_sweepers()) == before + 1
        assert client.get("/v1/health").status_code == 200  # no stream route is called
        for _ in range(200):
            if tx.run(lambda s: ledger.get_transfer(s, hold)).state != "pending":
                break
            time.sleep(0.05)
        assert tx.run(lambda s: ledger.get_transfer(s, hold)).state == "posted"
    assert not app.state.sweeper.running and len(_sweepers()) == before  # shutdown stops it


def test_an_app_that_is_not_started_sweeps_nothing(db_home) -> None:
    app = create_app(settings())
    assert not hasattr(app.state, "sweeper")
