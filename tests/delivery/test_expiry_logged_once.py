"""An expired hold is a ledger event, logged once by the ledger, and never wedges a stream.

Issue 12's steps: a stream batch's hold times out, ``ciyuan ledger expire``, ``ciyuan audit verify``,
then the buyer resumes. Before the fix the expiry was logged by delivery (and again by audit
adoption), not by the ledger that expired it, and the resumed stream ended in ``Conflict`` on
every later request.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from typer.testing import CliRunner

from ciyuan.cli.main import app
from ciyuan.db import tx
from ciyuan.delivery import plan, stream
from ciyuan.ledger import audit, ledger
from ciyuan.ledger.tables import AuditRow

runner = CliRunner()


def _expiry_entries(hold_id: str) -> list[AuditRow]:
    return tx.run(lambda s: s.execute(select(AuditRow).where(AuditRow.kind == "ledger.expired",
                                                             AuditRow.ref == f"expired:{hold_id}")).scalars().all())


def test_lapsed_stream_hold_expired_by_cli_then_resumed(db_home, h, monkeypatch) -> None:
    env = h.make_market()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    t0 = datetime.now(UTC) - timedelta(seconds=60)
    # the batch's ledger hold times out (a hold with its own short timeout, as holds had before)
    monkeypatch.setattr(stream, "LEDGER_HOLD_TIMEOUT_S", 1)
    a = stream.next_batch(env.buyer, ent, None, max_tokens=2000, now=t0)
    monkeypatch.undo()
    assert a.hold_amount > 0
    res = runner.invoke(app, ["ledger", "expire", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"expired": 1}
    assert len(_expiry_entries(f"dl:{a.batch_id}")) == 1  # logged by the ledger, in the expiring transaction
    res = runner.invoke(app, ["audit", "verify", "--json"])
    assert res.exit_code == 0, res.output
    # the buyer resumes: acknowledges the batch it received and asks for the next, twice
    b = stream.next_batch(env.buyer, ent, a.next_cursor, max_tokens=2000)
    assert b.posted is not None and b.posted["batch_id"] == a.batch_id
    c = stream.next_batch(env.buyer, ent, b.next_cursor, max_tokens=2000)
    assert c.start == b.end
    assert len(_expiry_entries(f"dl:{a.batch_id}")) == 1  # never a second time
    check = tx.run(ledger.check)
    assert check["ok"], check["differences"]
    ver = tx.run(audit.verify)
    assert ver["ok"], ver["problems"]
    # what was sent is billed once: the charged amount is the price of the tokens posted
    m = tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))
    bal = tx.run(lambda s: ledger.balance(s, ledger.BUYER, env.buyer, "CNY"))
    assert bal.debits_posted == m["amount_posted"] == plan.plan(ent, None).price(m["tokens_posted"])


def test_expiry_inside_an_order_is_logged_once(db_home, h) -> None:
    """``expire_due`` run by the ledger's own paths (a later hold on the same account) logs each expiry once."""
    env = h.make_market()
    now = datetime.now(UTC)
    tx.run(lambda s: ledger.hold(s, "h1", env.buyer, 500, "CNY", timeout_s=5, now=now - timedelta(seconds=60)))
    tx.run(lambda s: ledger.hold(s, "h2", env.buyer, 500, "CNY", timeout_s=60, now=now))
    assert tx.run(lambda s: ledger.get_transfer(s, "h1")).state == "expired"
    assert len(_expiry_entries("h1")) == 1
    assert tx.run(lambda s: ledger.expire_due(s, now=now + timedelta(seconds=120))) == 1  # h2
    assert len(_expiry_entries("h1")) == 1 and len(_expiry_entries("h2")) == 1
    rep = tx.run(ledger.adopt)
    assert rep["expiries"] == 0  # nothing left for adoption to log
    assert len(_expiry_entries("h1")) == 1
    assert tx.run(audit.verify)["ok"]
