"""Exchange throughput and quote latency, with PostgreSQL's own pgbench as the reference.

* orders/s: concurrent ``place_order`` calls (each a locked buyer row, a three-leg charge through
  the escrow account, an order and an entitlement) on SQLite and on PostgreSQL;
* ledger transfers/s: concurrent single-phase transfers between random buyer accounts;
* pgbench simple-update (``-N``) on a scratch database of the same server, in the same run;
* quote latency p50/p99 for a filtered selection on a 1,000,000-record version.

    .venv/bin/python bench/bench_exchange.py               # everything
    .venv/bin/python bench/bench_exchange.py --records 100000 --skip-pg
    .venv/bin/python bench/bench_exchange.py --targets     # issue 12's targets, side by side with pgbench

``--targets`` runs, on one PostgreSQL and in one run: ``pgbench -N`` (64 clients, a scratch
database made with ``pgbench -i``); (a) ledger transfers/s from 4 processes x 16 concurrent callers
(single-phase transfers between random pairs of 1,024 funded buyer accounts); (b) orders/s through
the HTTP API of ``ciyuan serve --workers 4``, 64 concurrent buyers each paying their own quotes.
It prints the ratios to pgbench's tps and checks afterwards, with the CLI, that ``ciyuan ledger
check`` and ``ciyuan audit verify`` are clean, that every order was charged exactly once and that
no buyer is overdrawn.

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


# -- issue 12's targets ------------------------------------------------------------------------------

LEDGER_ACCOUNTS = 1024


def child_ledger_setup() -> dict:
    """Fund LEDGER_ACCOUNTS buyer accounts (a few transactions) for the transfer workers."""
    from ciyuan.db import tx
    from ciyuan.ledger import ledger

    for lo in range(0, LEDGER_ACCOUNTS, 256):
        tx.run(lambda s, lo=lo: [ledger.deposit(s, f"seed-{i}", f"lb{i:04d}", 10**12, "CNY")
                                 for i in range(lo, lo + 256)])
    return {"accounts": LEDGER_ACCOUNTS}


def child_ledger_worker(worker: int, threads: int, seconds: float, start_at: float, path: str) -> dict:
    """``threads`` callers, each making one transfer at a time until the window closes.

    With ``start_at`` 0 the worker says ``ready`` once connected and reads the window's start from
    stdin, so that on a loaded machine no worker is still importing when the window opens.

    ``path`` ``submit``: ``ledger.submit_transfer`` (concurrent callers of a process share
    transactions); ``tx``: one ``tx.run(create_transfer)`` unit of work per transfer.
    """
    from ciyuan.db import tx
    from ciyuan.ledger import ledger

    ids = [ledger.account_id(ledger.BUYER, f"lb{i:04d}", "CNY") for i in range(LEDGER_ACCOUNTS)]
    tx.run(lambda s: ledger.balance(s, ledger.BUYER, "lb0000", "CNY"))  # connect and migrate before the window
    if not start_at:
        print("ready", flush=True)
        start_at = float(sys.stdin.readline())
    counts = [0] * threads

    def caller(t: int) -> None:
        rng = random.Random(worker * 1000 + t)
        while time.time() < start_at:
            time.sleep(0.001)
        end = start_at + seconds
        n = 0
        while time.time() < end:
            a, b = rng.sample(ids, 2)
            if path == "submit":
                ledger.submit_transfer(f"w{worker}-{t}-{n}", a, b, 1 + n % 100, "CNY")
            else:
                tx.run(lambda s, a=a, b=b, n=n: ledger.create_transfer(s, f"w{worker}-{t}-{n}", a, b, 1 + n % 100,
                                                                       "CNY"))
            n += 1
        counts[t] = n

    pool = [threading.Thread(target=caller, args=(t,)) for t in range(threads)]
    cpu0 = time.process_time()
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return {"worker": worker, "transfers": sum(counts), "cpu_s": round(time.process_time() - cpu0, 2),
            "late_s": round(max(0.0, time.time() - seconds - start_at), 2)}


def child_http_setup(buyers: int, quotes_each: int) -> dict:
    """A provider, a listing, ``buyers`` buyers with keys, funds and their own quotes."""
    from ciyuan.db import tx
    from ciyuan.ledger import ledger
    from ciyuan.market import accounts, listings, quotes

    accs = tx.run(lambda s: [accounts.create_account(s, f"hb{i:03d}", "buyer") for i in range(buyers)]
                  + [accounts.create_account(s, "prov", "provider")])
    keys = [tx.run(lambda s, a=a: accounts.create_key(s, a.id))[1] for a in accs[:-1]]
    tx.run(lambda s: [ledger.deposit(s, f"seed-{a.id}", a.id, 10**12, "CNY") for a in accs[:-1]])
    v = _version("small", 2000)
    lst = listings.publish(v.ref, provider="prov", price_per_mtok="12.00", sample=0)
    made = [[quotes.create_quote(a.id, lst["id"], {"token_budget": 5000 + i})["id"] for i in range(quotes_each)]
            for a in accs[:-1]]
    return {"buyers": [{"id": a.id, "key": k, "quotes": q} for a, k, q in zip(accs[:-1], keys, made, strict=True)],
            "listing": lst["id"]}


def _free_port() -> int:
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def _ciyuan(env: dict, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "ciyuan.cli.main", *args, "--json"], env=env, cwd=ROOT,
                         capture_output=True, text=True)
    try:
        return json.loads(out.stdout)
    except ValueError:
        return {"ok": False, "exit": out.returncode, "stderr": out.stderr[-2000:], "stdout": out.stdout[-2000:]}


def _child(kind: str, env: dict, *args: str, stdin: int | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "--child", kind, *args], env=env, cwd=ROOT,
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _last_json(p: subprocess.Popen) -> dict:
    out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"child failed ({p.returncode}): {err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _home(url: str) -> dict:
    env = {**os.environ, "CIYUAN_HOME": tempfile.mkdtemp(prefix="ciyuan-bench-"), "CIYUAN_DATABASE_URL": url,
           "PYTHONPATH": str(ROOT)}
    return env


def target_ledger(seconds: float, procs: int, threads: int, path: str = "submit") -> dict:
    url = _pg_db()
    env = _home(url)
    try:
        _last_json(_child("ledger-setup", env))
        kids = [_child("ledger-worker", env, "--worker", str(w), "--threads", str(threads), "--seconds",
                       str(seconds), "--start-at", "0", "--path", path, stdin=subprocess.PIPE) for w in range(procs)]
        for k in kids:  # every worker imported and connected: then the window opens for all at once
            if k.stdout.readline().strip() != "ready":
                raise RuntimeError(f"ledger worker failed: {_last_json(k)}")
        start_at = time.time() + 1
        for k in kids:
            k.stdin.write(f"{start_at}\n")
            k.stdin.flush()
        done = [_last_json(k) for k in kids]
        n = sum(d["transfers"] for d in done)
        cpu = sum(d["cpu_s"] for d in done)
        check, verify = _ciyuan(env, "ledger", "check"), _ciyuan(env, "audit", "verify")
        return {"path": path, "transfers_per_s": round(n / seconds, 1), "transfers": n, "processes": procs,
                "callers_per_process": threads, "seconds": seconds,
                "client_cpu_ms_per_transfer": round(1000 * cpu / max(n, 1), 2), "ledger_check_ok": check.get("ok"),
                "audit_verify_ok": verify.get("ok"), "audit_entries": verify.get("entries"),
                "audit_transfers": verify.get("transfers"), "check_problems": check.get("differences", [])[:5],
                "verify_problems": verify.get("problems", [])[:5]}
    finally:
        _pg_drop(url)


def target_http(seconds: float, workers: int, buyers: int, quotes_each: int) -> dict:
    import http.client

    url = _pg_db()
    env = _home(url)
    server = None
    try:
        setup = _last_json(_child("http-setup", env, "--buyers", str(buyers), "--quotes-each", str(quotes_each)))
        port = _free_port()
        server = subprocess.Popen([sys.executable, "-m", "ciyuan.cli.main", "serve", "--port", str(port),
                                   "--workers", str(workers), "--json"], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        server.stdout.readline()  # {"serving": ...}
        # keep reading what the server prints (uvicorn's access log): a full pipe would block its workers
        threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()
        up = threading.Semaphore(0)  # one release per worker whose app started (uvicorn logs it on stderr)
        threading.Thread(target=lambda: [up.release() for line in server.stderr
                                         if "Application startup complete" in line], daemon=True).start()
        for _ in range(workers):  # on a loaded machine a late worker would get none of the kept-alive clients
            up.acquire(timeout=300)
        for _ in range(600):  # the workers accept once they are up
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", "/v1/listings")
                c.getresponse().read()
                break
            except OSError:
                time.sleep(0.1)
        counts = [0] * buyers
        errors: list[str] = []
        ran_out: list[int] = []  # buyers whose quotes ran out before the window closed (then add --quotes-each)
        start_at = time.time() + 3

        def buyer(i: int) -> None:
            b = setup["buyers"][i]
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            hdr = {"Authorization": f"Bearer {b['key']}", "Content-Type": "application/json"}
            while time.time() < start_at:
                time.sleep(0.001)
            end = start_at + seconds
            for q in b["quotes"]:
                if time.time() >= end:
                    break
                if q == b["quotes"][-1]:
                    ran_out.append(i)
                conn.request("POST", "/v1/orders", body=json.dumps({"quote_id": q}),
                             headers={**hdr, "Idempotency-Key": f"k-{q}"})
                r = conn.getresponse()
                body = r.read()
                if r.status in (200, 201):
                    counts[i] += 1
                elif len(errors) < 5:
                    errors.append(f"{r.status} {body[:300]!r}")
            conn.close()

        pool = [threading.Thread(target=buyer, args=(i,)) for i in range(buyers)]
        for th in pool:
            th.start()
        for th in pool:
            th.join()
        elapsed = max(seconds, time.time() - start_at)
        n = sum(counts)
        server.terminate()
        server.wait(30)
        server = None
        check, verify = _ciyuan(env, "ledger", "check"), _ciyuan(env, "audit", "verify")
        return {"orders_per_s": round(n / elapsed, 1), "orders": n, "workers": workers, "buyers": buyers,
                "seconds": round(elapsed, 1), "errors": errors, "buyers_out_of_quotes": len(ran_out),
                "ledger_check_ok": check.get("ok"),
                "audit_verify_ok": verify.get("ok"), "audit_transfers": verify.get("transfers"),
                "charged_once": _charged_once(url, n), "check_problems": check.get("differences", [])[:5],
                "verify_problems": verify.get("problems", [])[:5]}
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        _pg_drop(url)


def _charged_once(url: str, orders: int) -> bool:
    """Every paid order has exactly one buyer leg of its amount, and no buyer is overdrawn."""
    import psycopg

    with psycopg.connect(url) as conn:
        n_orders = conn.execute("SELECT count(*) FROM ex_orders").fetchone()[0]
        bad = conn.execute(
            "SELECT count(*) FROM ex_orders o LEFT JOIN ex_transfers t ON t.charge_id = 'order:' || o.id "
            "AND t.leg = 'buyer' GROUP BY o.id, o.amount HAVING count(t.id) <> 1 OR sum(t.amount) <> o.amount"
        ).fetchall()
        overdrawn = conn.execute(
            "SELECT count(*) FROM ex_ledger_accounts WHERE kind = 'buyer_balance' "
            "AND debits_posted + debits_pending > credits_posted").fetchone()[0]
    return n_orders == orders and not bad and overdrawn == 0


def targets(args: argparse.Namespace) -> dict:
    clients = args.procs * args.callers
    result: dict = {"cpus": os.cpu_count(), "command": "bench/bench_exchange.py --targets "
                    f"--seconds {args.seconds:g} --procs {args.procs} --callers {args.callers} --workers "
                    f"{args.workers} --buyers {args.buyers} --quotes-each {args.quotes_each}"}
    result["pgbench"] = pgbench(int(args.seconds), clients)
    print("pgbench", result["pgbench"], flush=True)
    result["ledger"] = target_ledger(args.seconds, args.procs, args.callers, "submit")
    print("ledger", result["ledger"], flush=True)
    result["ledger_one_tx_each"] = target_ledger(args.seconds, args.procs, args.callers, "tx")
    print("ledger_one_tx_each", result["ledger_one_tx_each"], flush=True)
    result["http"] = target_http(args.seconds, args.workers, args.buyers, args.quotes_each)
    print("http", result["http"], flush=True)
    result["pgbench_after"] = pgbench(int(args.seconds), clients)
    print("pgbench_after", result["pgbench_after"], flush=True)
    tps = (result["pgbench"]["pgbench_simple_update_tps"] + result["pgbench_after"]["pgbench_simple_update_tps"]) / 2
    result["ratios"] = {
        "pgbench_tps_mean": round(tps, 1),
        "ledger_transfers_vs_pgbench": round(result["ledger"]["transfers_per_s"] / tps, 3),
        "ledger_one_tx_each_vs_pgbench": round(result["ledger_one_tx_each"]["transfers_per_s"] / tps, 3),
        "http_orders_vs_pgbench": round(result["http"]["orders_per_s"] / tps, 3),
        "targets": {"ledger": 0.3, "http": 0.05},
    }
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--orders", type=int, default=400)
    ap.add_argument("--transfers", type=int, default=2000)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--pgbench-seconds", type=int, default=10)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--child", choices=["throughput", "quotes", "ledger-setup", "ledger-worker", "http-setup"])
    ap.add_argument("--targets", action="store_true", help="issue 12's targets against pgbench -N (PostgreSQL)")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--callers", type=int, default=16)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--buyers", type=int, default=64)
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument("--start-at", type=float, default=0)
    ap.add_argument("--quotes-each", type=int, default=100)
    ap.add_argument("--path", choices=["submit", "tx"], default="submit")
    args = ap.parse_args()
    if args.child == "ledger-setup":
        print(json.dumps(child_ledger_setup()))
        return
    if args.child == "ledger-worker":
        print(json.dumps(child_ledger_worker(args.worker, args.threads, args.seconds, args.start_at, args.path)))
        return
    if args.child == "http-setup":
        print(json.dumps(child_http_setup(args.buyers, args.quotes_each)))
        return
    if args.targets:
        sys.path.insert(0, str(ROOT))
        result = targets(args)
        out = ROOT / "bench" / "out"
        out.mkdir(exist_ok=True)
        (out / "bench_exchange_targets.json").write_text(json.dumps(result, indent=2))
        print(json.dumps(result, indent=2))
        return
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
