"""Knowledge bases verified through application: does a question about a record find it?

Questions are phrases sampled from held-out records and lightly perturbed
(``ciyuan.knowledge.questions``); each must retrieve its own record among the top k of an index
built the way publish builds it (same chunker, BM25 analyzer and, when installed, MiniLM vectors).
Recall@1/5/10 is reported for BM25 alone, vectors alone and their fusion (hybrid), so a buyer sees
what the vectors add over BM25 on this data. The index is built in memory over a seeded sample of
at most ``MAX_RECORDS`` records (every question's own record among them, the rest as
distractors), so the measurement costs the same on a million records as on ten thousand; the
sample size is in the result, and a larger base only makes the task harder.
"""

from __future__ import annotations

import zlib

from ciyuan.config import Settings
from ciyuan.knowledge import questions as qmod
from ciyuan.knowledge import retrieval, vectors

MAX_RECORDS = 5000
QUESTIONS = 200
KS = (1, 5, 10)
SEED = 0


def _sample(version, limit: int) -> tuple[list[dict], int]:
    """Up to ``limit`` text records spread over the version (thinned by a hash of the id, never by stride)."""
    total = version.records
    every = max(1, -(-total // limit))
    out = []
    for rec in version.iter_records(columns=["id", "modality", "text"]):
        if rec.get("text") and zlib.crc32(str(rec["id"]).encode("utf-8", "surrogatepass")) % every == 0:
            out.append(rec)
    return out[:limit], total


def retrieval_utility(version, s: Settings, *, max_records: int = MAX_RECORDS, n_questions: int = QUESTIONS,
                      seed: int = SEED) -> dict | None:
    """Recall@k of questions made from held-out records, by mode; None for a version without text."""
    records, total = _sample(version, max_records)
    if not records:
        return None
    qs = qmod.make_questions(records, n_questions, seed)
    params = retrieval.default_params(s)
    use_vectors = retrieval.default_vectors_mode(s) == "auto" and vectors.embeddings_available()
    idx = retrieval.build_in_memory(records, params, use_vectors=use_vectors)
    modes = ["bm25", "vector", "hybrid"] if use_vectors else ["bm25"]
    recall: dict[str, dict[str, float | None]] = {}
    for mode in modes:
        answers = {q["question"]: [{"record_id": idx.record_ids[row]} for row, _ in
                                   retrieval.rank(idx, q["question"], max(KS), mode)[0]] for q in qs}
        recall[mode] = {f"recall@{k}": qmod.recall_at_k(qs, answers.__getitem__, k) for k in KS}
    out = {
        "method": "recall@k of perturbed phrases of held-out records (ciyuan.knowledge.questions v"
                  f"{qmod.QUESTIONS_VERSION}); hybrid = reciprocal rank fusion of BM25 and MiniLM vectors",
        "questions": len(qs), "records_indexed": len(records), "records": total, "chunks": len(idx.record_ids),
        "seed": seed, "chunker": retrieval.chunker.describe(params), "modes": modes, "recall": recall,
        "note": None if use_vectors else vectors.UNAVAILABLE,
    }
    if use_vectors:
        out["hybrid_minus_bm25@5"] = round(recall["hybrid"]["recall@5"] - recall["bm25"]["recall@5"], 4)
    return out
