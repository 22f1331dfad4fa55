"""The audit log proves the ledger: every tampering an attacker with write access to the database can do fails.

Each scenario edits the database directly, as an attacker would, and keeps the ledger's account
totals consistent so ``ledger check`` still passes; ``audit verify`` (the function and the CLI,
on SQLite and PostgreSQL) must then fail. Before the fix, verify first logged any transfer missing
from the chain and never looked for chained transfers gone from the ledger, so the forged insert,
the deleted charge, the cut tail and the re-chained log all passed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select, update
from typer.testing import CliRunner

from ciyuan.cli.main import app
from ciyuan.db import tx
from ciyuan.ledger import audit, ledger, signing
from ciyuan.ledger.tables import AuditHeadRow, AuditRow, LedgerAccountRow, TransferRow
from ciyuan.market import orders, quotes

runner = CliRunner()
MILLION_CNY = 100_000_000  # in fen


def cli_verify(*extra: str) -> tuple[int, dict]:
    res = runner.invoke(app, ["audit", "verify", "--json", *extra])
    return res.exit_code, json.loads(res.stdout)


def assert_fails(*checkpoint_files: Path, problem: str) -> dict:
    """Both the function and the CLI refuse the log, naming ``problem``; the ledger's totals still tie."""
    assert tx.run(ledger.check)["ok"], "the attack must keep the ledger's totals consistent"
    given = [cp for f in checkpoint_files for cp in audit.load_checkpoints(f)]
    rep = tx.run(lambda s: audit.verify(s, checkpoints=given))
    assert not rep["ok"]
    assert any(problem in p["problem"] for p in rep["problems"]), rep["problems"]
    args = [a for f in checkpoint_files for a in ("--checkpoint", str(f))]
    code, out = cli_verify(*args)
    assert code == 1 and not out["ok"], out
    assert any(problem in p["problem"] for p in out["problems"])
    return rep


def assert_passes(*checkpoint_files: Path) -> dict:
    given = [cp for f in checkpoint_files for cp in audit.load_checkpoints(f)]
    rep = tx.run(lambda s: audit.verify(s, checkpoints=given))
    assert rep["ok"], rep["problems"]
    code, out = cli_verify(*[a for f in checkpoint_files for a in ("--checkpoint", str(f))])
    assert code == 0 and out["ok"], out
    return rep


def move(sess, account: str, debit: int = 0, credit: int = 0) -> None:
    """Adjust an account's posted totals so the ledger's cache matches the tampered transfers."""
    sess.execute(update(LedgerAccountRow).where(LedgerAccountRow.id == account).values(
        debits_posted=LedgerAccountRow.debits_posted + debit, credits_posted=LedgerAccountRow.credits_posted + credit))


def delete_transfers(sess, rows: list[TransferRow]) -> None:
    for r in rows:
        move(sess, r.debit_account_id, debit=-r.amount)
        move(sess, r.credit_account_id, credit=-r.amount)
    sess.execute(delete(TransferRow).where(TransferRow.id.in_([r.id for r in rows])))


def cut_log_after(sess, seq: int) -> None:
    """Remove every audit entry after ``seq`` and move the head back to it."""
    sess.execute(delete(AuditRow).where(AuditRow.seq > seq))
    h = sess.get(AuditRow, seq).hash if seq else audit.GENESIS
    sess.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1).values(seq=seq, hash=h))


def rechain_from(sess, seq: int) -> None:
    """Recompute every hash from entry ``seq`` on and move the head: the chain is whole again."""
    prev = sess.get(AuditRow, seq - 1).hash if seq > 1 else audit.GENESIS
    last = seq - 1
    for row in sess.execute(select(AuditRow).where(AuditRow.seq >= seq).order_by(AuditRow.seq)).scalars().all():
        row.prev_hash = prev
        row.hash = prev = audit.entry_hash(prev, row.seq, row.at, row.kind, row.ref, row.data)
        last = row.seq
    sess.flush()
    sess.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1).values(seq=last, hash=prev))


def forget_stored_checkpoints(home: Path) -> None:
    """What an attacker who also knows about checkpoints does: delete the database's and the home's."""
    tx.run(lambda s: s.execute(delete(audit.AuditCheckpointRow)))
    (home / audit.CHECKPOINT_FILE).unlink(missing_ok=True)


def head_seq() -> int:
    return tx.run(lambda s: audit.head(s)[0])


@pytest.fixture
def sale(db_home, h, tmp_path):
    """A market with a deposit and a paid order; the buyer keeps the order's receipt (a signed checkpoint)."""
    env = h.make_market()
    before = head_seq()
    q = quotes.create_quote(env.buyer, env.listing["id"], {"token_budget": 20_000})
    order, _ = orders.place_order(env.buyer, q["id"], "paid-1")
    receipt = tmp_path / "receipt.json"
    res = runner.invoke(app, ["receipt", "get", order["entitlement"]["id"], "--out", str(receipt), "--json"])
    assert res.exit_code == 0, res.output
    assert_passes(receipt)
    env.order, env.before_order, env.receipt, env.home = order, before, receipt, db_home
    return env


