"""A smaller slice of the real corpus that keeps every planted pair, for a same-run comparison in less time.

Why: at a high load datatrove's pipeline over the whole 124 MB corpus takes longer than a work
session has; a slice keeps both members of all planted pairs (so recall and precision are still
measured on all of them) and fills up with other documents picked by a seeded shuffle, written in
the corpus's own order into the same number of files. Fixed start-up costs weigh more on a slice,
so per-core ratios from it are lower than on the whole corpus.

    .venv/bin/python bench/real_corpus_subset.py --mb 31 --out /tmp/dedup-real-quarter
    .venv/bin/python bench/bench_dedup.py --real /tmp/dedup-real-quarter --synthetic-docs 0 --workers 2
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="/tmp/ciyuan-real-corpus", help="folder made by make_real_corpus.py")
    ap.add_argument("--out", default="/tmp/dedup-real-quarter")
    ap.add_argument("--mb", type=float, default=31.0, help="stop adding documents at this many MB of text")
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    src = Path(args.corpus)
    docs = [json.loads(line) for f in sorted((src / "data").glob("*.jsonl"))
            for line in f.read_text(encoding="utf-8").split("\n") if line]
    pairs = (src / "pairs.jsonl").read_text(encoding="utf-8")
    in_pair = {x for line in pairs.splitlines() for x in (json.loads(line)["original"], json.loads(line)["copy"])}
    others = [d for d in docs if d["id"] not in in_pair]
    random.Random(args.seed).shuffle(others)
    chosen = set(in_pair)
    size = sum(len(d["text"].encode()) for d in docs if d["id"] in in_pair)
    for d in others:
        if size >= args.mb * 1e6:
            break
        chosen.add(d["id"])
        size += len(d["text"].encode())
    keep = [d for d in docs if d["id"] in chosen]
    out = Path(args.out)
    shutil.rmtree(out / "data", ignore_errors=True)
    (out / "data").mkdir(parents=True)
    per = -(-len(keep) // args.files)
    for f in range(args.files):
        with open(out / "data" / f"part-{f:04d}.jsonl", "w", encoding="utf-8") as fh:
            for d in keep[f * per : (f + 1) * per]:
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
    (out / "pairs.jsonl").write_text(pairs, encoding="utf-8")
    print(json.dumps({"documents": len(keep), "mb": round(size / 1e6, 1), "planted_pairs": len(in_pair) // 2}))


if __name__ == "__main__":
    main()
