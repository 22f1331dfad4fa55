"""Training windows per second through ``TokenStream(windows=...)`` against a plain pyarrow + PyAV loop.

A generated LeRobot v3.0 dataset (tests/ingest/episode_gen.py) is ingested, listed and served by
a real uvicorn server on loopback. Then, interleaved and repeated: (a) a paid entitlement streamed
through ``TokenStream(windows=W)`` in the main process (records over HTTP, the video blob through
its signed URL, frames decoded with PyAV, windows stacked); (b) the reference, the same windows
built from the local folder with pyarrow (the Parquet file) and PyAV (every frame of the video file
decoded once). Prints windows/s of each and their ratio (median of ``--repeat``).

With ``--lerobot PYTHON`` (a Python with lerobot 0.6, ``make lerobot-venv``) also (c): lerobot's own
``LeRobotDataset(root=..., delta_timestamps=W, video_backend="pyav")`` over our v3.0 export of the
same version (v3.0 -> v3.0 copies the Parquet rows and the video bytes), every item read in order
in a subprocess, timed there after the imports; its windows/s and our ratio to it.

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


LEROBOT = r"""
import json, sys, time
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root, windows = sys.argv[1], json.loads(sys.argv[2])
ds = LeRobotDataset("bench/arm", root=root, delta_timestamps=windows, video_backend="pyav")
t0 = time.perf_counter()
n = 0
for i in range(len(ds)):
    item = ds[i]
    n += 1
print(json.dumps({"windows": n, "seconds": time.perf_counter() - t0}))
"""


def lerobot_rate(python: str, root: Path) -> tuple[int, float]:
    """(windows, windows/s) of LeRobotDataset over ``root``, in lerobot's own Python, offline."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(root.parent / "hf"), "HF_LEROBOT_HOME": str(root.parent / "hf" / "lerobot")}
    env.pop("PYTHONPATH", None)
    run = subprocess.run([python, "-c", LEROBOT, str(root), json.dumps(WINDOWS)], capture_output=True, text=True,
                         env=env, timeout=3600)
    if run.returncode:
        raise SystemExit(f"LeRobotDataset failed: {run.stderr[-3000:]}")
    got = json.loads(run.stdout.strip().splitlines()[-1])
    return got["windows"], got["windows"] / got["seconds"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--length", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--lerobot", default=os.environ.get("CIYUAN_LEROBOT_PYTHON"),
                    help="a Python with lerobot 0.6: also time LeRobotDataset on the same data")
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
    exported = Path(home) / "export"
    if args.lerobot:
        res = CliRunner().invoke(app, ["export", "arm", "--format", "lerobot-v3.0", "--out", str(exported), "--json"])
        assert res.exit_code == 0, res.output

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
        ours, ref, lr = [], [], []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            n = sum(1 for _ in TokenStream(client, ent, windows=WINDOWS))
            ours.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            m = reference(root, lengths)
            ref.append(m / (time.perf_counter() - t0))
            assert n == m == sum(lengths)
            if args.lerobot:
                k, rate = lerobot_rate(args.lerobot, exported)
                assert k == n, (k, n)
                lr.append(rate)
    finally:
        proc.terminate()
        proc.wait(10)
    out = {"episodes": args.episodes, "length": args.length, "windows": sum(lengths),
           "token_stream_windows_per_s": round(statistics.median(ours), 1),
           "pyarrow_pyav_windows_per_s": round(statistics.median(ref), 1),
           "ratio": round(statistics.median(ours) / statistics.median(ref), 3),
           **({"lerobot_dataset_windows_per_s": round(statistics.median(lr), 1),
               "ratio_to_lerobot": round(statistics.median(ours) / statistics.median(lr), 3)} if lr else {}),
           "load": os.getloadavg()}
    print(json.dumps(out) if args.json else out)


if __name__ == "__main__":
    main()
