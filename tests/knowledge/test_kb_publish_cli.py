"""Publishing a listing builds the retrieval index beside its version; ``ciyuan kb`` reuses and searches it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from clihelp import cli, runner

from ciyuan.cli.main import app
from ciyuan.knowledge import retrieval

DOCS = ["The gearbox oil temperature alarm triggered at turbine 7.", "风机齿轮箱温度过高，需要立即停机检查。",
        "Pitch bearing lubrication is due every six months.", "ブレードの前縁に亀裂が見つかりました。"]


@pytest.fixture
def published(home, monkeypatch):
    monkeypatch.setenv("CIYUAN_KB_VECTORS", "off")  # BM25 only: this test is about where and when, not vectors
    from ciyuan.db import tx
    from ciyuan.market import accounts, listings
    from ciyuan.store import VersionBuilder

    tx.run(lambda s: accounts.create_account(s, "prov", "provider"))
    b = VersionBuilder("manuals", made_by={"command": "test"})
    for i, t in enumerate(DOCS):
        b.add({"id": f"d{i}", "text": t, "meta": {}})
    v = b.commit()
    assert not Path(v.path("kb")).exists()
    listing = listings.publish(v.ref, provider="prov", price_per_mtok="10.00", sample=0)
    return v, listing


def test_publish_builds_the_index_and_the_card_names_it(published):
    v, listing = published
    r = listing["card"]["retrieval"]
    assert r["chunks"] == len(DOCS) and r["modes"] == ["bm25"] and r["vectors"] is None and "BM25 only" in r["note"]
    again = retrieval.ensure_index(None, v.id)
    assert again["reused"] is True and again["key"] == r["index"]


def test_cli_kb_index_reuses_then_rebuilds_with_other_params_and_searches(published):
    v, listing = published
    out = cli("kb", "index", v.ref)
    assert out["reused"] is True and out["key"] == listing["card"]["retrieval"]["index"]
    other = cli("kb", "index", v.ref, "--chunk-tokens", "16", "--overlap", "2")
    assert other["reused"] is False and other["key"] != out["key"]
    hits = cli("kb", "search", v.ref, "齿轮箱温度", "--top-k", "2")
    assert hits["mode_used"] == "bm25" and hits["results"][0]["record_id"] == "d1"


def test_cli_errors_say_what_to_do(published):
    res = runner.invoke(app, ["kb", "search", "manuals", "x", "--top-k", "0", "--json"])
    assert res.exit_code == 2
    err = json.loads(res.stdout)["error"]
    assert "top_k" in err["message"] and err["hint"]
    res = runner.invoke(app, ["kb", "index", "nosuch", "--json"])
    assert res.exit_code == 2 and json.loads(res.stdout)["error"]["hint"]
