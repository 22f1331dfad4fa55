"""Exchange throughput and quote latency, with PostgreSQL's own pgbench as the reference.

* orders/s: concurrent ``place_order`` calls (each a locked buyer row, a three-leg charge through
  the escrow account, an order and an entitlement) on SQLite and on PostgreSQL;
* ledger transfers/s: concurrent single-phase transfers between random buyer accounts;
* pgbench simple-update (``-N``) on a scratch database of the same server, in the same run;
* quote latency p50/p99 for a filtered selection on a 1,000,000-record version.

    .venv/bin/python bench/bench_exchange.py               # everything
    .venv/bin/python bench/bench_exchange.py --records 100000 --skip-pg

Each backend runs in a fresh child process with its own ciyuan home. PostgreSQL is
``CIYUAN_BENCH_PG`` (default postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("CIYUAN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_db() -> str:
    import psycopg

    name = f"ciyuan_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def _pg_drop(url: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


def _version(name: str, n: int):
    from ciyuan.store import VersionBuilder

    rng = random.Random(5)
    langs, domains = ["zh", "en", "ja", "ko"], ["law", "medicine", "finance", "news", "code"]
    b = VersionBuilder(name, made_by={"tool": "bench"}, rows_per_shard=250_000, batch_rows=20_000)
    for i in range(n):
        b.add(
            {
                "id": f"r{i:08d}",
                "text": f"t{i}",
                "meta": {"language": langs[i % 4], "domain": rng.choice(domains), "score": rng.random()},
                "tokens": {"cl100k_base": 20 + (i * 7919) % 900},
            }
        )
    return b.commit()


def child_throughput(threads: int, orders: int, transfers: int) -> dict:
    from ciyuan.db import tx
    from ciyuan.ledger import ledger
    from ciyuan.market import accounts, listings
    from ciyuan.market.orders import place_order
    from ciyuan.market.quotes import create_quote

    buyers_n = 64
    accs = tx.run(
        lambda s: (
            [accounts.create_account(s, f"b{i}", "buyer") for i in range(buyers_n)]
            + [accounts.create_account(s, "prov", "provider")]
        )
    )
    buyers = accs[:-1]
    for b in buyers:
        tx.run(lambda s, b=b: ledger.deposit(s, f"seed-{b.id}", b.id, 10**12, "CNY"))
    v = _version("small", 2000)
    lst = listings.publish(v.ref, provider="prov", price_per_mtok="12.00", sample=0)
    quotes = [
        (b.id, create_quote(b.id, lst["id"], {"token_budget": 5000 + i})["id"])
        for i, b in zip(range(orders), random.Random(1).choices(buyers, k=orders), strict=False)
    ]

    def order(q):
        place_order(q[0], q[1], "k-" + q[1])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(order, quotes))
    orders_s = len(quotes) / (time.perf_counter() - t0)

    ids = [ledger.account_id(ledger.BUYER, b.id, "CNY") for b in buyers]
    rng = random.Random(2)
    pairs = [rng.sample(ids, 2) for _ in range(transfers)]
    lock = threading.Lock()
    counter = iter(range(10**9))

    def transfer(p):
        with lock:
            n = next(counter)
        tx.run(lambda s: ledger.create_transfer(s, f"bench-{n}", p[0], p[1], 1 + n % 100, "CNY"))

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(transfer, pairs))
    transfers_s = len(pairs) / (time.perf_counter() - t0)
    check = tx.run(ledger.check)
    return {
        "orders_per_s": round(orders_s, 1),
        "transfers_per_s": round(transfers_s, 1),
        "orders": len(quotes),
        "transfers": len(pairs),
        "threads": threads,
        "ledger_check_ok": check["ok"],
    }


def child_quotes(records: int, runs: int) -> dict:
    from ciyuan.db import tx
    from ciyuan.market import accounts, listings, quotes

    t0 = time.perf_counter()
    v = _version("big", records)
    built = time.perf_counter() - t0
    buyer = tx.run(
        lambda s: (accounts.create_account(s, "prov", "provider"), accounts.create_account(s, "buyer", "buyer"))
    )[1]
    t0 = time.perf_counter()
    lst = listings.publish(v.ref, provider="prov", price_per_mtok="12.00", sample=3)
    publish_s = time.perf_counter() - t0
    sel = {
        "filter": {
            "and": [
                {"field": "meta.language", "op": "in", "value": ["zh", "ja"]},
                {"field": "meta.domain", "op": "eq", "value": "law"},
                {"field": "meta.score", "op": "ge", "value": 0.25},
            ]
        },
        "token_budget": 50_000_000,
    }
    quotes.create_quote(buyer.id, lst["id"], sel)  # first call loads the index into the cache
    lat = []
    for _ in range(runs):
        t = time.perf_counter()
        q = quotes.create_quote(buyer.id, lst["id"], sel)
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    return {
        "records": records,
        "build_version_s": round(built, 1),
        "publish_s": round(publish_s, 1),
        "quote_p50_ms": round(statistics.median(lat), 2),
        "quote_p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 2),
        "quote_runs": runs,
        "selected_records": q["records"],
        "selected_tokens": q["tokens"],
    }


def pgbench(seconds: int, clients: int) -> dict:
    url = _pg_db()
    try:
        subprocess.run(["pgbench", "-i", "-q", "-s", "10", url], check=True, capture_output=True)
        out = subprocess.run(
            ["pgbench", "-N", "-c", str(clients), "-j", "2", "-T", str(seconds), url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
        return {"pgbench_simple_update_tps": round(tps, 1), "clients": clients, "seconds": seconds, "scale": 10}
    finally:
        _pg_drop(url)


def run_child(kind: str, backend: str, args: argparse.Namespace) -> dict:
    home = tempfile.mkdtemp(prefix="ciyuan-bench-")
    env = {**os.environ, "CIYUAN_HOME": home}
    env.pop("CIYUAN_DATABASE_URL", None)
    url = None
    if backend == "postgresql":
        url = _pg_db()
        env["CIYUAN_DATABASE_URL"] = url
    try:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                kind,
                "--threads",
                str(args.threads),
                "--orders",
                str(args.orders),
                "--transfers",
                str(args.transfers),
                "--records",
                str(args.records),
                "--runs",
                str(args.runs),
            ],
            env=env,
            cwd=ROOT,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return json.loads(out.strip().splitlines()[-1])
    finally:
        if url:
            _pg_drop(url)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--orders", type=int, default=400)
    ap.add_argument("--transfers", type=int, default=2000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--child", choices=["throughput", "quotes"])
    args = ap.parse_args()
    if args.child == "throughput":
        print(json.dumps(child_throughput(args.threads, args.orders, args.transfers)))
        return
    if args.child == "quotes":
        print(json.dumps(child_quotes(args.records, args.runs)))
        return
    sys.path.insert(0, str(ROOT))
    result: dict = {"cpus": os.cpu_count()}
    result["sqlite"] = run_child("throughput", "sqlite", args)
    print("sqlite", result["sqlite"], flush=True)
    if not args.skip_pg:
        result["postgresql"] = run_child("throughput", "postgresql", args)
        print("postgresql", result["postgresql"], flush=True)
        result["pgbench"] = pgbench(args.pgbench_seconds, args.threads)
        print("pgbench", result["pgbench"], flush=True)
    result["quotes"] = run_child("quotes", "sqlite", args)
    print("quotes", result["quotes"], flush=True)
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "bench_exchange.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
