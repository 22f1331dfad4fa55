"""The ledger keeps its promises on SQLite and PostgreSQL: idempotency, two phases, no overdraft."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from ciyuan import db
from ciyuan.db import tx
from ciyuan.errors import Conflict, InvalidInput
from ciyuan.ledger import ledger
from ciyuan.ledger.ledger import InsufficientFunds
from ciyuan.market import accounts

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
def people(db_home):
    return tx.run(
        lambda s: (accounts.create_account(s, "buyer1", "buyer"), accounts.create_account(s, "prov1", "provider"))
    )


def bal(owner, kind=ledger.BUYER):
    return tx.run(lambda s: ledger.balance(s, kind, owner, "CNY"))


def test_deposit_is_idempotent_and_a_changed_body_conflicts(people):
    buyer, _ = people
    first = tx.run(lambda s: ledger.deposit(s, "dep-1", buyer.id, 5000, "CNY"))
    again = tx.run(lambda s: ledger.deposit(s, "dep-1", buyer.id, 5000, "CNY"))
    assert again == first
    assert bal(buyer.id).posted == 5000
    with pytest.raises(Conflict) as err:
        tx.run(lambda s: ledger.deposit(s, "dep-1", buyer.id, 5001, "CNY"))
    assert err.value.status == 409 and err.value.code == "idempotency_conflict"
    assert bal(buyer.id).posted == 5000


def test_charge_splits_exactly_into_provider_share_and_platform_fee(people):
    buyer, prov = people
    tx.run(lambda s: ledger.deposit(s, "d", buyer.id, 10_000, "CNY"))
    legs = tx.run(lambda s: ledger.charge(s, "c", buyer.id, prov.id, 999, "CNY", fee_bps=1000))
    assert [t.amount for t in legs] == [999, 900, 99]  # fee rounds down; share + fee == charge
    assert bal(buyer.id).available == 10_000 - 999
    assert bal(prov.id, ledger.PROVIDER).posted == 900
    assert tx.run(lambda s: ledger.balance(s, ledger.PLATFORM, None, "CNY")).posted == 99
    assert tx.run(lambda s: ledger.balance(s, ledger.HOLDS, None, "CNY")).posted == 0


def test_holds_count_against_the_balance_and_post_for_less(people):
    buyer, prov = people
    tx.run(lambda s: ledger.deposit(s, "d", buyer.id, 1000, "CNY"))
    tx.run(lambda s: ledger.hold(s, "h1", buyer.id, 700, "CNY", timeout_s=60, now=T0))
    assert bal(buyer.id).available == 300 and bal(buyer.id).posted == 1000
    with pytest.raises(InsufficientFunds) as err:
        tx.run(lambda s: ledger.hold(s, "h2", buyer.id, 301, "CNY", now=T0))
    assert err.value.status == 402 and "after holds" in err.value.message
    legs = tx.run(lambda s: ledger.capture(s, "p1", "h1", prov.id, 500, fee_bps=0, now=T0))
    assert legs[0].kind == "post" and legs[0].amount == 500
    assert bal(buyer.id).available == 500 and bal(buyer.id).debits_pending == 0
    # posting again (another id) is refused, replay of the same post is the same transfer
    with pytest.raises(Conflict):
        tx.run(lambda s: ledger.post_pending(s, "p2", "h1", now=T0))
    assert tx.run(lambda s: ledger.capture(s, "p1", "h1", prov.id, 500, fee_bps=0, now=T0))[0] == legs[0]
    with pytest.raises(InvalidInput):
        tx.run(lambda s: ledger.hold(s, "h3", buyer.id, 100, "CNY", now=T0)) and tx.run(
            lambda s: ledger.post_pending(s, "p3", "h3", 101, now=T0)
        )
    assert tx.run(ledger.check)["ok"]


def test_void_and_expiry_release_the_hold(people):
    buyer, _ = people
    tx.run(lambda s: ledger.deposit(s, "d", buyer.id, 1000, "CNY"))
    tx.run(lambda s: ledger.hold(s, "h1", buyer.id, 400, "CNY", timeout_s=30, now=T0))
    tx.run(lambda s: ledger.hold(s, "h2", buyer.id, 600, "CNY", timeout_s=30, now=T0))
    assert bal(buyer.id).available == 0
    tx.run(lambda s: ledger.void_pending(s, "v1", "h1", now=T0))
    assert bal(buyer.id).available == 400
    later = T0 + timedelta(seconds=31)
    with pytest.raises(Conflict) as err:
        tx.run(lambda s: ledger.post_pending(s, "p2", "h2", now=later))
    assert err.value.code == "pending_expired"
    assert bal(buyer.id).available == 1000
    assert tx.run(lambda s: ledger.get_transfer(s, "h2")).state == "expired"
    rep = tx.run(ledger.check)
    assert rep["ok"], rep


def test_expired_holds_free_the_balance_for_a_new_hold(people):
    buyer, _ = people
    tx.run(lambda s: ledger.deposit(s, "d", buyer.id, 100, "CNY"))
    tx.run(lambda s: ledger.hold(s, "h1", buyer.id, 100, "CNY", timeout_s=10, now=T0))
    tx.run(lambda s: ledger.hold(s, "h2", buyer.id, 100, "CNY", timeout_s=10, now=T0 + timedelta(seconds=11)))
    assert bal(buyer.id).available == 0 and bal(buyer.id).debits_pending == 100


@pytest.mark.parametrize("amount", [0, -5, 1.5, True, 10**16])
def test_bad_amounts_are_refused(people, amount):
    buyer, _ = people
    with pytest.raises(InvalidInput):
        tx.run(lambda s: ledger.deposit(s, "d", buyer.id, amount, "CNY"))


def test_check_finds_a_tampered_balance(people):
    buyer, _ = people
    tx.run(lambda s: ledger.deposit(s, "d", buyer.id, 100, "CNY"))
    with db.session() as s:
        s.execute(
            text("UPDATE ex_ledger_accounts SET credits_posted = credits_posted + 1 WHERE kind = :k"),
            {"k": ledger.BUYER},
        )
    rep = tx.run(ledger.check)
    assert not rep["ok"]
    fields = {(d["account"].split(":")[0], d["field"]) for d in rep["differences"]}
    assert (ledger.BUYER, "credits_posted") in fields and ("*", "posted") in fields


def test_ledger_check_cli_exit_codes(people):
    from typer.testing import CliRunner

    from ciyuan.cli.main import app

    buyer, _ = people
    runner = CliRunner()
    res = runner.invoke(app, ["ledger", "deposit", "buyer1", "12.34", "--id", "cli-1", "--json"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["ledger", "check", "--json"])
    assert res.exit_code == 0 and '"ok": true' in res.output
    with db.session() as s:
        s.execute(text("UPDATE ex_ledger_accounts SET debits_pending = 7 WHERE kind = :k"), {"k": ledger.BUYER})
    res = runner.invoke(app, ["ledger", "check", "--json"])
    assert res.exit_code == 1 and '"debits_pending"' in res.output
