"""The query APIs as a buyer meets them: HTTP routes, the SDK and the CLI, billed per returned token."""

from __future__ import annotations

import pytest
from clihelp import cli
from fastapi.testclient import TestClient
from graphdata import EX, ThreadServer, entitlement, make_graph_market, publish_kb

from ciyuan.api.app import create_app
from ciyuan.db import tx
from ciyuan.ledger import ledger
from ciyuan.sdk import Client
from ciyuan.sdk.errors import ApiError

P = f"PREFIX ex: <{EX}> "
NAMES = P + "SELECT ?s ?n WHERE { ?s ex:name ?n } ORDER BY ?s"


@pytest.fixture
def env(db_home, monkeypatch):
    monkeypatch.setenv("CIYUAN_KB_VECTORS", "off")
    e = make_graph_market()
    entitlement(e)
    return e


def spent(env) -> int:
    return -tx.run(lambda s: ledger.balance(s, ledger.BUYER, env.buyer, "CNY")).posted


def test_sparql_route_answers_with_usage_and_replays_with_the_same_key(env) -> None:
    with TestClient(create_app()) as c:
        auth = {"Authorization": f"Bearer {env.key}"}
        before = spent(env)
        r = c.post(f"/v1/listings/{env.listing['id']}/sparql", json={"query": NAMES, "max_tokens": 2000},
                   headers={**auth, "Idempotency-Key": "k-1"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert len(out["result"]["results"]["bindings"]) == 8 and out["usage"]["tokens"] == out["tokens"]
        assert r.headers["Ciyuan-Tokens"] == str(out["usage"]["tokens"])
        assert spent(env) - before == out["usage"]["amount"] > 0
        again = c.post(f"/v1/listings/{env.listing['id']}/sparql", json={"query": NAMES, "max_tokens": 2000},
                       headers={**auth, "Idempotency-Key": "k-1"})
        assert again.headers["Idempotent-Replayed"] == "true" and again.json()["result"] == out["result"]
        assert spent(env) - before == out["usage"]["amount"]
        raw = c.post(f"/v1/listings/{env.listing['id']}/sparql",
                     json={"query": P + "CONSTRUCT WHERE { ?s ex:name ?n }"},
                     headers={**auth, "Accept": "application/n-triples"})
        assert raw.headers["content-type"].startswith("application/n-triples")
        assert raw.text.count(" .\n") == 8 and int(raw.headers["Ciyuan-Tokens"]) > 0


@pytest.mark.parametrize("body,status,code", [
    ({"query": "DELETE WHERE { ?s ?p ?o }"}, 422, "query_refused"),
    ({"query": P + "SELECT ?s WHERE { ?s ex:name }"}, 422, "bad_query"),
    ({"query": "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o . ?q ?r ?t }",
      "timeout_s": 0.5}, 408, "query_timeout"),
])
def test_sparql_route_errors_leave_the_ledger_as_it_was(env, body, status, code) -> None:
    with TestClient(create_app()) as c:
        before = spent(env)
        r = c.post(f"/v1/listings/{env.listing['id']}/sparql", json=body,
                   headers={"Authorization": f"Bearer {env.key}"})
        assert r.status_code == status and r.json()["error"]["code"] == code and r.json()["error"]["hint"]
        assert spent(env) == before
        assert c.post(f"/v1/listings/{env.listing['id']}/sparql", json=body).status_code == 401


def test_retrieve_route_returns_chunks_with_sources_scores_and_tokens(env) -> None:
    kb = publish_kb(env)
    from ciyuan.market import orders, quotes

    q = quotes.create_quote(env.buyer, kb["id"], None)
    orders.place_order(env.buyer, q["id"], "kb-order", billing="metered")
    with TestClient(create_app()) as c:
        before = spent(env)
        r = c.post(f"/v1/listings/{kb['id']}/retrieve", json={"query": "齿轮箱温度", "top_k": 3, "mode": "bm25"},
                   headers={"Authorization": f"Bearer {env.key}"})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["chunks"][0]["record_id"] == "d1" and "齿轮箱" in out["chunks"][0]["text"]
        for ch in out["chunks"]:
            assert {"chunk_id", "record_id", "start", "end", "score", "tokens"} <= set(ch) and ch["tokens"] > 0
        assert out["usage"]["tokens"] == sum(ch["tokens"] for ch in out["chunks"])
        assert spent(env) - before == out["usage"]["amount"] > 0
        # a graph listing's chunks are its records: a subject with its triples
        g = c.post(f"/v1/listings/{env.listing['id']}/retrieve", json={"query": "Fumiko", "mode": "bm25"},
                   headers={"Authorization": f"Bearer {env.key}"}).json()
        assert '"Fumiko"@en' in g["chunks"][0]["text"] and g["usage"]["tokens"] > 0


def test_sdk_and_cli(env) -> None:
    with ThreadServer(create_app()) as srv, Client(srv.url, env.key) as c:
        out = c.sparql(env.listing["id"], P + "ASK { ?s ex:age 34 }")
        assert out["result"]["boolean"] is True and 0 < out["usage"]["tokens"] <= 2
        again = c.sparql(env.listing["id"], P + "ASK { ?s ex:age 34 }", idempotency_key=out["usage"]["idempotency_key"])
        assert again["usage"]["replayed"]
        with pytest.raises(ApiError) as e:
            c.sparql(env.listing["id"], "LOAD <http://example.org/x>")
        assert e.value.status == 422 and e.value.code == "query_refused"
        via_url = cli("sparql", env.listing["id"], NAMES, "--key", env.key, "--url", srv.url)
        assert via_url["rows"] == 8
    local = cli("sparql", env.listing["id"], NAMES, "--key", env.key, "--idempotency-key", "cli-1")
    assert local["rows"] == 8 and not local["usage"]["replayed"]
    assert cli("sparql", env.listing["id"], NAMES, "--key", env.key, "--idempotency-key", "cli-1")["usage"]["replayed"]
    err = cli("sparql", env.listing["id"], "DROP ALL", "--key", env.key, code=2)
    assert err["error"]["code"] == "query_refused" and err["error"]["hint"]
    assert cli("sparql", env.listing["id"], NAMES, code=2)["error"]["code"] == "unauthenticated"
