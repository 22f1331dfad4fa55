"""Near-dedup, like with like: ciyuan through its CLI against datatrove's own MinHash pipeline.

Both tools go from the same JSONL files to JSONL files through their public entry points, each
in a fresh process (imports, start-up and file I/O are all counted):

* **ciyuan**: ``ciyuan ingest DATA`` -> ``ciyuan curate --recipe (normalize, exact_dedup,
  near_dedup with its defaults: 20 bands x 6 rows, exact verification, threshold 0.8)`` ->
  ``ciyuan export --format jsonl``. ``curate`` alone is the near-dedup figure; with ingest and
  export it is the whole files-to-files run.
* **datatrove**: its 4-stage MinHash pipeline (signatures, buckets, clusters, filter with a
  JSONL writer for kept and for removed documents) with ``MinhashConfig()`` defaults: 5-grams,
  14 buckets x 8 hashes. It has no normalisation or exact stage of its own.

Each corpus has planted near-duplicate pairs (``pairs.jsonl``) and no other pair at the
threshold (see bench/make_real_corpus.py), so quality is exact: a pair is *found* when at least
one of its two documents is removed; recall = found / planted; precision = found / removed (every
removal beyond one per planted pair is a false positive).

Time is reported as wall seconds and as CPU seconds (user + system of the tool's processes and
all their children, from ``getrusage``): on a shared machine the CPU seconds are the steadier
figure, and "per core" means the CPU-seconds ratio. Both tools get the same ``--workers``.

    python3 -m venv /tmp/dtvenv && /tmp/dtvenv/bin/pip install datatrove==0.10.1 spacy orjson regex \
        tokenizers nltk "xxhash<3.5"
    .venv/bin/python bench/make_real_corpus.py --out /tmp/ciyuan-real-corpus --plant 500
    .venv/bin/python bench/bench_dedup.py --real /tmp/ciyuan-real-corpus --synthetic-docs 10000 --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "curate"))
sys.path.insert(0, str(ROOT / "bench"))

RECIPE = """name: bench-near-dedup
steps:
  - normalize
  - exact_dedup
  - near_dedup
"""

DT_SCRIPT = r"""
import sys
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers import JsonlWriter
from datatrove.pipeline.dedup.minhash import (MinhashConfig, MinhashDedupSignature, MinhashDedupBuckets,
    MinhashDedupCluster, MinhashDedupFilter)
data, work, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
tasks = int(sys.argv[4])
cfg = MinhashConfig()  # the defaults: 5-grams, 14 buckets x 8 hashes
if __name__ == "__main__":
    s1 = LocalPipelineExecutor([JsonlReader(data), MinhashDedupSignature(f"{work}/sigs", config=cfg)],
                               tasks=tasks, workers=workers, logging_dir=f"{work}/l1")
    s2 = LocalPipelineExecutor([MinhashDedupBuckets(f"{work}/sigs", f"{work}/buckets", config=cfg)],
                               tasks=cfg.num_buckets, workers=workers, logging_dir=f"{work}/l2", depends=s1)
    s3 = LocalPipelineExecutor([MinhashDedupCluster(f"{work}/buckets", f"{work}/remove", config=cfg)],
                               tasks=1, workers=1, logging_dir=f"{work}/l3", depends=s2)
    s4 = LocalPipelineExecutor([JsonlReader(data), MinhashDedupFilter(f"{work}/remove",
                                exclusion_writer=JsonlWriter(f"{work}/removed", compression=None)),
                                JsonlWriter(f"{work}/kept", compression=None)],
                               tasks=tasks, workers=workers, logging_dir=f"{work}/l4", depends=s3)
    s4.run()