def test_forged_deposit_inserted_in_the_transfers_table_fails(sale) -> None:
    buyer = ledger.account_id(ledger.BUYER, sale.buyer, "CNY")
    funding = ledger.account_id(ledger.FUNDING, None, "CNY")

    def forge(sess) -> None:
        sess.add(TransferRow(id="forged-1", kind="single", state="posted", debit_account_id=funding,
                             credit_account_id=buyer, amount=MILLION_CNY, currency="CNY", ref=f"deposit:{sale.buyer}",
                             body_hash="0" * 64, created_at=datetime.now(UTC)))
        move(sess, funding, debit=MILLION_CNY)
        move(sess, buyer, credit=MILLION_CNY)

    tx.run(forge)
    entries = tx.run(lambda s: s.execute(select(func.count()).select_from(AuditRow)).scalar_one())
    rep = assert_fails(problem="transfer forged-1 is in the ledger but not in the audit log")
    assert rep["unlogged_transfers"] == 1
    # read-only: verifying again neither logged the forged row nor moved the head, and still fails
    assert tx.run(lambda s: s.execute(select(func.count()).select_from(AuditRow)).scalar_one()) == entries
    assert not tx.run(audit.verify)["ok"]
    # adopt refuses it: it was made after the log began, so the ledger did not write it
    res = runner.invoke(app, ["audit", "adopt", "--json"])
    assert res.exit_code == 1 and json.loads(res.stdout)["refused"] == ["forged-1"]
    assert not tx.run(audit.verify)["ok"]


def test_changed_amount_fails(sale) -> None:
    def inflate(sess) -> None:
        dep = update(TransferRow).where(TransferRow.id == "dep-1")
        sess.execute(dep.values(amount=TransferRow.amount + MILLION_CNY))
        move(sess, ledger.account_id(ledger.FUNDING, None, "CNY"), debit=MILLION_CNY)
        move(sess, ledger.account_id(ledger.BUYER, sale.buyer, "CNY"), credit=MILLION_CNY)

    tx.run(inflate)
    assert_fails(problem="transfer dep-1 differs from what the audit log recorded (amount)")


def test_deleted_charge_with_its_provider_and_fee_legs_fails(sale) -> None:
    ref = f"order:{sale.order['id']}"
    rows = tx.run(lambda s: s.execute(select(TransferRow).where(TransferRow.ref == ref)).scalars().all())
    assert sorted(r.id.rpartition(":")[2] for r in rows if ":" in r.id.removeprefix(ref)) == ["fee", "provider"]
    tx.run(lambda s: delete_transfers(s, rows))
    rep = assert_fails(problem="is in the audit log but missing from the ledger (deleted)")
    assert rep["missing_transfers"] == len(rows) == 3


def _cut_the_sale(sale) -> None:
    """Delete the sale's transfers (totals adjusted) and the log's tail from its first entry; move the head back."""
    ref = f"order:{sale.order['id']}"

    def cut(sess) -> None:
        delete_transfers(sess, sess.execute(select(TransferRow).where(TransferRow.ref == ref)).scalars().all())
        cut_log_after(sess, sale.before_order)

    tx.run(cut)


def test_truncated_tail_with_the_head_moved_back_fails(sale) -> None:
    tip = head_seq()
    _cut_the_sale(sale)
    assert head_seq() == sale.before_order < tip
    # the exchange's own signed checkpoint (taken when the receipt was issued) is past the new end
    assert_fails(problem=f"the log ends at entry {sale.before_order} but")
    # an attacker who also deletes the stored checkpoints is caught by the receipt the buyer holds
    forget_stored_checkpoints(sale.home)
    assert_fails(sale.receipt, problem=f"the log ends at entry {sale.before_order} but")


def test_moved_head_then_new_entries_over_the_cut_fails(sale) -> None:
    tip = head_seq()
    _cut_the_sale(sale)
    forget_stored_checkpoints(sale.home)
    for i in range(tip - sale.before_order + 1):  # the exchange carries on: the chain grows past the old tip
        tx.run(lambda s, i=i: ledger.deposit(s, f"dep-later-{i}", sale.buyer, 100, "CNY"))
    assert head_seq() > tip
    assert_passes()  # nothing left inside the database can tell: this is what outside checkpoints are for
    assert_fails(sale.receipt, problem=f"entry {tip} differs from the signed checkpoint")


