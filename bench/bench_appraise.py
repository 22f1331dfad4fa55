"""Appraisal at scale: time and peak RSS for a 1,000,000-record version, and catalog lookups per second.

Each phase runs in a fresh child process with its own ciyuan home, so the peak RSS printed is
that phase's alone (the version is built in one child, appraised in another).

* ``appraise``: a synthetic labelled corpus (English and Chinese, two topics, 5 % near-copies,
  dates and a label in meta) is written as a version, then ``appraise`` runs on it with a baseline
  version for the perplexity lift.
* ``index``: ``--index`` random MinHash signatures are appended to a catalog index in segments
  of ``--segment`` rows (one per listing, as in production), then ``--queries`` signatures (half
  planted copies with 10 of 128 values changed, half new) are looked up.

    .venv/bin/python bench/bench_appraise.py appraise --records 1000000
    .venv/bin/python bench/bench_appraise.py index --index 10000000 --segment 1000000 --queries 200000
    .venv/bin/python bench/bench_appraise.py index --index 10000000 --segment 1000000 --queries 200000 --compact
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

EN = {
    "finance": ["market", "shares", "price", "bank", "loan", "credit", "interest", "bond", "trading", "profit"],
    "industry": ["turbine", "gearbox", "bearing", "vibration", "sensor", "pump", "valve", "pressure", "motor"],
}
ZH = {
    "finance": list("股票市场银行贷款利率债券交易收入利润"),
    "industry": list("风机齿轮箱轴承振动传感器维护泵阀压力电机"),
}
COMMON_EN = ["the", "a", "of", "and", "to", "in", "is", "for", "on", "with", "was", "at", "by"]


def _text(rng: random.Random, topic: str) -> str:
    if rng.random() < 0.3:
        return "".join(rng.choice(ZH[topic] + list("的了是在和")) for _ in range(rng.randint(30, 90)))
    words = [rng.choice(EN[topic] + COMMON_EN) for _ in range(rng.randint(20, 60))]
    return " ".join(words) + f" ref {rng.randint(0, 10**6)}."


def build(records: int, home: str, name: str, seed: int) -> dict:
    os.environ["CIYUAN_HOME"] = home
    from ciyuan.store import VersionBuilder

    rng = random.Random(seed)
    b = VersionBuilder(name, made_by={"command": "bench"}, rows_per_shard=100_000)
    b.extra = {"license": "CC-BY-4.0", "domain": "industry", "description": "bench corpus"}
    recent: list[str] = []
    t = time.perf_counter()
    for i in range(records):
        topic = "finance" if i % 2 else "industry"
        if recent and rng.random() < 0.05:
            text = rng.choice(recent) + " x"
        else:
            text = _text(rng, topic)
            if i % 997 == 0:
                recent = (recent + [text])[-100:]
        b.add({"id": f"r{i}", "text": text, "meta": {"label": topic, "date": f"20{rng.randint(15, 25)}-06-01"}})
    v = b.commit()
    return {"ref": v.ref, "records": v.records, "build_s": round(time.perf_counter() - t, 1)}


def run_appraise(ref: str, baseline: str, home: str) -> dict:
    os.environ["CIYUAN_HOME"] = home
    from ciyuan.appraise import engine

    t = time.perf_counter()
    ap = engine.appraise(ref, baseline=baseline, provider="bench")
    wall = time.perf_counter() - t
    return {
        "wall_s": round(wall, 1),
        "timing_s": ap["timing_s"],
        "tokens": ap["tokens"],
        "quality": round(ap["quality"]["score"], 4),
        "uniqueness": ap["uniqueness"]["score"],
        "text_lift": (ap["utility"].get("text") or {}).get("relative_drop"),
        "labelled_lift": (ap["utility"].get("labelled") or {}).get("lift"),
        "price_per_mtok": ap["price"]["price_per_mtok"],
    }


def run_index(n: int, segment: int, queries: int, root: str, compact: bool = False) -> dict:
    import numpy as np

    from ciyuan.appraise.uniqueness import NUM_PERM, CatalogIndex

    rng = np.random.default_rng(0)
    index = CatalogIndex(root)
    t = time.perf_counter()
    keep = []
    for s in range(0, n, segment):
        m = min(segment, n - s)
        sig = rng.integers(0, 2**32, size=(m, NUM_PERM), dtype=np.uint32)
        keep.append(sig[rng.choice(m, max(1, queries // 2 // max(1, n // segment)), replace=False)])
        index.add(f"listing-{s // segment}", f"provider-{s // segment}", f"v{s}", sig)
        del sig
    build_s = time.perf_counter() - t
    compact_s = None
    if compact:
        t = time.perf_counter()
        index.compact()
        compact_s = round(time.perf_counter() - t, 1)
    planted = np.concatenate(keep)[: queries // 2]
    change = rng.integers(0, NUM_PERM, size=(len(planted), 10))
    planted[np.arange(len(planted))[:, None], change] = rng.integers(0, 2**32, size=change.shape, dtype=np.uint32)
    fresh = rng.integers(0, 2**32, size=(queries - len(planted), NUM_PERM), dtype=np.uint32)
    q = np.concatenate([planted, fresh])
    t = time.perf_counter()
    found = index.query(q)
    query_s = time.perf_counter() - t
    # provenance mode (what appraisal with --provider uses): every band searched, earliest listing kept
    t = time.perf_counter()
    first = index.query(q, earliest=True)
    earliest_s = time.perf_counter() - t
    disk = sum(f.stat().st_size for f in Path(root).rglob("*") if f.is_file())
    return {
        "signatures": index.size(),
        "segments": len(index._segments()),
        "build_s": round(build_s, 1),
        "compact_s": compact_s,
        "queries": len(q),
        "query_s": round(query_s, 2),
        "lookups_per_s": round(len(q) / query_s),
        "earliest_lookups_per_s": round(len(q) / earliest_s),
        "earliest_agrees": bool(np.array_equal(first > 0, found > 0)),
        "planted_found": float((found[: len(planted)] > 0).mean()),
        "fresh_false_hits": int((found[len(planted) :] > 0).sum()),
        "disk_bytes": disk,
    }


def _child(args: list[str]) -> dict:
    """Run one phase in a fresh interpreter; return its JSON plus its own peak RSS."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res = subprocess.run([sys.executable, __file__, "_child", *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-4000:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["peak_rss_mb"] = round(peak / 1024) if peak > before else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("appraise")
    a.add_argument("--records", type=int, default=1_000_000)
    a.add_argument("--baseline-records", type=int, default=50_000)
    i = sub.add_parser("index")
    i.add_argument("--index", type=int, default=10_000_000)
    i.add_argument("--segment", type=int, default=1_000_000)
    i.add_argument("--queries", type=int, default=200_000)
    i.add_argument("--compact", action="store_true", help="merge all segments into one before the lookups")
    c = sub.add_parser("_child")
    c.add_argument("what")
    c.add_argument("rest", nargs="*")
    args = ap.parse_args()
    if args.cmd == "_child":
        if args.what == "build":
            n, home, name, seed = args.rest
            print(json.dumps(build(int(n), home, name, int(seed))))
        elif args.what == "appraise":
            ref, base, home = args.rest
            print(json.dumps(run_appraise(ref, base, home)))
        elif args.what == "index":
            n, seg, q, root, compact = args.rest
            print(json.dumps(run_index(int(n), int(seg), int(q), root, compact == "1")))
        return
    with tempfile.TemporaryDirectory(prefix="ciyuan-bench-appraise-") as tmp:
        if args.cmd == "appraise":
            home = str(Path(tmp) / "home")
            base = _child(["build", str(args.baseline_records), home, "baseline", "7"])
            built = _child(["build", str(args.records), home, "bench", "1"])
            print(json.dumps({"build": built, "baseline": base}), flush=True)
            res = _child(["appraise", built["ref"], base["ref"], home])
            print(json.dumps({"records": args.records, **res}, indent=1))
        else:
            res = _child(
                [
                    "index",
                    str(args.index),
                    str(args.segment),
                    str(args.queries),
                    str(Path(tmp) / "idx"),
                    "1" if args.compact else "0",
                ]
            )
            print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
