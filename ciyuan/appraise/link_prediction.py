"""A graph's value measured by use: link prediction on held-out triples (issue 15, "verified through application").

A small DistMult model (score of ``(h, r, t)`` = sum of ``e_h * w_r * e_t``) is trained on the CPU
with numpy (logistic loss, tail corruption, Adagrad, seeded), on growing subsets of the training
triples; each point of the learning curve is the filtered MRR and Hits@10 of ranking the true tail
of every held-out triple among all entities. Two baselines that use no learned structure stand
beside it: a uniform random ranking (its expected MRR and Hits@10, exact) and the predicate's
object frequency in the training triples (what a lookup table gets without any model). When the
curve rises with data and the model beats the frequency baseline, the graph carries structure an
agent can use; ``lift`` is the relative MRR gain of the full model over the frequency baseline.

Only triples between entities (IRIs or blank nodes) take part; literals are attributes, not links.
At most ``max_triples`` triples are used (a seeded sample), so the cost stays bounded on big graphs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from ciyuan.knowledge import rdf

FRACTIONS = (0.25, 0.5, 1.0)
UPDATES = 600_000


def entity_triples(records: Iterable[dict]) -> list[tuple[str, str, str]]:
    """(subject, predicate, object) of every triple whose object is not a literal, in record order."""
    import pyoxigraph as ox

    out = []
    for rec in records:
        if rec.get("modality") != "graph":
            continue
        for q in rdf.quads_of_text(rec.get("text") or "", source=f"record {rec.get('id')}"):
            if not isinstance(q.object, ox.Literal):
                out.append((str(q.subject), q.predicate.value, str(q.object)))
    return out


class DistMult:
    """DistMult embeddings trained with numpy; ``fit`` is deterministic for a given seed."""

    def __init__(self, n_entities: int, n_relations: int, dim: int = 32, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        scale = 1 / np.sqrt(dim)
        self.E = self.rng.normal(0, scale, (n_entities, dim))
        self.R = self.rng.normal(0, scale, (n_relations, dim))

    def fit(self, triples: np.ndarray, epochs: int = 60, batch: int = 512, negatives: int = 8,
            lr: float = 0.1, l2: float = 0.0) -> None:
        gE, gR = np.full_like(self.E, 1e-8), np.full_like(self.R, 1e-8)
        n_ent = self.E.shape[0]
        for _ in range(epochs):
            order = self.rng.permutation(len(triples))
            for start in range(0, len(order), batch):
                b = triples[order[start : start + batch]]
                h = np.repeat(b[:, 0], negatives + 1)
                r = np.repeat(b[:, 1], negatives + 1)
                t = np.repeat(b[:, 2], negatives + 1).copy()
                y = np.tile(np.r_[1.0, np.zeros(negatives)], len(b))
                neg = y == 0
                t[neg] = self.rng.integers(0, n_ent, int(neg.sum()))
                eh, wr, et = self.E[h], self.R[r], self.E[t]
                s = np.sum(eh * wr * et, axis=1)
                g = (1 / (1 + np.exp(-s)) - y)[:, None] / len(b)  # d loss / d score (logistic)
                dh, dr, dt = g * wr * et + l2 * eh, g * eh * et + l2 * wr, g * eh * wr + l2 * et
                dE = np.zeros_like(self.E)
                dR = np.zeros_like(self.R)
                np.add.at(dE, h, dh)
                np.add.at(dE, t, dt)
                np.add.at(dR, r, dr)
                gE += dE * dE
                gR += dR * dR
                self.E -= lr * dE / np.sqrt(gE)
                self.R -= lr * dR / np.sqrt(gR)

    def tail_scores(self, h: np.ndarray, r: np.ndarray) -> np.ndarray:
        return (self.E[h] * self.R[r]) @ self.E.T


def _ranks(scores: np.ndarray, test: np.ndarray, known: dict[tuple[int, int], set[int]]) -> np.ndarray:
    """Filtered rank of each test triple's tail (1 = best); ties count half, so a constant scorer
    gets the random baseline's expectation rather than rank 1."""
    out = np.empty(len(test))
    for i, (h, r, t) in enumerate(test):
        row = scores[i].copy()
        target = row[t]
        others = [x for x in known.get((int(h), int(r)), ()) if x != t]
        row[others] = -np.inf
        higher = int(np.sum(row > target))
        ties = int(np.sum(row == target)) - 1
        out[i] = 1 + higher + ties / 2
    return out


def _metrics(ranks: np.ndarray) -> dict:
    return {"mrr": round(float(np.mean(1 / ranks)), 6), "hits_at_10": round(float(np.mean(ranks <= 10)), 6)}


