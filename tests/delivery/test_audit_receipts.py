"""Receipts and statements verify against the exchange's published key by default, and carry audit checkpoints.

Before the fix, ``ciyuan receipt verify`` checked a receipt against the key embedded in it, so a
receipt changed and re-signed with an attacker's own key verified unless ``--key`` was pinned.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from ciyuan import db
from ciyuan.cli.main import app
from ciyuan.config import settings
from ciyuan.db import tx
from ciyuan.ledger import audit, signing
from ciyuan.ledger.tables import AuditHeadRow, AuditRow
from ciyuan.market import orders, quotes
from ciyuan.sdk import Client

runner = CliRunner()


def resign(data: bytes, change) -> tuple[bytes, str]:
    """What a forger does: change the receipt, sign it with their own key, embed that key."""
    doc = json.loads(data)
    change(doc["receipt"])
    key = Ed25519PrivateKey.generate()
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    pub = base64.b64encode(raw).decode()
    sig = key.sign(signing.canonical(doc["receipt"]))
    doc["signature"] = {"alg": "Ed25519", "public_key": pub, "key_id": signing.key_id(raw),
                        "value": base64.b64encode(sig).decode()}
    return signing.to_bytes(doc), pub


def zero_charge(r: dict) -> None:
    r["totals"]["amount"] = 0
    r["order_amount"] = 0


def paid_receipt(h, tmp_path: Path) -> tuple[object, str, Path]:
    env = h.make_market()
    q = quotes.create_quote(env.buyer, env.listing["id"], {"token_budget": 20_000})
    order, _ = orders.place_order(env.buyer, q["id"], "paid-1")
    ent = order["entitlement"]["id"]
    path = tmp_path / "receipt.json"
    res = runner.invoke(app, ["receipt", "get", ent, "--out", str(path), "--json"])
    assert res.exit_code == 0, res.output
    return env, ent, path


def test_receipt_resigned_with_another_key_fails_by_default(home, h, tmp_path) -> None:
    _env, _ent, path = paid_receipt(h, tmp_path)
    res = runner.invoke(app, ["receipt", "verify", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["key_source"] == "home"
    forged, attacker_key = resign(path.read_bytes(), zero_charge)
    bad = tmp_path / "forged.json"
    bad.write_bytes(forged)
    res = runner.invoke(app, ["receipt", "verify", str(bad), "--json"])
    assert res.exit_code == 1
    assert "not by the exchange's key" in json.loads(res.stdout)["problem"]
    assert not signing.verify_file(bad)["ok"] and not signing.verify_bytes(forged)["ok"]
    # pinning still decides: pinned to the forger's key it is their (valid) signature; to the exchange's, not
    assert runner.invoke(app, ["receipt", "verify", str(bad), "--key", attacker_key]).exit_code == 0
    exchange = signing.public_key_info()["key_id"]
    assert runner.invoke(app, ["receipt", "verify", str(bad), "--key", exchange]).exit_code == 1
    assert runner.invoke(app, ["receipt", "verify", str(path), "--key", exchange]).exit_code == 0


def test_receipt_verified_against_the_servers_published_key(home, h, tmp_path, server_factory, monkeypatch) -> None:
    env, ent, _ = paid_receipt(h, tmp_path)
    srv = server_factory().start()
    with Client(srv.url, env.key) as c:
        data = c.receipt(ent)
        assert c.receipt_key()["public_key"] == signing.public_key_info()["public_key"]
    # the buyer's machine: a home of its own, without the exchange's key
    monkeypatch.setenv("CIYUAN_HOME", str(tmp_path / "buyer"))
    db.dispose_all()
    settings.cache_clear()
    good, bad = tmp_path / "r.json", tmp_path / "forged.json"
    good.write_bytes(data)
    bad.write_bytes(resign(data, zero_charge)[0])
    res = runner.invoke(app, ["receipt", "verify", str(good)])
    assert res.exit_code == 2 and "--exchange" in res.output  # nothing to check against: says what to give
    assert not (tmp_path / "buyer" / signing.KEY_FILE).exists()  # and did not make a key of its own
    res = runner.invoke(app, ["receipt", "verify", str(good), "--exchange", srv.url, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["key_source"] == srv.url and out["audit_checkpoint"]["seq"] > 0
    res = runner.invoke(app, ["receipt", "verify", str(bad), "--exchange", srv.url, "--json"])
    assert res.exit_code == 1 and "not by the exchange's key" in json.loads(res.stdout)["problem"]
    assert runner.invoke(app, ["receipt", "verify", str(good), "--exchange", "http://127.0.0.1:9"]).exit_code == 2


def test_receipt_names_the_audit_head_as_a_stored_signed_checkpoint(db_home, h, tmp_path) -> None:
    _env, ent, path = paid_receipt(h, tmp_path)
    r = json.loads(path.read_bytes())["receipt"]
    seq, hsh = tx.run(audit.head)
    assert r["audit_checkpoint"] == {"seq": seq, "hash": hsh} and r["audit_head"] == hsh
    stored = tx.run(lambda s: s.execute(select(audit.AuditCheckpointRow)).scalars().all())
    assert [(x.seq, x.hash) for x in stored] == [(seq, hsh)]
    again = runner.invoke(app, ["receipt", "get", ent, "--out", str(tmp_path / "again.json"), "--json"])
    assert again.exit_code == 0, again.output  # the same head again: kept once, in the table and the file
    assert tx.run(lambda s: s.execute(select(audit.AuditCheckpointRow)).scalars().all())[0].seq == seq
    lines = (db_home / audit.CHECKPOINT_FILE).read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["checkpoint"]["seq"] == seq
    (cp,) = audit.load_checkpoints(path)
    assert (cp.seq, cp.hash) == (seq, hsh)


def test_settlement_statement_is_signed_and_pins_the_log(db_home, h, tmp_path) -> None:
    env, _ent, _ = paid_receipt(h, tmp_path)
    today = datetime.now(UTC).date().isoformat()
    res = runner.invoke(app, ["settle", "--from", today, "--to", today, "--out", str(tmp_path / "st"), "--json"])
    assert res.exit_code == 0, res.output
    file = tmp_path / "st" / f"{env.provider}.json"
    doc = json.loads(file.read_bytes())
    assert set(doc) == {"statement", "signature"}
    assert doc["statement"]["audit_checkpoint"] == dict(zip(("seq", "hash"), tx.run(audit.head), strict=True))
    res = runner.invoke(app, ["receipt", "verify", str(file), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["kind"] == "statement", res.output
    # a provider's statement catches a log rewritten before its checkpoint, even with every stored checkpoint gone
    tip = tx.run(audit.head)[0]

    def rewrite(sess) -> None:
        row = sess.get(AuditRow, tip)
        row.at = "2000-01-01T00:00:00+00:00"
        row.hash = audit.entry_hash(row.prev_hash, row.seq, row.at, row.kind, row.ref, row.data)
        sess.execute(update(AuditHeadRow).where(AuditHeadRow.id == 1).values(hash=row.hash))
        sess.execute(delete(audit.AuditCheckpointRow))

    tx.run(rewrite)
    (db_home / audit.CHECKPOINT_FILE).unlink()
    assert tx.run(audit.verify)["ok"]
    res = runner.invoke(app, ["audit", "verify", "--checkpoint", str(file), "--json"])
    assert res.exit_code == 1
    assert any("differs from the signed checkpoint" in p["problem"] for p in json.loads(res.stdout)["problems"])


@pytest.mark.parametrize("content", ["not json", '{"receipt": {}, "signature": {}}'])
def test_audit_verify_refuses_an_unusable_checkpoint_file(home, tmp_path, content) -> None:
    f = tmp_path / "cp.json"
    f.write_text(content)
    res = runner.invoke(app, ["audit", "verify", "--checkpoint", str(f), "--json"])
    assert res.exit_code == 2
    assert str(f) in json.loads(res.stdout)["error"]["message"]
