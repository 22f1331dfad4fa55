"""``ciyuan mcp`` driven by the official SDK's own clients: stdio (spawning the command) and streamable
HTTP; list the tools, call each, check the bill in the ledger."""

from __future__ import annotations

import json
import os
import sys

import anyio
import pytest
from graphdata import EX, ThreadServer, entitlement, make_graph_market
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from ciyuan.db import tx
from ciyuan.delivery import calls, plan
from ciyuan.ledger import ledger

P = f"PREFIX ex: <{EX}> "
TOOLS = {"search_catalog", "describe_listing", "retrieve", "sparql"}


@pytest.fixture
def env(db_home, monkeypatch):
    monkeypatch.setenv("CIYUAN_KB_VECTORS", "off")
    e = make_graph_market()
    e.entitlement = entitlement(e)
    return e


def data(result) -> dict:
    assert not result.is_error, result.content
    if result.structured_content is not None:
        return result.structured_content.get("result", result.structured_content)
    return json.loads(result.content[0].text)


async def drive(session: ClientSession, env) -> dict:
    await session.initialize()
    names = {t.name for t in (await session.list_tools()).tools}
    assert names >= TOOLS
    found = data(await session.call_tool("search_catalog", {"query": ""}))
    assert env.listing["id"] in [i["id"] for i in found["items"]] and found["usage"]["billed"] is False
    desc = data(await session.call_tool("describe_listing", {"listing_id": env.listing["id"]}))
    assert desc["listing"]["id"] == env.listing["id"] and desc["budget"]["left"] > 0
    q = data(await session.call_tool("sparql", {"listing_id": env.listing["id"], "idempotency_key": "m1",
                                                "query": P + "SELECT ?n WHERE { ?s ex:name ?n }"}))
    assert len(q["result"]["results"]["bindings"]) == 8 and q["usage"]["amount"] > 0
    again = data(await session.call_tool("sparql", {"listing_id": env.listing["id"], "idempotency_key": "m1",
                                                    "query": P + "SELECT ?n WHERE { ?s ex:name ?n }"}))
    assert again["usage"]["replayed"] and again["usage"]["amount"] == q["usage"]["amount"]
    r = data(await session.call_tool("retrieve", {"listing_id": env.listing["id"], "query": "Fumiko"}))
    assert r["chunks"] and r["usage"]["tokens"] == sum(c["tokens"] for c in r["chunks"])
    bad = await session.call_tool("sparql", {"listing_id": env.listing["id"], "query": "DROP ALL"})
    assert bad.is_error and "query_refused" in bad.content[0].text
    return {"sparql": q["usage"], "retrieve": r["usage"]}


def check_bill(env, usages: dict) -> None:
    p = plan.plan(env.entitlement["id"], None)
    b = tx.run(lambda s: calls.budget(s, p))
    tokens = sum(u["tokens"] for u in usages.values())
    amount = sum(u["amount"] for u in usages.values())
    assert b["used"] == tokens and b["amount_posted"] == amount == p.price(tokens) and b["reserved"] == 0
    buyer = tx.run(lambda s: ledger.balance(s, ledger.BUYER, env.buyer, "CNY"))
    assert buyer.debits_posted == amount and tx.run(ledger.check)["ok"]


def test_stdio(env) -> None:
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "ciyuan.cli.main", "mcp", "--key", env.key],
        env={k: v for k, v in os.environ.items() if k.startswith(("CIYUAN_", "PYTHON", "PATH", "HOME"))})

    async def main() -> dict:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            return await drive(session, env)

    check_bill(env, anyio.run(main))


def test_streamable_http(env) -> None:
    from ciyuan.api import mcp_server

    with ThreadServer(mcp_server.http_app()) as srv:
        async def main() -> dict:
            client = create_mcp_http_client(headers={"Authorization": f"Bearer {env.key}"})
            async with client, streamable_http_client(srv.url + "/mcp", http_client=client) as streams:
                read, write = streams[0], streams[1]
                async with ClientSession(read, write) as session:
                    return await drive(session, env)

        check_bill(env, anyio.run(main))
        import httpx

        r = httpx.post(srv.url + "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 401 and r.json()["error"]["hint"]