def _rechain_with_inflated_deposit(sale) -> None:
    """Change the deposit's row and its audit entry, then recompute every hash after it."""

    def attack(sess) -> None:
        entry = sess.execute(select(AuditRow).where(AuditRow.ref == "transfer:dep-1")).scalar_one()
        data = json.loads(entry.data)
        data["amount"] += MILLION_CNY
        entry.data = audit._canon(data)
        sess.execute(update(TransferRow).where(TransferRow.id == "dep-1").values(amount=data["amount"]))
        move(sess, ledger.account_id(ledger.FUNDING, None, "CNY"), debit=MILLION_CNY)
        move(sess, ledger.account_id(ledger.BUYER, sale.buyer, "CNY"), credit=MILLION_CNY)
        sess.flush()
        rechain_from(sess, entry.seq)

    tx.run(attack)


def test_rechained_log_fails_against_stored_and_outside_checkpoints(sale) -> None:
    tip = head_seq()
    _rechain_with_inflated_deposit(sale)
    assert_fails(problem=f"entry {tip} differs from the signed checkpoint")
    # an attacker with the database only (not the home) deletes the table's checkpoints: the home's file stays
    tx.run(lambda s: s.execute(delete(audit.AuditCheckpointRow)))
    assert_fails(problem=f"{audit.CHECKPOINT_FILE}:1")
    # an attacker with the home too: only checkpoints held outside can tell, and they do
    forget_stored_checkpoints(sale.home)
    assert_passes()
    assert_fails(sale.receipt, problem=f"entry {tip} differs from the signed checkpoint")


def test_a_stored_checkpoint_cannot_be_edited_to_match_a_rewritten_log(sale) -> None:
    tip = head_seq()
    _rechain_with_inflated_deposit(sale)
    new_hash = tx.run(lambda s: audit.head(s)[1])
    (sale.home / audit.CHECKPOINT_FILE).unlink()
    tx.run(lambda s: s.execute(update(audit.AuditCheckpointRow).values(hash=new_hash)))
    assert_fails(problem="is not a signed checkpoint of its seq and hash")
    # nor can one be forged with another key
    forged = signing.sign_doc("checkpoint", {"type": audit.CHECKPOINT_TYPE, "seq": tip, "hash": new_hash, "at": "x"},
                               _other_home_settings(sale.home.parent / "attacker"))
    tx.run(lambda s: s.execute(update(audit.AuditCheckpointRow).values(signed=signing.canonical(forged).decode())))
    assert_fails(problem="not by the exchange's key")


def _other_home_settings(path: Path):
    from ciyuan.config import load_settings

    return load_settings(path)


def test_checkpoint_command_writes_a_file_verify_accepts(sale, tmp_path) -> None:
    out = tmp_path / "cp.json"
    res = runner.invoke(app, ["audit", "checkpoint", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    cp = json.loads(res.stdout)
    assert cp["seq"] == head_seq() and signing.verify_file(out)["ok"]
    rep = assert_passes(out)
    assert rep["checkpoints"]["covers_head"]
    _cut_the_sale(sale)
    forget_stored_checkpoints(sale.home)
    assert_fails(out, problem="entries were removed and the head moved back")


def test_legacy_home_is_adopted_explicitly_not_by_verify(db_home, h) -> None:
    """Transfers that predate the audit log fail verify until the operator adopts them."""
    h.make_market()

    def forget_log(sess) -> None:  # a home from before the ledger logged its transfers
        cut_log_after(sess, 0)

    tx.run(forget_log)
    rep = tx.run(audit.verify)
    assert not rep["ok"] and rep["unlogged_transfers"] == 1
    assert cli_verify()[0] == 1
    res = runner.invoke(app, ["audit", "adopt", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["adopted"] == ["dep-1"] and out["refused"] == []
    kinds = [e.kind for e in tx.run(lambda s: audit.entries(s))]
    assert kinds == ["ledger.transfer", "audit.adopt"]
    assert_passes()
    again = runner.invoke(app, ["audit", "adopt", "--json"])
    assert json.loads(again.stdout)["adopted"] == []


def test_entries_logged_before_hold_timeouts_were_audited_still_verify(db_home, h) -> None:
    """An entry without ``expires_at`` (the earlier form) is compared on the fields it has."""
    h.make_market()

    def old_form(sess) -> None:
        entry = sess.execute(select(AuditRow).where(AuditRow.ref == "transfer:dep-1")).scalar_one()
        data = json.loads(entry.data)
        del data["expires_at"]
        entry.data = audit._canon(data)
        sess.flush()
        rechain_from(sess, entry.seq)

    tx.run(old_form)
    assert_passes()
    tx.run(lambda s: s.execute(update(TransferRow).where(TransferRow.id == "dep-1").values(amount=1)))
    assert not tx.run(audit.verify)["ok"]  # the fields it has are still checked


def test_a_damaged_line_in_the_homes_checkpoint_file_is_a_finding(sale) -> None:
    with (sale.home / audit.CHECKPOINT_FILE).open("a") as f:
        f.write('{"checkpoint": {"seq": 1}, "signature": {}}\n')
    assert_fails(problem=f"{audit.CHECKPOINT_FILE}:2 is not a signed checkpoint")
