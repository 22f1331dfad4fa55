"""The whole text-pretrain recipe: MB/s per core and peak RSS at two corpus sizes.

Each size runs in a fresh child process with its own ciyuan home and one worker, so the peak RSS
printed is the whole run's (ingest excluded: the corpus is written as a version first).

    .venv/bin/python bench/bench_curate.py --sizes 10,50
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def child(mb: float, home: str) -> dict:
    os.environ["CIYUAN_HOME"] = home
    sys.path.insert(0, str(ROOT / "tests" / "curate"))
    from corpus import boilerplate_pages, edit_copy, en_prose, zh_prose

    from ciyuan.curate.curate import curate
    from ciyuan.store import VersionBuilder

    rng = random.Random(1)
    b = VersionBuilder("bench", made_by={"command": "bench"}, rows_per_shard=2000)
    size, i, recent = 0, 0, []
    while size < mb * 1e6:
        roll = rng.random()
        if roll < 0.1 and recent:
            text = edit_copy(rng.choice(recent), 3, rng, cjk=False)
        elif roll < 0.15:
            text = rng.choice(boilerplate_pages(rng, 8))
        elif roll < 0.45:
            text = zh_prose(rng, 6)
        else:
            text = en_prose(rng, 6)
        recent = (recent + [text])[-50:] if not text.startswith(("Home", "首页")) else recent
        b.add({"id": f"r{i}", "text": text, "meta": {}})
        size += len(text.encode())
        i += 1
    v = b.commit()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    res = curate(v.ref, "text-pretrain", workers=1)
    dt = time.perf_counter() - t0
    return {
        "mb": round(size / 1e6, 1),
        "records": i,
        "seconds": round(dt, 1),
        "mb_per_s_per_core": round(size / 1e6 / dt, 2),
        "peak_rss_mb_after_ingest": round(rss_before / 1024),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "kept": res["kept"],
        "rejected": res["rejected"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,50", help="corpus sizes in MB")
    ap.add_argument("--child", type=float)
    ap.add_argument("--home")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.home)))
        return
    out = []
    for s in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as home:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", s, "--home", home], capture_output=True, text=True, check=True
            )
            out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(out[-1]), flush=True)


if __name__ == "__main__":
    main()
