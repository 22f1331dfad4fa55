"""Proofs: signed receipts, the hash-chained audit log, settlement tied to the ledger, signed package URLs."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from ciyuan.cli.main import app
from ciyuan.db import tx
from ciyuan.delivery import packages, plan, stream
from ciyuan.ledger import audit, ledger, signing
from ciyuan.ledger.tables import AuditRow
from ciyuan.market import orders, quotes, settlement

runner = CliRunner()


def stream_all(buyer: str, ent: str, max_tokens: int = 4000) -> None:
    cursor = None
    while (d := stream.next_batch(buyer, ent, cursor, max_tokens=max_tokens)).kind != "done":
        cursor = d.next_cursor


def test_receipt_verifies_and_any_changed_byte_fails(home, h, tmp_path) -> None:
    env = h.make_market()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    stream_all(env.buyer, ent)
    res = runner.invoke(app, ["receipt", "get", ent, "--out", str(tmp_path / "r.json"), "--json"])
    assert res.exit_code == 0, res.output
    data = (tmp_path / "r.json").read_bytes()
    doc = json.loads(data)
    assert doc["receipt"]["totals"]["amount"] == doc["receipt"]["totals"]["price_of_tokens"]
    assert doc["receipt"]["totals"]["tokens"] == doc["receipt"]["entitled"]["tokens"]
    res = runner.invoke(app, ["receipt", "verify", str(tmp_path / "r.json"), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["ok"]
    pinned = signing.public_key_info()["key_id"]
    assert signing.verify_bytes(data, pinned)["ok"]
    assert not signing.verify_bytes(data, "someone-else")["ok"]
    for i in range(len(data)):  # every single-byte change is caught, wherever it is
        for flip in (0x01, 0x20):
            bad = bytearray(data)
            bad[i] ^= flip
            assert not signing.verify_bytes(bytes(bad))["ok"], (i, flip)
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0x01
    (tmp_path / "bad.json").write_bytes(bytes(bad))
    res = runner.invoke(app, ["receipt", "verify", str(tmp_path / "bad.json")])
    assert res.exit_code == 1 and "NOT valid" in res.output


def test_audit_chain_covers_ledger_and_detects_edits(db_home, h) -> None:
    env = h.make_market()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    stream_all(env.buyer, ent)
    # every transfer (the deposit too, made outside delivery) was logged when the ledger wrote it
    rep = tx.run(audit.verify)
    assert rep["ok"] and rep["unlogged_transfers"] == 0 and rep["missing_transfers"] == 0
    assert tx.run(ledger.adopt) == {"adopted": [], "expiries": 0, "refused": []}  # nothing predates the log
    res = runner.invoke(app, ["audit", "verify", "--json"])
    assert res.exit_code == 0, res.output
    kinds = {e.kind for e in tx.run(lambda s: audit.entries(s, limit=10_000))}
    assert {"ledger.transfer", "delivery.batch", "delivery.posted", "order.metered"} <= kinds
    tx.run(lambda s: s.execute(update(AuditRow).where(AuditRow.seq == 3).values(data='{"forged":1}')))
    rep = tx.run(audit.verify)
    assert not rep["ok"] and rep["problems"][0]["seq"] == 3
    res = runner.invoke(app, ["audit", "verify", "--json"])
    assert res.exit_code == 1


def test_settlement_ties_to_the_ledger_and_is_reproducible(db_home, h, tmp_path) -> None:
    env = h.make_market(price="777.77")
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    stream_all(env.buyer, ent, 2500)
    q = quotes.create_quote(env.buyer, env.listing["id"], {"token_budget": 20_000})
    order, _ = orders.place_order(env.buyer, q["id"], "paid-1")
    today = datetime.now(UTC).date().isoformat()
    res = runner.invoke(app, ["settle", "--from", today, "--to", today, "--out", str(tmp_path / "a"), "--json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["ok"]
    (st,) = rep["statements"]
    (line,) = st["lines"]
    assert line["sales"] >= 2 and line["tokens"] == h.metered_tokens(env, ent) + q["tokens"]
    check = tx.run(ledger.check)
    assert check["ok"]
    prov = tx.run(lambda s: ledger.balance(s, ledger.PROVIDER, env.provider, "CNY"))
    plat = tx.run(lambda s: ledger.balance(s, ledger.PLATFORM, None, "CNY"))
    assert line["net"] == prov.posted and line["fee"] == plat.posted
    assert line["gross"] == order["amount"] + tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))[
        "amount_posted"]
    again = settlement.settle(today, today, out_dir=tmp_path / "b")
    a = (tmp_path / "a" / f"{env.provider}.json").read_bytes()
    b = (tmp_path / "b" / f"{env.provider}.json").read_bytes()
    assert a == b and again["statements"][0]["statement_id"] == st["statement_id"]
    res = runner.invoke(app, ["settle", "--from", "2020-13-01", "--to", today])
    assert res.exit_code == 2


def test_package_urls_refuse_altered_or_expired(home, h) -> None:
    env = h.make_market()
    q = quotes.create_quote(env.buyer, env.listing["id"], {"filter": {"field": "meta.language", "op": "eq",
                                                                     "value": "en"}})
    order, _ = orders.place_order(env.buyer, q["id"], "paid-2")
    ent = order["entitlement"]["id"]
    p = plan.plan(ent, env.buyer)
    pkg = packages.package(p, ttl_s=60)
    assert sum(s["rows"] for s in pkg["shards"]) == q["records"]
    url = pkg["shards"][0]["url"]
    exp = pkg["expires_at"]
    sig = url.rsplit("sig=", 1)[1]
    packages.check(ent, 0, exp, sig)
    with pytest.raises(packages.BadSignature):
        packages.check(ent, 1, exp, sig)  # another shard
    with pytest.raises(packages.BadSignature):
        packages.check(ent, 0, exp + 3600, sig)  # a stretched expiry
    with pytest.raises(packages.BadSignature):
        packages.check(ent, 0, exp, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    with pytest.raises(packages.UrlExpired):
        packages.check(ent, 0, exp, sig, now=time.time() + 61)
    metered = h.metered_entitlement(env, key="m1")["entitlement"]["id"]
    with pytest.raises(Exception) as exc:
        packages.package(plan.plan(metered, env.buyer))
    assert getattr(exc.value, "status", None) == 409


def test_receipt_with_changed_spare_base64_bits_fails(home, h, tmp_path) -> None:
    """Base64 of a 32-byte key has two spare bits in its last character; changing them must not verify."""
    env = h.make_market()
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    stream_all(env.buyer, ent)
    res = runner.invoke(app, ["receipt", "get", ent, "--out", str(tmp_path / "r.json"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "r.json").read_bytes())
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for field, spare in (("public_key", 0b11), ("value", 0b1111)):
        text = doc["signature"][field].rstrip("=")
        pad = doc["signature"][field][len(text):]
        last = alphabet.index(text[-1])
        assert last & spare == 0
        changed = dict(doc, signature=dict(doc["signature"], **{field: text[:-1] + alphabet[last | 1] + pad}))
        out = signing.verify_bytes(signing.to_bytes(changed))
        assert not out["ok"] and "canonical" in out["problem"], out
