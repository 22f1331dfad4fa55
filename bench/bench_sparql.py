"""SPARQL lookups on a 1,000,000-triple graph: p99 through the metered call path against pyoxigraph's bare
query time, in the same run (issue 15: the metering overhead should stay within 1.5x).

A synthetic social graph (``--triples`` / 10 people, each with a type, a name, an age, a city, a
group, a note and four ``knows`` links) is written as graph records (one subject with its sorted
N-Triples lines, the form ciyuan ingests), listed, and bought by a buyer on a metered order. Then
each lookup of a fixed, seeded set (a subject's triples, a name, who knows X, an ASK, a DESCRIBE, a
two-hop name lookup) runs ``--repeat`` times, alternating:

* **bare**: ``pyoxigraph.Store.read_only`` on the very store ciyuan built, in this process, the
  results read to the end and each term turned into text (what any client does with them);
* **metered**: ``ciyuan.delivery.calls.sparql_call``: the lexical check, the reservation of the
  cap in the ledger (a hold), the query in a worker process, the tokens of each returned row counted
  under the listing's schedule, the settlement (post, release of the rest, usage row, audit event);
* **http** (``--http``): the same call through ``POST /v1/listings/{id}/sparql`` on a uvicorn server.

    PYTHONPATH=. .venv/bin/python bench/bench_sparql.py --triples 1000000 --repeat 200 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

EX = "http://example.org/"
TYPE = "<http://www.w3.org/1999/02/22-rdf-syntax-ns#type>"


def person_lines(i: int, n: int, rng: random.Random) -> list[str]:
    s = f"<{EX}p/{i}>"
    lines = [f"{s} {TYPE} <{EX}Person> .", f'{s} <{EX}name> "person {i}"@en .',
             f'{s} <{EX}age> "{18 + i % 70}"^^<http://www.w3.org/2001/XMLSchema#integer> .',
             f'{s} <{EX}city> "city {i % 500}" .', f"{s} <{EX}group> <{EX}g/{i % 1000}> .",
             f'{s} <{EX}note> "note about {i}: 风机 {i % 97}" .']
    for f in rng.sample(range(n), 4):
        lines.append(f"{s} <{EX}knows> <{EX}p/{f}> .")
    return sorted(x + "\n" for x in lines)


def build(triples: int, seed: int):
    """The graph version, its listing and a buyer's key, in the current home."""
    from ciyuan.db import tx
    from ciyuan.ledger import ledger
    from ciyuan.market import accounts, listings, orders, quotes
    from ciyuan.store import VersionBuilder

    n = max(10, triples // 10)
    rng = random.Random(seed)
    b = VersionBuilder("bench-graph", made_by={"tool": "bench_sparql"}, rows_per_shard=200_000)
    for i in range(n):
        text = "".join(person_lines(i, n, rng))
        b.add({"id": f"p{i:08d}", "modality": "graph", "text": text,
               "meta": {"subject": f"{EX}p/{i}", "graph": None, "triples": 10, "source": "bench.nt",
                        "line": i * 10 + 1},
               "tokens": {"cl100k_base": len(text) // 3}})
    version = b.commit()

    def setup(sess):
        accounts.create_account(sess, "prov", "provider")
        buyer = accounts.create_account(sess, "buyer", "buyer")
        _, key = accounts.create_key(sess, "buyer")
        ledger.deposit(sess, "dep", buyer.id, 10**12, "CNY")
        return buyer.id, key

    buyer, key = tx.run(setup)
    t0 = time.perf_counter()
    listing = listings.publish(version.ref, provider="prov", price_per_mtok="10.00", sample=0)
    publish_s = time.perf_counter() - t0
    q = quotes.create_quote(buyer, listing["id"], None)
    orders.place_order(buyer, q["id"], "bench", billing="metered")
    return version, listing, buyer, key, n, publish_s


def lookups(n: int, seed: int, count: int) -> list[tuple[str, str]]:
    rng = random.Random(seed + 1)
    out = []
    kinds = [
        ("subject", "SELECT ?p ?o WHERE {{ <{s}> ?p ?o }}"),
        ("name", "SELECT ?n WHERE {{ <{s}> <" + EX + "name> ?n }}"),
        ("knows-in", "SELECT ?x WHERE {{ ?x <" + EX + "knows> <{s}> }} LIMIT 10"),
        ("ask", "ASK {{ <{s}> <" + EX + "knows> <{t}> }}"),
        ("describe", "DESCRIBE <{s}>"),
        ("two-hop", "SELECT ?f ?n WHERE {{ <{s}> <" + EX + "knows> ?f . ?f <" + EX + "name> ?n }}"),
    ]
    for i in range(count):
        name, tpl = kinds[i % len(kinds)]
        out.append((name, tpl.format(s=f"{EX}p/{rng.randrange(n)}", t=f"{EX}p/{rng.randrange(n)}")))
    return out


def bare(store, query: str) -> int:
    import pyoxigraph as ox

    res = store.query(query)
    if isinstance(res, ox.QueryBoolean):
        return int(bool(res))
    if isinstance(res, ox.QuerySolutions):
        return sum(len([str(t) for t in sol if t is not None]) for sol in res)
    return len([f"{t} .\n" for t in res])


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--triples", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=200, help="lookups of each path")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--http", action="store_true", help="also through the HTTP API on a uvicorn server")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="ciyuan-bench-sparql-"))
    os.environ["CIYUAN_HOME"] = str(home)
    os.environ.setdefault("CIYUAN_KB_VECTORS", "off")
    os.environ.pop("CIYUAN_DATABASE_URL", None)
    import pyoxigraph as ox

    from ciyuan.delivery import calls
    from ciyuan.knowledge import sparql

    t0 = time.perf_counter()
    version, listing, buyer, key, n, publish_s = build(args.triples, args.seed)
    build_s = time.perf_counter() - t0
    manifest = sparql.ensure_store(version)
    store = ox.Store.read_only(str(sparql.store_dir(version) / "oxigraph"))
    qs = lookups(n, args.seed, args.repeat)
    for _, q in qs[:12]:  # warm both paths (worker start, page cache, plan cache)
        bare(store, q)
        calls.sparql_call(buyer, listing["id"], q, max_tokens=100_000)
    times: dict[str, list[float]] = {"bare": [], "metered": []}
    by_kind: dict[str, dict[str, list[float]]] = {}
    client = None
    srv = None
    if args.http:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "knowledge"))
        from graphdata import ThreadServer

        from ciyuan.api.app import create_app
        from ciyuan.sdk import Client

        srv = ThreadServer(create_app()).__enter__()
        client = Client(srv.url, key)
        times["http"] = []
    for i, (kind, q) in enumerate(qs):
        t = time.perf_counter()
        bare(store, q)
        b = time.perf_counter() - t
        t = time.perf_counter()
        out = calls.sparql_call(buyer, listing["id"], q, max_tokens=100_000, idempotency_key=f"m{i}")
        m = time.perf_counter() - t
        assert out["usage"]["tokens"] >= 0
        times["bare"].append(b)
        times["metered"].append(m)
        k = by_kind.setdefault(kind, {"bare": [], "metered": []})
        k["bare"].append(b)
        k["metered"].append(m)
        if client is not None:
            t = time.perf_counter()
            client.sparql(listing["id"], q, max_tokens=100_000, idempotency_key=f"h{i}")
            times["http"].append(time.perf_counter() - t)
    if srv is not None:
        client.close()
        srv.__exit__(None, None, None)
    res = {
        "triples": manifest["quads"], "subjects": n, "lookups": len(qs), "build_s": round(build_s, 1),
        "publish_s": round(publish_s, 1), "store_build_s": manifest["build_s"],
        "p50_ms": {k: round(statistics.median(v) * 1000, 3) for k, v in times.items()},
        "p99_ms": {k: round(pct(v, 99) * 1000, 3) for k, v in times.items()},
        "by_kind_p99_ms": {k: {p: round(pct(v[p], 99) * 1000, 3) for p in v} for k, v in by_kind.items()},
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }
    res["ratio_p99_metered_over_bare"] = round(res["p99_ms"]["metered"] / res["p99_ms"]["bare"], 2)
    res["overhead_p99_ms"] = round(res["p99_ms"]["metered"] - res["p99_ms"]["bare"], 3)
    if "http" in times:
        res["ratio_p99_http_over_bare"] = round(res["p99_ms"]["http"] / res["p99_ms"]["bare"], 2)
    print(json.dumps(res, indent=2) if args.json else res)


if __name__ == "__main__":
    main()
