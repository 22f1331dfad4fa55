"""Training windows per second through ``TokenStream(windows=...)`` against a plain pyarrow + PyAV loop.

A generated LeRobot v3.0 dataset (tests/ingest/episode_gen.py) is ingested, listed and served by
a real uvicorn server on loopback. Then, interleaved and repeated: (a) a paid entitlement streamed
through ``TokenStream(windows=W)`` in the main process (records over HTTP, the video blob through
its signed URL, frames decoded with PyAV, windows stacked); (b) the reference, the same windows
built from the local folder with pyarrow (the Parquet file) and PyAV (every frame of the video file
decoded once). Prints windows/s of each and their ratio (median of ``--repeat``).

    PYTHONPATH=. .venv/bin/python bench/bench_windows.py --episodes 20 --length 150 --repeat 3 --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "ingest"))

from episode_gen import CAM, lerobot_v30  # noqa: E402

FPS = 30.0
WINDOWS = {"observation.state": [-1 / FPS, 0.0], "action": [i / FPS for i in range(10)], CAM: [0.0]}


def reference(root: Path, lengths: list[int]) -> int:
    """The same windows from the local files with pyarrow and PyAV alone; returns their number."""
    import av
    import pyarrow.parquet as pq

    t = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    cols = {k: np.asarray(t.column(k).to_pylist(), np.float32) for k in ("observation.state", "action")}
    with av.open(str(root / "videos" / CAM / "chunk-000" / "file-000.mp4")) as c:
        cols[CAM] = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    n_out, start = 0, 0
    for n in lengths:
        for i in range(n):
            item = {}
            for k, offs in WINDOWS.items():
                idx = np.array([i + round(d * FPS) for d in offs])
                item[k] = cols[k][start + np.clip(idx, 0, n - 1)]
                item[k + "_is_pad"] = (idx < 0) | (idx >= n)
            n_out += 1
        start += n
    return n_out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--length", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="ciyuan-bench-windows-")
    os.environ["CIYUAN_HOME"] = home
    os.environ.setdefault("CIYUAN_HOLD_TIMEOUT_S", "600")
    from typer.testing import CliRunner

    from ciyuan.cli.main import app
    from ciyuan.db import tx
    from ciyuan.ledger import ledger
    from ciyuan.market import accounts, listings, orders, quotes
    from ciyuan.sdk import Client, TokenStream
    from ciyuan.store import resolve
    from ciyuan.store.token_cache import ensure_counts

    lengths = [args.length] * args.episodes
    root = lerobot_v30(Path(home) / "src", lengths=tuple(lengths), fps=FPS)
    res = CliRunner().invoke(app, ["ingest", str(root), "--dataset", "arm", "--json"])
    assert res.exit_code == 0, res.output
    v = resolve("arm")
    ensure_counts(v, "episode-raw")

    def setup(sess):
        accounts.create_account(sess, "prov", "provider")
        buyer = accounts.create_account(sess, "buyer", "buyer")
        _, key = accounts.create_key(sess, "buyer")
        ledger.deposit(sess, "bench-dep", buyer.id, 10**14, "CNY")
        return buyer.id, key

    buyer, key = tx.run(setup)
    listing = listings.publish(v.ref, provider="prov", price_per_mtok="1.00", schedule="episode-raw", sample=0)
    q = quotes.create_quote(buyer, listing["id"], None)
    ent = orders.place_order(buyer, q["id"], "bench")[0]["entitlement"]["id"]
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
        ours, ref = [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            n = sum(1 for _ in TokenStream(client, ent, windows=WINDOWS))
            ours.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            m = reference(root, lengths)
            ref.append(m / (time.perf_counter() - t0))
            assert n == m == sum(lengths)
    finally:
        proc.terminate()
        proc.wait(10)
    out = {"episodes": args.episodes, "length": args.length, "windows": sum(lengths),
           "token_stream_windows_per_s": round(statistics.median(ours), 1),
           "pyarrow_pyav_windows_per_s": round(statistics.median(ref), 1),
           "ratio": round(statistics.median(ours) / statistics.median(ref), 3),
           "load": os.getloadavg()}
    print(json.dumps(out) if args.json else out)


if __name__ == "__main__":
    main()
