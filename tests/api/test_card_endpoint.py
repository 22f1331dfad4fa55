"""GET /v1/listings/{id}/card: the listed version's Croissant JSON-LD, public, over a real server.

Uses the ``mkt`` fixture (uvicorn on a loopback port, a fresh home, one published listing), so the
request goes through routing, error mapping and serialisation exactly as a client would see them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_card_is_public_json_ld_and_matches_the_web_card(mkt, tmp_path: Path) -> None:
    lid = mkt.listing["id"]
    res = mkt.client().get(f"/v1/listings/{lid}/card")  # no key: a public catalog read
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("application/ld+json")
    card = res.json()
    assert isinstance(card["@context"], dict) and card["@context"].get("cr")
    assert card["@type"] in ("sc:Dataset", "Dataset", "schema:Dataset")
    assert card["recordSet"] and card["recordSet"][0]["@id"] == "records"
    assert card["name"] == mkt.version.dataset and card["version"].endswith(mkt.version.id[:12])
    assert card["conformsTo"] == "http://mlcommons.org/croissant/1.0"

    # one card per version: the web face's croissant.json is the same document
    web = mkt.client().get(f"/listings/{lid}/croissant.json")
    assert web.status_code == 200 and web.json() == card

    # and it is valid Croissant, by the reference validator
    path = tmp_path / "card.json"
    path.write_text(res.text)
    exe = Path(sys.executable).with_name("mlcroissant")
    done = subprocess.run([str(exe), "validate", "--jsonld", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_unknown_listing_is_a_404_json_error(mkt) -> None:
    res = mkt.client().get("/v1/listings/nosuchlisting/card")
    assert res.status_code == 404
    assert res.headers["content-type"].startswith("application/json")
    err = res.json()["error"]
    assert err["code"] == "not_found" and err["message"]


def test_malformed_id_is_a_422_json_error(mkt) -> None:
    res = mkt.client().get("/v1/listings/not-an-id!/card")
    assert res.status_code == 422
    assert res.json()["error"]["code"]


def test_card_is_in_the_openapi_schema_as_json_ld(mkt) -> None:
    spec = mkt.client().get("/openapi.json").json()
    op = spec["paths"]["/v1/listings/{listing_id}/card"]["get"]
    assert list(op["responses"]["200"]["content"]) == ["application/ld+json"]
    assert list(op["responses"]["404"]["content"]) == ["application/json"]  # errors stay plain JSON
    assert "security" not in op or op["security"] in ([], [{}])


# -- cards that load, and URLs that answer (issue 11, defect 6) -----------------------------------


def _content_urls(card: dict) -> dict[str, dict]:
    return {f["@id"]: f for f in card["distribution"] if f["@type"] == "cr:FileObject"}


def test_every_url_the_public_card_names_answers_as_stated(mkt) -> None:
    """The sample publicly; the full data 401 without a key, 403 unless paid in full, 200 once bought."""
    import hashlib

    lid = mkt.listing["id"]
    card = mkt.client().get(f"/v1/listings/{lid}/card").json()
    files = _content_urls(card)
    shards = [f for i, f in files.items() if i.startswith("shard-")]
    assert shards and "sample-file" in files
    assert mkt.client().get(card["url"]).status_code == 200  # the dataset's own URL is the listing
    sample = mkt.client().get(files["sample-file"]["contentUrl"])
    assert sample.status_code == 200 and hashlib.sha256(sample.content).hexdigest() == files["sample-file"]["sha256"]
    for f in shards:
        assert f["contentUrl"].startswith(mkt.url + f"/v1/listings/{lid}/")
        assert mkt.client().get(f["contentUrl"]).status_code == 401
        assert mkt.client(mkt.keys["bob"]).get(f["contentUrl"]).status_code == 403
    # alice buys a part: still 403 (the part streams through metered delivery); then the whole: 200
    op, alice = mkt.client(mkt.keys["op"]), mkt.client(mkt.keys["alice"])
    op.post("/v1/ledger/deposits", json={"account": "alice", "amount": "100.00"})
    part = alice.post("/v1/quotes", json={"listing_id": lid, "selection": {"token_budget": 1000}}).json()
    assert alice.post("/v1/orders", json={"quote_id": part["id"]}, headers={"Idempotency-Key": "p"}).status_code == 201
    assert alice.get(shards[0]["contentUrl"]).status_code == 403
    whole = alice.post("/v1/quotes", json={"listing_id": lid}).json()
    assert alice.post("/v1/orders", json={"quote_id": whole["id"]}, headers={"Idempotency-Key": "w"}).status_code == 201
    for f in shards:
        got = alice.get(f["contentUrl"])
        assert got.status_code == 200, got.text
        assert hashlib.sha256(got.content).hexdigest() == f["sha256"]
    assert mkt.client(mkt.keys["prov"]).get(shards[0]["contentUrl"]).status_code == 200  # and its provider


def test_mlcroissant_loads_the_public_sample_over_http(mkt, tmp_path: Path, monkeypatch) -> None:
    import mlcroissant as mlc
    from mlcroissant._src.core import constants

    monkeypatch.setattr(constants, "DOWNLOAD_PATH", constants.epath.Path(tmp_path / "downloads"))
    lid = mkt.listing["id"]
    path = tmp_path / "public.json"
    path.write_text(mkt.client().get(f"/v1/listings/{lid}/card").text)
    rows = list(mlc.Dataset(str(path)).records("sample"))
    ids = [r["sample/id"].decode() if isinstance(r["sample/id"], bytes) else r["sample/id"] for r in rows]
    assert ids == [r["id"] for r in mkt.listing["sample"]] and len(ids) == 3


def test_card_out_loads_its_records_wherever_it_is_written(db_home, tmp_path: Path) -> None:
    """`ciyuan card --out` into another folder: mlcroissant's Python API reads every record of every shard."""
    import mlcroissant as mlc
    from typer.testing import CliRunner

    from ciyuan.cli.main import app
    from ciyuan.store import VersionBuilder

    b = VersionBuilder("spread", made_by={"tool": "tests"}, rows_per_shard=40)
    for i in range(100):
        b.add({"id": f"s{i:03d}", "text": f"line {i}", "meta": {"n": i}, "tokens": {"cl100k_base": 3}})
    v = b.commit()
    assert len(v.manifest["shards"]) == 3
    out = tmp_path / "somewhere" / "else" / "card.json"
    res = CliRunner().invoke(app, ["card", v.ref, "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    rows = list(mlc.Dataset(str(out)).records("records"))
    ids = sorted(r["records/id"].decode() if isinstance(r["records/id"], bytes) else r["records/id"] for r in rows)
    assert ids == [f"s{i:03d}" for i in range(100)]
    # exporting another (smaller) version to the same place reads only that version's shards
    b2 = VersionBuilder("small", made_by={"tool": "tests"}, rows_per_shard=40)
    for i in range(5):
        b2.add({"id": f"t{i}", "text": f"other {i}", "tokens": {"cl100k_base": 2}})
    v2 = b2.commit()
    assert CliRunner().invoke(app, ["card", v2.ref, "--out", str(out)]).exit_code == 0
    assert len(list(mlc.Dataset(str(out)).records("records"))) == 5
    # and the copy beside the version still loads, by its relative paths
    beside = Path(str(v.location)) / "croissant.json"
    assert len(list(mlc.Dataset(str(beside)).records("records"))) == 100
    exe = Path(sys.executable).with_name("mlcroissant")
    done = subprocess.run([str(exe), "validate", "--jsonld", str(out)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
