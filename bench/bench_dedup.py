"""MinHash near-dedup: ciyuan's near_dedup step against datatrove's MinHash pipeline, same corpus, one run.

Both use word 5-grams, 20 bands x 6 rows and threshold 0.8-ish banding on one core. Quality is
judged against exact Jaccard >= 0.8 on ciyuan's word 5-gram shingles: a removed document is correct
when it has a true partner; recall is removed-and-correct over the documents a perfect dedup removes
(component size - 1 per true component).

    .venv/bin/python bench/bench_dedup.py --docs 4000            # needs datatrove in /tmp/dtvenv
    python3 -m venv /tmp/dtvenv && /tmp/dtvenv/bin/pip install datatrove
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from itertools import combinations
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "curate"))

from corpus import edit_copy, en_prose  # noqa: E402

from ciyuan.curate.pipeline import run_steps  # noqa: E402
from ciyuan.curate.steps import make_step  # noqa: E402

DT_SCRIPT = r"""
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupSignature, MinhashDedupBuckets,
    MinhashDedupCluster, MinhashDedupFilter)
data, work, bands, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cfg = MinhashConfig(n_grams=5, num_buckets=bands, hashes_per_bucket=rows)
t0 = time.perf_counter()
LocalPipelineExecutor([JsonlReader(data), MinhashDedupSignature(f"{work}/sigs", config=cfg)],
                      tasks=1, workers=1, logging_dir=f"{work}/l1").run()
t1 = time.perf_counter()
LocalPipelineExecutor([MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)],
                      tasks=bands, workers=1, logging_dir=f"{work}/l2").run()
LocalPipelineExecutor([MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg)],
                      tasks=1, workers=1, logging_dir=f"{work}/l3").run()
LocalPipelineExecutor([JsonlReader(data), MinhashDedupFilter(f"{work}/remove",
                       exclusion_writer=JsonlWriter(f"{work}/removed", compression=None)),
                       JsonlWriter(f"{work}/kept", compression=None)],
                      tasks=1, workers=1, logging_dir=f"{work}/l4").run()
t2 = time.perf_counter()
print(json.dumps({"signature_s": t1 - t0, "total_s": t2 - t0}))
"""


def make_corpus(n_docs: int, paragraphs: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    out: list[dict] = []
    f = 0
    while len(out) < n_docs:
        base = en_prose(rng, paragraphs)
        out.append({"id": f"f{f}-0", "text": base})
        if rng.random() < 0.5:
            for c in range(1, rng.randint(1, 4) + 1):
                edits = rng.choice([1, 3, 6, 10, 20, 40, 80])
                out.append({"id": f"f{f}-{c}", "text": edit_copy(base, edits, rng, cjk=False)})
        f += 1
    out = out[:n_docs]
    rng.shuffle(out)
    return out


def truth(records: list[dict], threshold: float) -> tuple[set[str], int]:
    """(documents with a true partner, documents a perfect dedup removes)."""
    step = make_step("near_dedup")
    sets = [step.shingles(r["text"]) for r in records]
    index = defaultdict(list)
    for i, s in enumerate(sets):
        for h in s.tolist():
            index[h].append(i)
    shared: dict[tuple[int, int], int] = defaultdict(int)
    for docs in index.values():
        if 1 < len(docs) < 200:
            for a, b in combinations(docs, 2):
                shared[a, b] += 1
    parent = list(range(len(records)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    partnered = set()
    for (a, b), rare in shared.items():
        # shingles in 200+ documents were left out of the counting above; a pair whose rare shingles
        # already overlap this much gets its exact Jaccard on the full sets
        if rare < 0.3 * min(len(sets[a]), len(sets[b])):
            continue
        inter = len(np.intersect1d(sets[a], sets[b], assume_unique=True))
        if inter / (len(sets[a]) + len(sets[b]) - inter) >= threshold:
            partnered.update((records[a]["id"], records[b]["id"]))
            parent[find(a)] = find(b)
    comps: dict[int, int] = defaultdict(int)
    for i in range(len(records)):
        comps[find(i)] += 1
    return partnered, sum(n - 1 for n in comps.values() if n > 1)


def score(removed: set[str], partnered: set[str], removable: int) -> dict:
    good = len(removed & partnered)
    return {
        "removed": len(removed),
        "precision": round(good / len(removed), 4) if removed else 1.0,
        "recall": round(good / removable, 4) if removable else 1.0,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=4000)
    ap.add_argument("--paragraphs", type=int, default=12, help="~60 words each")
    ap.add_argument("--dtpython", default="/tmp/dtvenv/bin/python")
    ap.add_argument("--bands", type=int, default=20)
    ap.add_argument("--rows", type=int, default=6)
    args = ap.parse_args()

    records = make_corpus(args.docs, args.paragraphs)
    mb = sum(len(r["text"].encode()) for r in records) / 1e6
    words = sum(len(r["text"].split()) for r in records) / len(records)
    partnered, removable = truth(records, 0.8)
    result: dict = {"docs": len(records), "mb": round(mb, 1), "mean_words": round(words), "removable": removable}

    # imports and first-call set-up are not timed, as datatrove's imports come before its timer
    run_steps([dict(r, meta={}) for r in records[:20]], [make_step("near_dedup")])
    for verify in ("exact", "signature"):
        step = make_step("near_dedup", {"bands": args.bands, "rows": args.rows, "verify": verify})
        t0 = time.perf_counter()
        out = run_steps([dict(r, meta={}) for r in records], [step])
        dt = time.perf_counter() - t0
        removed = {r["id"] for r in out if "_rejected" in r}
        result[f"ciyuan_{verify}"] = {
            "seconds": round(dt, 2),
            "docs_per_s": round(len(records) / dt),
            **score(removed, partnered, removable),
        }

    if Path(args.dtpython).exists():
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            data.mkdir()
            with open(data / "corpus.jsonl", "w", encoding="utf-8") as fh:
                for r in records:
                    fh.write(json.dumps({"id": r["id"], "text": r["text"]}, ensure_ascii=False) + "\n")
            script = Path(tmp) / "dt.py"
            script.write_text(DT_SCRIPT)
            proc = subprocess.run(
                [args.dtpython, str(script), str(data), f"{tmp}/work", str(args.bands), str(args.rows)],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                result["datatrove_error"] = proc.stderr[-2000:]
            else:
                timing = json.loads(proc.stdout.strip().splitlines()[-1])
                removed = set()
                for p in Path(f"{tmp}/work/removed").glob("*.jsonl"):
                    for line in p.read_text(encoding="utf-8").splitlines():
                        removed.add(json.loads(line)["id"])
                dt = timing["total_s"]
                result["datatrove"] = {
                    "seconds": round(dt, 2),
                    "docs_per_s": round(len(records) / dt),
                    "signature_docs_per_s": round(len(records) / timing["signature_s"]),
                    **score(removed, partnered, removable),
                }
                result["speedup_vs_datatrove"] = round(
                    result["ciyuan_exact"]["docs_per_s"] / result["datatrove"]["docs_per_s"], 1
                )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