def _epochs(n: int, epochs: int | None) -> int:
    """Passes over ``n`` triples: 60, fewer on big inputs (about ``UPDATES`` triple updates a model)."""
    return epochs if epochs is not None else max(5, min(60, UPDATES // max(1, n)))


def link_prediction(triples: list[tuple[str, str, str]], *, seeds: tuple[int, ...] = (0, 1, 2),
                    test_share: float = 0.1, max_triples: int = 20_000, dim: int = 32, epochs: int | None = None,
                    fractions: tuple[float, ...] = FRACTIONS) -> dict:
    """The learning curve and baselines (module docstring); ``why`` instead when the graph is too small.

    The split and the curve use ``seeds[0]``; the full-data model is trained again with each other
    seed, so ``lift`` (relative MRR gain over the frequency baseline) has a 95 % interval.
    """
    from ciyuan.appraise.stats import mean_ci

    seed = seeds[0]
    rng = np.random.default_rng(seed)
    uniq = sorted(set(triples))
    if len(uniq) > max_triples:
        uniq = [uniq[i] for i in sorted(rng.choice(len(uniq), max_triples, replace=False))]
    if len(uniq) < 50:
        return {"why": f"{len(uniq)} entity-to-entity triples: at least 50 are needed to hold some out",
                "triples": len(uniq)}
    ents = {e: i for i, e in enumerate(sorted({x for h, _, t in uniq for x in (h, t)}))}
    rels = {p: i for i, p in enumerate(sorted({p for _, p, _ in uniq}))}
    arr = np.array([(ents[h], rels[p], ents[t]) for h, p, t in uniq], dtype=np.int64)
    perm = rng.permutation(len(arr))
    n_test = max(5, int(len(arr) * test_share))
    test, train = arr[perm[:n_test]], arr[perm[n_test:]]
    seen = set(train[:, 0].tolist()) | set(train[:, 2].tolist())
    test = test[[h in seen and t in seen for h, _, t in test]]  # an unseen entity has no embedding to rank
    if len(test) < 5:
        return {"why": "fewer than 5 held-out triples connect entities seen in training", "triples": len(uniq)}
    known: dict[tuple[int, int], set[int]] = defaultdict(set)
    for h, r, t in arr:
        known[(int(h), int(r))].add(int(t))
    n_ent = len(ents)
    expected_rank = (n_ent + 1) / 2  # uniform ranking among all entities
    random = {"mrr": round(float(np.mean(1 / np.arange(1, n_ent + 1))), 6),
              "hits_at_10": round(min(10, n_ent) / n_ent, 6), "expected_rank": expected_rank}
    freq: dict[int, Counter] = defaultdict(Counter)
    for _, r, t in train:
        freq[int(r)][int(t)] += 1
    fscores = np.zeros((len(test), n_ent))
    for i, (_, r, _) in enumerate(test):
        for t, c in freq[int(r)].items():
            fscores[i, t] = c
    frequency = _metrics(_ranks(fscores, test, known))
    def trained(part: np.ndarray, model_seed: int) -> dict:
        model = DistMult(n_ent, len(rels), dim, model_seed)
        model.fit(part, epochs=_epochs(len(part), epochs))
        scores = np.vstack([model.tail_scores(test[i : i + 256, 0], test[i : i + 256, 1])
                            for i in range(0, len(test), 256)])
        return _metrics(_ranks(scores, test, known))

    curve = []
    order = rng.permutation(len(train))
    for frac in fractions:
        part = train[order[: max(1, int(len(train) * frac))]]
        curve.append({"fraction": frac, "train_triples": len(part), **trained(part, seed)})
    full = [curve[-1]["mrr"]] + [trained(train, s)["mrr"] for s in seeds[1:]]
    base = frequency["mrr"]
    lift = mean_ci([(m - base) / base for m in full]) if base > 0 else None
    return {
        "model": {"name": "DistMult", "dim": dim, "epochs": _epochs(len(train), epochs), "seeds": list(seeds),
                  "loss": "logistic", "negatives": 8, "optimizer": "Adagrad"},
        "triples": len(uniq), "entities": n_ent, "relations": len(rels),
        "train_triples": len(train), "test_triples": len(test), "ranking": "filtered, tail, all entities",
        "curve": curve, "baselines": {"random": random, "predicate_frequency": frequency},
        "full_data_mrr_by_seed": full, "lift": lift,
        "rises_with_data": curve[-1]["mrr"] > curve[0]["mrr"],
    }


def graph_appraisal(version: Any, seeds: tuple[int, ...] = (0, 1, 2)) -> dict:
    """The graph part of an appraisal: quality indicators, GB/T 36344 mapping, link prediction."""
    from ciyuan.knowledge.quality import version_quality

    q = version_quality(version)
    lp = link_prediction(entity_triples(version.iter_records(columns=["id", "modality", "text"])), seeds=seeds)
    return {"quality": q["indicators"], "gbt_36344": q["gbt_36344"], "link_prediction": lp}
