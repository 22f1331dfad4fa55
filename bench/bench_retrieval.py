"""Knowledge-base retrieval at 100,000 chunks: latency of hybrid, BM25 and vector search, and recall@5.

One run, one machine state, so the modes compare with each other:

* A version of ``--chunks`` short synthetic maintenance notes (English and Chinese, one chunk each:
  a topic, a turbine, a part, a fault and a few rarer words) is written with the store's builder and
  its index is built by ``ensure_index`` (BM25 part timed).
* Latency: ``retrieval.search`` end to end (version lookup, index reuse check, ranking, chunk
  rows) for ``--queries`` questions per mode; p50/p99 in ms. Embedding all chunks with MiniLM
  takes about an hour at this machine's load (~25 sentences/s), so unless ``--embed-all`` is
  given the vector index holds MiniLM embeddings of the first ``--embed`` chunks and random unit
  vectors for the rest: the HNSW search is over the full ``--chunks`` vectors (what latency
  depends on) and the query is embedded by MiniLM as in production.
* Recall@5: questions made by ``ciyuan.knowledge.questions`` from held-out records must find their
  record. BM25 is measured on the full base; BM25, vectors and hybrid side by side on an
  index of the first ``--embed`` records built entirely from real embeddings (``build_in_memory``).

    PYTHONPATH=. .venv/bin/python bench/bench_retrieval.py --chunks 100000 --queries 300 --embed 3000 --json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np

TOPICS = {
    "en": ["gearbox", "bearing", "blade", "yaw", "pitch", "converter", "generator", "tower", "brake", "sensor"],
    "zh": ["齿轮箱", "轴承", "叶片", "偏航", "变桨", "变流器", "发电机", "塔筒", "制动器", "传感器"],
}
FAULTS = {
    "en": ["overheated", "vibrated", "leaked oil", "tripped", "cracked", "drifted", "stalled", "corroded"],
    "zh": ["温度过高", "振动超标", "漏油", "跳闸", "出现裂纹", "读数漂移", "卡滞", "锈蚀"],
}


def _rare(rng: random.Random, lang: str) -> str:
    if lang == "zh":
        return "".join(chr(0x4E00 + rng.randrange(6000)) for _ in range(2))
    return "".join(rng.choice("bcdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))


def note(i: int, rng: random.Random) -> dict:
    lang = "zh" if i % 3 == 0 else "en"
    t, f = rng.choice(TOPICS[lang]), rng.choice(FAULTS[lang])
    rare = [_rare(rng, lang) for _ in range(5)]
    if lang == "zh":
        text = (f"{rng.randint(1, 400)}号风机{t}{f}，现场代码{rare[0]}{rare[1]}，"
                f"已由{rare[2]}班组处理，备件{rare[3]}，复查{rare[4]}。")
    else:
        text = (f"Turbine {rng.randint(1, 400)}: the {t} {f} near unit {rare[0]} {rare[1]}; crew {rare[2]} "
                f"replaced part {rare[3]} and checked {rare[4]} afterwards.")
    return {"id": f"n{i:07d}", "text": text, "meta": {"language": lang}}


def pct(xs: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(xs) * 1000, q)), 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--embed", type=int, default=3000, help="records embedded for real (recall base, and vectors)")
    ap.add_argument("--embed-all", action="store_true", help="embed every chunk (about an hour per 100k here)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="bench-kb-"))
    os.environ["CIYUAN_HOME"] = str(home / "home")
    os.environ["CIYUAN_KB_VECTORS"] = "off"  # the stored index is BM25; vectors are attached below
    os.environ.setdefault("CIYUAN_TORCH_THREADS", "1")  # 3x faster batches on a saturated machine
    from ciyuan.knowledge import retrieval, vectors
    from ciyuan.knowledge.questions import make_questions, recall_at_k
    from ciyuan.store import VersionBuilder

    out: dict = {"chunks": args.chunks, "loadavg_start": Path("/proc/loadavg").read_text().split()[:3]}
    rng = random.Random(15)
    recs = [note(i, rng) for i in range(args.chunks)]
    t0 = time.perf_counter()
    b = VersionBuilder("kb-bench", made_by={"command": "bench"})
    for r in recs:
        b.add(r)
    v = b.commit()
    out["version_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    m = retrieval.ensure_index(None, v.id)
    out["index_bm25_s"] = round(time.perf_counter() - t0, 1)
    assert m["chunks"] == args.chunks, m["chunks"]

    n_embed = args.chunks if args.embed_all else min(args.embed, args.chunks)
    texts = [r["text"] for r in recs]
    t0 = time.perf_counter()
    real = vectors.minilm_embeddings(texts[:n_embed], batch_size=128)
    out["embed_per_s"] = round(n_embed / (time.perf_counter() - t0), 1)
    noise = np.random.default_rng(0).standard_normal((args.chunks - n_embed, vectors.DIM)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True) + 1e-12
    t0 = time.perf_counter()
    vix = vectors.VectorIndex.from_vectors(np.concatenate([real, noise]))
    out["index_vectors_s"] = round(time.perf_counter() - t0, 1)
    out["vectors_real"] = n_embed
    loaded = retrieval._load(v.s, v, m)
    loaded.vectors = vix  # attach: search below runs the production path with these vectors

    questions = make_questions(recs, args.queries, seed=1)
    for mode in ("bm25", "vector", "hybrid"):
        retrieval.search(None, v.id, questions[0]["question"], 5, mode)  # warm
        lat = []
        for q in questions:
            t = time.perf_counter()
            retrieval.search(None, v.id, q["question"], 5, mode)
            lat.append(time.perf_counter() - t)
        out[f"{mode}_p50_ms"], out[f"{mode}_p99_ms"] = pct(lat, 50), pct(lat, 99)
    out["recall@5_bm25_full_base"] = recall_at_k(
        questions, lambda q: retrieval.search(None, v.id, q, 5, "bm25"), 5)

    sub = recs[:n_embed]
    mem = retrieval.build_in_memory(sub, use_vectors=False)
    mem.vectors = vectors.VectorIndex.from_vectors(real)
    sub_q = make_questions(sub, min(args.queries, n_embed), seed=2)
    for mode in ("bm25", "vector", "hybrid"):
        out[f"recall@5_{mode}_embedded_base"] = recall_at_k(
            sub_q, lambda q, mode=mode: [{"record_id": mem.record_ids[r]} for r, _ in
                                         retrieval.rank(mem, q, 5, mode)[0]], 5)
    out["recall_base"] = n_embed
    out["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    out["hybrid_p99_target_ms"] = 50
    out["hybrid_p99_met"] = out["hybrid_p99_ms"] < 50
    print(json.dumps(out, indent=1) if args.json else out)


if __name__ == "__main__":
    main()