"""


def _subreaper() -> None:
    """Adopt orphaned descendants (Linux PR_SET_CHILD_SUBREAPER), so their CPU time is counted too.

    A pool worker whose parent exits without waiting for it is re-parented; without this its CPU
    time reaches no ``getrusage`` of ours (datatrove's pipeline measured 1 CPU second that way).
    """
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        print("warning: no subreaper; CPU seconds may miss orphaned workers", file=sys.stderr)


def _reap_orphans() -> None:
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return


def _run(cmd: list[str], env: dict | None = None) -> dict:
    """Run one command; wall and CPU seconds of it and of every process it started."""
    _reap_orphans()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    _reap_orphans()  # workers the command left behind: wait for them, they are part of its run
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "stdout": proc.stdout}


def _ids(folder: Path) -> set[str]:
    out = set()
    for p in folder.glob("*.jsonl"):
        with open(p, encoding="utf-8") as fh:
            out.update(json.loads(line)["id"] for line in fh)
    return out


def score(removed: set[str], pairs: list[dict]) -> dict:
    found = sum(1 for p in pairs if p["original"] in removed or p["copy"] in removed)
    return {
        "removed": len(removed),
        "pairs_found": found,
        "recall": round(found / len(pairs), 4) if pairs else 1.0,
        "precision": round(found / len(removed), 4) if removed else 1.0,
    }


def run_ciyuan(data: Path, work: Path, workers: int) -> dict:
    home = work / "home"
    env = {**os.environ, "CIYUAN_HOME": str(home), "PYTHONPATH": str(ROOT)}
    env.pop("CIYUAN_DATABASE_URL", None)
    env.pop("CIYUAN_STORAGE_URL", None)
    cli = [sys.executable, "-m", "ciyuan.cli.main"]
    recipe = work / "recipe.yaml"
    recipe.write_text(RECIPE)
    files = [str(p) for p in sorted(data.glob("*.jsonl"))]
    ing = _run([*cli, "ingest", *files, "--dataset", "bench", "--workers", str(workers), "--json"], env)
    cur = _run([*cli, "curate", "bench", "--recipe", str(recipe), "--workers", str(workers), "--json"], env)
    res = json.loads(cur["stdout"])
    out = work / "kept"
    out.mkdir()
    exp = _run([*cli, "export", res["ref"], "--format", "jsonl", "--out", str(out / "kept.jsonl"), "--json"], env)
    kept = _ids(out)
    steps = {s["step"]: s["rejected"] for s in res["steps"]}
    return {
        "ingest": {k: v for k, v in ing.items() if k != "stdout"},
        "curate": {k: v for k, v in cur.items() if k != "stdout"},
        "export": {k: v for k, v in exp.items() if k != "stdout"},
        "rejected_by_step": steps,
        "kept": len(kept),
        "_kept": kept,
    }


def run_datatrove(data: Path, work: Path, workers: int, dtpython: str) -> dict:
    script = work / "dt.py"
    script.write_text(DT_SCRIPT)
    tasks = max(workers, len(list(data.glob("*.jsonl"))))
    t = _run([dtpython, str(script), str(data), str(work / "dt"), str(workers), str(tasks)])
    return {"total": {k: v for k, v in t.items() if k != "stdout"}, "_removed": _ids(work / "dt" / "removed"),
            "_kept": _ids(work / "dt" / "kept")}  # fmt: skip


def compare(name: str, data: Path, pairs: list[dict], workers: int, dtpython: str, keep: bool) -> dict:
    all_ids = _ids(data)
    mb = sum(p.stat().st_size for p in data.glob("*.jsonl")) / 1e6
    result: dict = {"corpus": name, "docs": len(all_ids), "mb": round(mb, 1), "planted_pairs": len(pairs),
                    "workers": workers}  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix=f"bench-dedup-{name}-"))
    try:
        (work / "ciyuan").mkdir()
        cy = run_ciyuan(data, work / "ciyuan", workers)
        removed = all_ids - cy.pop("_kept")
        cy.update(score(removed, pairs))
        files_to_files = {k: round(sum(cy[s][k] for s in ("ingest", "curate", "export")), 2)
                          for k in ("wall_s", "cpu_s")}  # fmt: skip
        cy["files_to_files"] = files_to_files
        result["ciyuan"] = cy
        if Path(dtpython).exists():
            (work / "dt").mkdir()
            dt = run_datatrove(data, work, workers, dtpython)
            kept = dt.pop("_kept")
            dt.update(score(dt.pop("_removed"), pairs))
            dt["kept"] = len(kept)
            result["datatrove"] = dt
            d = dt["total"]
            with_ingest = {k: cy["ingest"][k] + cy["curate"][k] for k in ("wall_s", "cpu_s")}
            result["datatrove_over_ciyuan"] = {
                label: {"wall": round(d["wall_s"] / c["wall_s"], 2), "per_core": round(d["cpu_s"] / c["cpu_s"], 2)}
                for label, c in (("curate", cy["curate"]), ("ingest_curate", with_ingest),
                                 ("files_to_files", files_to_files))  # fmt: skip
            }
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            result["work"] = str(work)
    return result


def synthetic(folder: Path, docs: int, plant: int, seed: int = 1) -> list[dict]:
    """Distinct prose documents plus ``plant`` edited copies (Jaccard 0.85-0.98), as JSONL files."""
    from corpus import en_prose
    from make_real_corpus import edit, jaccard, shingles

    rng = random.Random(seed)
    base = [{"id": f"s{i:06d}", "text": en_prose(rng, 12)} for i in range(docs - plant)]
    pairs, copies = [], []
    for k, i in enumerate(rng.sample(range(len(base)), plant)):
        a = shingles(base[i]["text"])
        rate = 0.01
        for _attempt in range(8):
            text, _n = edit(base[i]["text"], rate, rng)
            j = jaccard(a, shingles(text))
            if 0.85 <= j <= 0.98:
                break
            rate = rate * 0.6 if j < 0.85 else rate * 1.5
        else:
            continue
        copies.append({"id": f"c{k:05d}", "text": text})
        pairs.append({"original": base[i]["id"], "copy": f"c{k:05d}", "jaccard": round(j, 4)})
    recs = base + copies
    rng.shuffle(recs)
    folder.mkdir(parents=True, exist_ok=True)
    per = -(-len(recs) // 8)
    for f in range(8):
        with open(folder / f"part-{f:04d}.jsonl", "w", encoding="utf-8") as fh:
            for r in recs[f * per : (f + 1) * per]:
                fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", default="/tmp/ciyuan-real-corpus", help="folder made by bench/make_real_corpus.py")
    ap.add_argument("--synthetic-docs", type=int, default=10000, help="0 skips the synthetic corpus")
    ap.add_argument("--plant", type=int, default=500)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--dtpython", default="/tmp/dtvenv/bin/python")
    ap.add_argument("--keep", action="store_true", help="keep the work folders")
    ap.add_argument("--out", help="also write the results as JSON here")
    args = ap.parse_args()
    _subreaper()

    results = []
    real = Path(args.real)
    if (real / "pairs.jsonl").exists():
        pairs = [json.loads(line) for line in (real / "pairs.jsonl").read_text().splitlines()]
        results.append(compare("real", real / "data", pairs, args.workers, args.dtpython, args.keep))
        print(json.dumps(results[-1], indent=2), flush=True)
    else:
        print(f"no real corpus at {real}: run bench/make_real_corpus.py first", file=sys.stderr)
    if args.synthetic_docs:
        with tempfile.TemporaryDirectory(prefix="bench-dedup-synth-") as tmp:
            pairs = synthetic(Path(tmp) / "data", args.synthetic_docs, args.plant)
            results.append(compare("synthetic", Path(tmp) / "data", pairs, args.workers, args.dtpython, args.keep))
            print(json.dumps(results[-1], indent=2), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
