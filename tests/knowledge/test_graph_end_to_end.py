"""A Turtle file from ingest to a billed SPARQL answer and a retrieval call, through the real readers,
listing, order and HTTP routes (the kg, kb and query parts of issue 15 joined), checked against
rdflib's reading of the same file."""

from __future__ import annotations

import rdflib
from fastapi.testclient import TestClient

from ciyuan.api.app import create_app
from ciyuan.db import tx
from ciyuan.ingest.run import ingest
from ciyuan.ledger import ledger
from ciyuan.ledger.money import parse_amount
from ciyuan.market import accounts, listings, orders, quotes

TTL = """@prefix ex: <http://ex.org/plant/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
ex:pump1 a ex:Pump ; rdfs:label "一号泵"@zh , "pump one"@en ; ex:feeds ex:tank1 , ex:tank2 ; ex:rated 15 .
ex:pump2 a ex:Pump ; rdfs:label "pump two" ; ex:feeds ex:tank1 ; ex:installed "2024-05-01"^^xsd:date .
ex:tank1 a ex:Tank ; rdfs:label "tank one" ; ex:partOf [ rdfs:label "station north" ] .
ex:tank2 a ex:Tank ; rdfs:label "tank two" .
"""
QUERY = """PREFIX ex: <http://ex.org/plant/> PREFIX rdfs: <http://www.w3.org/2000/01/rdf-schema#>
SELECT ?pump ?tank ?label WHERE { ?pump a ex:Pump ; ex:feeds ?tank . OPTIONAL { ?tank rdfs:label ?label } }
ORDER BY ?pump ?tank"""


def test_ingested_turtle_is_queried_and_billed_like_rdflib_reads_it(db_home, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("CIYUAN_KB_VECTORS", "off")
    src = tmp_path / "plant.ttl"
    src.write_text(TTL, encoding="utf-8")
    out = ingest([str(src)], "plant", license="CC-BY-4.0")
    assert out["quarantined"] == 0 and out["records"] == 5  # four IRIs and the blank node

    def setup(sess):
        accounts.create_account(sess, "gridco", "provider")
        buyer = accounts.create_account(sess, "alice", "buyer")
        _, key = accounts.create_key(sess, "alice")
        ledger.deposit(sess, "dep-e2e", buyer.id, parse_amount("100.00", "CNY"), "CNY")
        return buyer.id, key

    buyer, key = tx.run(setup)
    listing = listings.publish(f"plant@{out['version']}", provider="gridco", price_per_mtok="1000", sample=1)
    q = quotes.create_quote(buyer, listing["id"], None)
    orders.place_order(buyer, q["id"], "e2e-order", billing="metered")

    expected = rdflib.Graph().parse(data=TTL, format="turtle").query(QUERY)
    want = [tuple(str(row[v]) if row[v] is not None else None for v in ("pump", "tank", "label")) for row in expected]

    def spent() -> int:
        return -tx.run(lambda s: ledger.balance(s, ledger.BUYER, buyer, "CNY")).posted

    with TestClient(create_app()) as c:
        auth = {"Authorization": f"Bearer {key}"}
        before = spent()
        r = c.post(f"/v1/listings/{listing['id']}/sparql", json={"query": QUERY, "max_tokens": 5000}, headers=auth)
        assert r.status_code == 200, r.text
        body = r.json()
        got = [
            tuple(b[v]["value"] if v in b else None for v in ("pump", "tank", "label"))
            for b in body["result"]["results"]["bindings"]
        ]
        assert got == want
        assert body["usage"]["tokens"] > 0 and spent() - before == body["usage"]["amount"] > 0

        r = c.post(f"/v1/listings/{listing['id']}/retrieve", json={"query": "一号泵", "top_k": 2, "mode": "bm25"},
                   headers=auth)
        assert r.status_code == 200, r.text
        hits = r.json()
        first = hits["chunks"][0]
        assert "pump1" in first["text"] and first["tokens"] > 0
        assert spent() - before == body["usage"]["amount"] + hits["usage"]["amount"]
        assert tx.run(lambda s: ledger.check(s))["ok"]
