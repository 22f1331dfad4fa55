"""Metered streaming against an unmetered download of the same Parquet shards, in one run.

Builds a version of synthetic records with given token counts, publishes it, and starts a real
uvicorn server on loopback. Then, interleaved and repeated so drifting load hits both alike:

* unmetered - a paid order's package: every shard downloaded over its signed URL and decoded
  into an Arrow table on the client (what a buyer needs before training);
* metered   - a metered entitlement streamed as Arrow IPC batches (zstd buffers) of
  ``--batch-tokens`` tokens, each held, posted on ack, with a usage row, audit entries (every
  ledger transfer too), the content digest in the usage row, and the SDK's default check of the
  body digest on the client; the SDK reads one batch ahead.

Reports tokens per second of each (medians of the warm runs, and the first, cold run of each on
its own) and their ratio (target: metered >= 50 % of unmetered), then the server's memory (VmRSS
before, VmHWM peak) while 32 clients stream one entitlement at once, and the 1-minute load.

    .venv/bin/python bench/bench_delivery.py [--records 200000] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pyarrow.parquet as pq

WORDS = ["turbine", "gearbox", "bearing", "风机", "齿轮箱", "temperature", "vibration", "inspection", "blade",
         "maintenance", "operator", "report", "sensor", "anomaly", "检修", "记录", "pressure", "pump", "valve"]


def build(records: int) -> tuple[object, int]:
    from ciyuan.store import VersionBuilder

    b = VersionBuilder("bench", made_by={"tool": "bench_delivery"}, rows_per_shard=50_000)
    total = 0
    for i in range(records):
        n = 40 + (i * 37) % 160
        text = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(n))
        tok = n + n // 3
        total += tok
        b.add({"id": f"b{i:08d}", "text": text, "meta": {"i": i % 7}, "tokens": {"cl100k_base": tok}})
    return b.commit(), total


def vm(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--batch-tokens", type=int, default=4_000_000)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    home = tempfile.mkdtemp(prefix="ciyuan-bench-delivery-")
    os.environ["CIYUAN_HOME"] = home
    os.environ.setdefault("CIYUAN_HOLD_TIMEOUT_S", "600")
    from ciyuan.db import tx
    from ciyuan.delivery import usage
    from ciyuan.ledger import audit, ledger
    from ciyuan.market import accounts, listings, orders, quotes
    from ciyuan.sdk import Client

    t0 = time.perf_counter()
    version, total_tokens = build(args.records)
    build_s = time.perf_counter() - t0

    def setup(sess):
        accounts.create_account(sess, "prov", "provider")
        buyer = accounts.create_account(sess, "buyer", "buyer")
        _, key = accounts.create_key(sess, "buyer")
        ledger.deposit(sess, "bench-dep", buyer.id, 10**14, "CNY")
        return buyer.id, key

    buyer, key = tx.run(setup)
    listing = listings.publish(version.ref, provider="prov", price_per_mtok="12.345678", sample=0)

    def order(metered: bool, tag: str) -> str:
        q = quotes.create_quote(buyer, listing["id"], None)
        if metered:
            o, _ = usage.place_metered_order(buyer, q["id"], tag)
        else:
            o, _ = orders.place_order(buyer, q["id"], tag)
        return o["entitlement"]["id"]

    port = 8700 + os.getpid() % 1000
    code = ("import uvicorn; from ciyuan.api.app import create_app; "
            f"uvicorn.run(create_app(), host='127.0.0.1', port={port}, log_level='warning')")
    proc = subprocess.Popen([sys.executable, "-c", code], env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        client = Client(url, key)
        paid = order(False, "bench-paid")

        def unmetered() -> int:
            pkg = client.package(paid)
            tokens = 0
            for sh in pkg["shards"]:
                data = client.http.get(sh["url"]).content
                t = pq.read_table(io.BytesIO(data))
                tokens += int(t.column("tokens__cl100k_base").to_numpy().sum())
            return tokens

        fresh: list[str] = []

        def metered(fmt: str = "arrow") -> int:
            ent = fresh.pop()  # ordered beforehand: the order itself is not delivery
            tokens = 0
            for b in client.batches(ent, None, max_tokens=args.batch_tokens, fmt=fmt):
                tokens += int(b.table.column("tokens").to_numpy().sum())
            return tokens

        fresh.extend(order(True, f"bench-m-{i}") for i in range(args.repeat + 2))
        # the first run of each is cold (server just started: shards not decoded, digest leaves not
        # computed, plans not built); it warms both paths and is reported on its own
        t = time.perf_counter()
        unmetered()
        cold_unmetered = total_tokens / (time.perf_counter() - t)
        t = time.perf_counter()
        metered()
        cold_metered = total_tokens / (time.perf_counter() - t)
        rates: dict[str, list[float]] = {"unmetered": [], "metered": []}
        for _ in range(args.repeat):
            for name, fn in (("unmetered", unmetered), ("metered", metered)):
                t = time.perf_counter()
                got = fn()
                dt = time.perf_counter() - t
                assert got == total_tokens, (name, got, total_tokens)
                rates[name].append(got / dt)
        t = time.perf_counter()
        assert metered("ndjson") == total_tokens
        ndjson_rate = total_tokens / (time.perf_counter() - t)

        # memory while many clients stream one entitlement, each its own partition
        ent = order(True, "bench-conc")
        rss_before = vm(proc.pid, "VmRSS")
        errs: list[BaseException] = []
        done_tokens = [0] * args.clients

        def one(i: int) -> None:
            c = Client(url, key)
            try:
                for b in c.batches(ent, None, max_tokens=args.batch_tokens // 8, parts=args.clients, part=i):
                    done_tokens[i] += int(b.table.column("tokens").to_numpy().sum())
            except BaseException as exc:  # noqa: BLE001 - reported
                errs.append(exc)
            finally:
                c.close()

        t = time.perf_counter()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(args.clients)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        conc_s = time.perf_counter() - t
        assert not errs, errs[:3]
        assert sum(done_tokens) == total_tokens
        check = tx.run(ledger.check)
        chain = tx.run(audit.verify)  # every transfer of the run was logged as it was made
        result = {
            "records": args.records,
            "tokens": total_tokens,
            "build_s": round(build_s, 1),
            "batch_tokens": args.batch_tokens,
            "unmetered_tokens_per_s": round(statistics.median(rates["unmetered"])),
            "metered_arrow_tokens_per_s": round(statistics.median(rates["metered"])),
            "metered_ndjson_tokens_per_s": round(ndjson_rate),
            "cold_unmetered_tokens_per_s": round(cold_unmetered),
            "cold_metered_tokens_per_s": round(cold_metered),
            "load_average_1m": round(os.getloadavg()[0], 2),
            "ratio_metered_to_unmetered": round(statistics.median(rates["metered"])
                                                / statistics.median(rates["unmetered"]), 3),
            # each repetition runs the two back to back: the median of their ratios shrugs off a
            # burst of load from other work that lands on one mode's runs
            "ratio_median_of_pairs": round(statistics.median(
                m / u for m, u in zip(rates["metered"], rates["unmetered"], strict=True)), 3),
            "concurrent_clients": args.clients,
            "concurrent_tokens_per_s": round(total_tokens / conc_s),
            "server_rss_before_mb": round(rss_before / 2**20, 1),
            "server_peak_rss_mb": round(vm(proc.pid, "VmHWM") / 2**20, 1),
            "ledger_ok": check["ok"],
            "audit_ok": chain["ok"] and chain["unlogged_transfers"] == 0,
            "audit_entries": chain["entries"],
        }
    finally:
        proc.terminate()
        proc.wait(10)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:32} {v}")


if __name__ == "__main__":
    main()
