"""Migration 0007 on a home written the way the ledger wrote it before charges had columns.

Before 0007 the legs of a charge were linked only by id suffixes (``<charge>:provider``,
``<charge>:fee``) and the audit chain was appended under the head's lock. The home built here has
a deposit, a paid charge, a captured stream hold, an expired hold and their chained audit entries
(hashed as the old code hashed them). After the upgrade nothing is lost, the legs are linked by
``charge_id``/``leg``, ``ciyuan ledger check`` and ``ciyuan audit verify`` are clean, and the chain
goes on from the old head.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from typer.testing import CliRunner

from ciyuan.cli.main import app
from ciyuan.config import settings
from ciyuan.db import MIGRATIONS, tx
from ciyuan.ledger import audit, ledger
from ciyuan.ledger.tables import TransferRow, transfer_facts

runner = CliRunner()
T0 = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
FUND, BUYER = "operator_funding:platform:CNY", "buyer_balance:acc_b:CNY"
HOLDS, PROV, PLAT = "holds:platform:CNY", "provider_earnings:acc_p:CNY", "platform_fees:platform:CNY"
# (id, kind, state, debit, credit, amount, pending_id, ref)
OLD_TRANSFERS = [
    ("dep-1", "single", "posted", FUND, BUYER, 10_000, None, "deposit:acc_b"),
    ("order:ord_1", "single", "posted", BUYER, HOLDS, 1_000, None, "order:ord_1"),
    ("order:ord_1:provider", "single", "posted", HOLDS, PROV, 900, None, "order:ord_1"),
    ("order:ord_1:fee", "single", "posted", HOLDS, PLAT, 100, None, "order:ord_1"),
    ("dl:ent_1.0.0", "pending", "posted", BUYER, HOLDS, 500, None, "ent:ent_1"),
    ("dl:ent_1.0.0:post", "post", "posted", BUYER, HOLDS, 400, "dl:ent_1.0.0", "ent:ent_1"),
    ("dl:ent_1.0.0:post:provider", "single", "posted", HOLDS, PROV, 360, None, "ent:ent_1"),
    ("dl:ent_1.0.0:post:fee", "single", "posted", HOLDS, PLAT, 40, None, "ent:ent_1"),
    ("dl:ent_1.0.1", "pending", "expired", BUYER, HOLDS, 300, None, "ent:ent_1"),
]
TOTALS = {  # debits_posted, credits_posted (nothing is pending)
    FUND: (10_000, 0), BUYER: (1_400, 10_000), HOLDS: (1_400, 1_400), PROV: (0, 1_260), PLAT: (0, 140),
}


def _upgrade(eng: sa.Engine, rev: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with eng.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, rev)


def _old_home(eng: sa.Engine) -> None:
    """What the ledger and audit log of revision 0006 left: rows, and entries chained under the head lock."""
    with eng.begin() as c:
        for aid, (dp, cp) in TOTALS.items():
            kind, owner, cur = aid.split(":")
            c.execute(sa.text(
                "INSERT INTO ex_ledger_accounts (id, kind, owner_id, currency, flags, debits_pending, debits_posted, "
                "credits_pending, credits_posted, created_at) VALUES (:id, :k, :o, :c, :f, 0, :dp, 0, :cp, :t)"),
                {"id": aid, "k": kind, "o": None if owner == "platform" else owner, "c": cur,
                 "f": 1 if kind in ("buyer_balance", "holds") else 0, "dp": dp, "cp": cp, "t": T0})
        for i, (tid, kind, state, debit, credit, amount, pending_id, ref) in enumerate(OLD_TRANSFERS):
            at = T0 + timedelta(minutes=i)
            c.execute(sa.text(
                "INSERT INTO ex_transfers (id, kind, state, debit_account_id, credit_account_id, amount, currency, "
                "pending_id, expires_at, ref, body_hash, created_at, resolved_at) VALUES (:id, :kind, :state, :d, "
                ":c, :a, 'CNY', :p, :e, :ref, :bh, :t, :r)"),
                {"id": tid, "kind": kind, "state": state, "d": debit, "c": credit, "a": amount, "p": pending_id,
                 "e": at + timedelta(seconds=300) if kind == "pending" else None, "ref": ref, "bh": "0" * 64,
                 "t": at, "r": at + timedelta(seconds=30) if kind == "pending" else None})
        old = TransferRow.__table__  # the columns revision 0006 had, typed (SQLite hands raw text back otherwise)
        cols = [old.c[n] for n in ("seq", "id", "kind", "debit_account_id", "credit_account_id", "amount", "currency",
                                   "pending_id", "expires_at", "ref", "created_at")]
        rows = c.execute(sa.select(*cols).order_by(old.c.seq)).mappings().all()
        events = [("ledger.transfer", f"transfer:{r['id']}", transfer_facts(dict(r))) for r in rows]
        events.insert(5, ("delivery.batch", "batch:ent_1.0.0", {"batch": "ent_1.0.0", "hold": "dl:ent_1.0.0"}))
        events.append(("ledger.expired", "expired:dl:ent_1.0.1", {"id": "dl:ent_1.0.1", "amount": 300}))
        prev = audit.GENESIS
        for seq, (kind, ref, data) in enumerate(events, 1):
            at, text = (T0 + timedelta(minutes=seq)).isoformat(), audit._canon(data)
            h = audit.entry_hash(prev, seq, at, kind, ref, text)
            c.execute(sa.text("INSERT INTO dl_audit (seq, at, kind, ref, data, prev_hash, hash) VALUES "
                              "(:s, :at, :k, :r, :d, :p, :h)"),
                      {"s": seq, "at": at, "k": kind, "r": ref, "d": text, "p": prev, "h": h})
            prev = h
        c.execute(sa.text("UPDATE dl_audit_head SET seq = :s, hash = :h WHERE id = 1"), {"s": len(events), "h": prev})


def _cli_ok(*args: str) -> dict:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_upgrade_links_charge_legs_and_keeps_every_transfer_and_the_chain(db_home):
    eng = sa.create_engine(settings().database_url)
    try:
        _upgrade(eng, "0006")
        _old_home(eng)
        with eng.begin() as c:
            before = c.execute(sa.text("SELECT id, kind, state, amount FROM ex_transfers ORDER BY seq")).all()
            old_head = c.execute(sa.text("SELECT seq, hash FROM dl_audit_head")).one()
        _upgrade(eng, "head")
        with eng.begin() as c:
            after = c.execute(sa.text("SELECT id, kind, state, amount FROM ex_transfers ORDER BY seq")).all()
            got = c.execute(sa.text("SELECT id, charge_id, leg FROM ex_transfers"))
            legs = {r.id: (r.charge_id, r.leg) for r in got}
            assert tuple(c.execute(sa.text("SELECT seq, hash FROM dl_audit_head")).one()) == tuple(old_head)
    finally:
        eng.dispose()
    assert [tuple(r) for r in after] == [tuple(r) for r in before]  # no transfer lost or changed
    assert legs == {
        "dep-1": (None, None),
        "order:ord_1": ("order:ord_1", "buyer"),
        "order:ord_1:provider": ("order:ord_1", "provider"),
        "order:ord_1:fee": ("order:ord_1", "fee"),
        "dl:ent_1.0.0": (None, None),
        "dl:ent_1.0.0:post": ("dl:ent_1.0.0:post", "buyer"),
        "dl:ent_1.0.0:post:provider": ("dl:ent_1.0.0:post", "provider"),
        "dl:ent_1.0.0:post:fee": ("dl:ent_1.0.0:post", "fee"),
        "dl:ent_1.0.1": (None, None),
    }
    check = _cli_ok("ledger", "check")
    assert check["ok"] and check["transfers"] == len(OLD_TRANSFERS), check["differences"]
    ver = _cli_ok("audit", "verify")
    assert ver["ok"] and ver["transfers"] == len(OLD_TRANSFERS) and ver["head_seq"] == old_head[0], ver["problems"]
    # the upgraded home goes on: a new charge is logged after the old head, and everything still checks out
    legs_new = tx.run(lambda s: ledger.charge(s, "order:ord_2", "acc_b", "acc_p", 2_000, "CNY", fee_bps=1000))
    assert [(t.charge_id, t.leg) for t in legs_new] == [("order:ord_2", "buyer"), ("order:ord_2", "provider"),
                                                         ("order:ord_2", "fee")]
    assert _cli_ok("ledger", "check")["ok"]
    ver = _cli_ok("audit", "verify")
    assert ver["ok"] and ver["transfers"] == len(OLD_TRANSFERS) + 3 and ver["head_seq"] == old_head[0] + 3
    assert tx.run(lambda s: ledger.balance(s, ledger.PROVIDER, "acc_p", "CNY")).posted == 1_260 + 1_800
    assert tx.run(ledger.adopt) == {"adopted": [], "expiries": 0, "refused": []}
