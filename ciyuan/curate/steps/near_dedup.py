"""Near-duplicate removal: MinHash (rensa) + LSH banding, candidate pairs verified, union-find clusters.

Round 0 reads every shard and returns MinHash signatures; the driver bands them into buckets,
turns bucket-mates into candidate pairs and drops pairs whose signatures clearly disagree. With
``verify: exact`` a second round fetches the shingle sets of the remaining candidates only and
keeps a pair when its true Jaccard similarity reaches the threshold (so precision does not depend
on the signature's estimation error). Verified pairs are joined into connected components; each
component keeps one record by ``keep`` and marks the others rejected.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from ciyuan.curate.steps.base import GlobalStep, Param
from ciyuan.curate.text import mix64, stable_hash, token_hashes, window_hashes
from ciyuan.errors import InvalidInput

_BATCH = 512
# Pairs whose signature agreement is this far below the threshold are not worth an exact check:
# with 128 permutations that is more than five standard deviations of the estimate.
_PREFILTER_SLACK = 0.25


def _rensa():
    import rensa

    return rensa.RMinHash


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while parent.get(x, x) != root:
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # the smaller index is the root so components are labelled deterministically
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


class NearDedup(GlobalStep):
    name = "near_dedup"
    description = "MinHash LSH near-duplicate removal with verified pairs and connected components."
    params = (
        Param("ngram", "int", 5, "Shingle size in words for spaced text."),
        Param("cjk_ngram", "int", 5, "Shingle size in characters for Chinese/Japanese text."),
        Param("num_perm", "int", 128, "MinHash permutations (signature length)."),
        Param("bands", "int", 20, "LSH bands; bands x rows must not exceed num_perm."),
        Param("rows", "int", 6, "Signature rows per band."),
        Param("threshold", "float", 0.8, "Jaccard similarity at or above which two records are duplicates."),
        Param(
            "verify",
            "str",
            "exact",
            "How candidate pairs are confirmed: exact Jaccard on shingles "
            "(second read of candidates only) or the MinHash estimate.",
            ("exact", "signature"),
        ),
        Param("keep", "str", "first", "Which record of a cluster survives.", ("first", "longest", "best_quality")),
        Param("seed", "int", 42, "MinHash seed (part of the recipe, so results are reproducible)."),
        Param(
            "max_bucket_pairs",
            "int",
            32,
            "Buckets up to this size yield all pairs; larger ones a star and a chain (still connected).",
        ),
    )

    def setup(self) -> None:
        super().setup()
        if self.bands * self.rows > self.num_perm or self.bands < 1 or self.rows < 1:
            raise InvalidInput(
                f"near_dedup: bands x rows = {self.bands * self.rows} exceeds num_perm {self.num_perm}",
                hint="lower bands or rows, or raise num_perm",
            )
        if not 0 < self.threshold <= 1:
            raise InvalidInput("near_dedup: threshold must be in (0, 1]", hint="e.g. threshold: 0.8")
        self._pending: dict | None = None

    # shingles --------------------------------------------------------------------------------

    def _token_hashes(self, texts: list[str]) -> list[tuple[np.ndarray, int]]:
        return token_hashes(texts, self.ngram, self.cjk_ngram)

    def shingles(self, text: str) -> np.ndarray:
        """Sorted distinct shingle hashes of ``text`` (the sets whose Jaccard similarity we judge)."""
        toks, n = self._token_hashes([text])[0]
        return np.unique(window_hashes(toks, n))

    def _signatures(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(signature matrix for texts with shingles, boolean mask of which texts have them)."""
        sh = [window_hashes(t, n) for t, n in self._token_hashes(texts)]
        has = np.array([len(s) > 0 for s in sh], dtype=bool)
        rows = [s for s in sh if len(s)]
        if not rows:
            return np.zeros((0, self.num_perm), dtype=np.uint32), has
        offsets = np.zeros(len(rows) + 1, dtype=np.uint64)
        np.cumsum([len(s) for s in rows], out=offsets[1:])
        flat = np.concatenate(rows)
        mat = _rensa().digest_matrix_from_flat_token_hashes(flat, offsets, self.num_perm, self.seed)
        return np.asarray(mat.to_rows(), dtype=np.uint32).reshape(len(rows), self.num_perm), has

    # rounds ------------------------------------------------------------------------------------

    def scan(self, round_: int, records: Iterable[dict], shard: int, context: Any) -> Any:
        if round_ == 0:
            return self._scan_signatures(records)
        need = context["need"]
        return {r["id"]: self.shingles(r.get("text") or "") for r in records if r["id"] in need}

    def _scan_signatures(self, records: Iterable[dict]) -> dict:
        ids: list[str] = []
        lengths: list[int] = []
        quality: list[float] = []
        sigs: list[np.ndarray] = []
        for batch in _batches(records, _BATCH):
            texts = [r.get("text") or "" for r in batch]
            sig, has = self._signatures(texts)
            sigs.append(sig)
            for r, t, h in zip(batch, texts, has, strict=True):
                if h:
                    ids.append(r["id"])
                    lengths.append(len(t))
                    quality.append(float((r.get("meta") or {}).get("quality_score", 0.0) or 0.0))
        sig = np.concatenate(sigs) if sigs else np.zeros((0, self.num_perm), dtype=np.uint32)
        return {
            "ids": ids,
            "length": np.asarray(lengths, dtype=np.int64),
            "quality": np.asarray(quality, dtype=np.float32),
            "sig": sig,
        }

    def reduce(self, round_: int, parts: list, context: Any) -> tuple[bool, Any]:
        if round_ == 0:
            ids = [i for p in parts for i in p["ids"]]
            sig = np.concatenate([p["sig"] for p in parts]) if parts else np.zeros((0, self.num_perm), dtype=np.uint32)
            length = np.concatenate([p["length"] for p in parts]) if parts else np.zeros(0, np.int64)
            quality = np.concatenate([p["quality"] for p in parts]) if parts else np.zeros(0, np.float32)
            a, b = self.candidate_pairs(sig)
            est = _agreement(sig, a, b)
            self._pending = {"ids": ids, "length": length, "quality": quality, "candidates": len(a)}
            if self.verify == "signature":
                keep = est >= self.threshold
                return True, self._plan(a[keep], b[keep], est[keep])
            keep = est >= self.threshold - _PREFILTER_SLACK
            a, b = a[keep], b[keep]
            self._pending.update(a=a, b=b)
            need = {ids[i] for i in np.union1d(a, b).tolist()}
            if not need:
                return True, self._plan(a, b, est[keep])
            return False, {"need": need}
        sets: dict[str, np.ndarray] = {}
        for p in parts:
            sets.update(p)
        pend = self._pending
        ids, a, b = pend["ids"], pend["a"], pend["b"]
        sims = np.empty(len(a), dtype=np.float64)
        for k, (i, j) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
            sims[k] = _jaccard(sets[ids[i]], sets[ids[j]])
        keep = sims >= self.threshold
        return True, self._plan(a[keep], b[keep], sims[keep])

    def candidate_pairs(self, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index pairs (a < b) that share at least one LSH band bucket."""
        n = len(sig)
        found: list[np.ndarray] = []
        if n < 2:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        for band in range(self.bands):
            cols = sig[:, band * self.rows : (band + 1) * self.rows].astype(np.uint64)
            with np.errstate(over="ignore"):
                key = np.zeros(n, dtype=np.uint64)
                for c in range(self.rows):
                    key = key * np.uint64(0x100000001B3) + cols[:, c]
            key = mix64(key)
            order = np.argsort(key, kind="stable")
            sk = key[order]
            brk = np.nonzero(sk[1:] != sk[:-1])[0] + 1
            starts = np.concatenate(([0], brk))
            ends = np.concatenate((brk, [n]))
            multi = np.nonzero(ends - starts > 1)[0]
            for g in multi.tolist():
                members = np.sort(order[starts[g] : ends[g]])
                found.append(self._group_pairs(members, n))
        if not found:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        codes = np.unique(np.concatenate(found))
        return codes // n, codes % n

    def _group_pairs(self, members: np.ndarray, n: int) -> np.ndarray:
        m = len(members)
        if m <= self.max_bucket_pairs:
            i, j = np.triu_indices(m, k=1)
            return members[i].astype(np.int64) * n + members[j]
        star = members[0].astype(np.int64) * n + members[1:]
        chain = members[:-1].astype(np.int64) * n + members[1:]
        return np.concatenate((star, chain))

    def _plan(self, a: np.ndarray, b: np.ndarray, sims: np.ndarray) -> dict:
        pend = self._pending or {}
        ids, length, quality = pend.get("ids", []), pend.get("length"), pend.get("quality")
        uf = _UnionFind()
        for i, j in zip(a.tolist(), b.tolist(), strict=True):
            uf.union(i, j)
        comps: dict[int, list[int]] = {}
        for x in sorted(uf.parent.keys() | set(a.tolist())):
            comps.setdefault(uf.find(x), []).append(x)
        cluster: dict[str, str] = {}
        drop: dict[str, tuple[str, str, int]] = {}
        top = []
        for members in comps.values():
            if len(members) < 2:
                continue
            keeper = self._keeper(members, length, quality)
            cid = f"nd-{stable_hash(ids[keeper]):016x}"[:15]
            for x in members:
                cluster[ids[x]] = cid
                if x != keeper:
                    drop[ids[x]] = (cid, ids[keeper], len(members))
            top.append((len(members), cid, ids[keeper], [ids[x] for x in members[:5]]))
        top.sort(key=lambda t: (-t[0], t[1]))
        return {
            "cluster": cluster,
            "drop": drop,
            "pairs": len(a),
            "candidates": pend.get("candidates", 0),
            "top": [{"cluster": c, "size": s, "keeper": k, "members": m} for s, c, k, m in top[:10]],
        }

    def _keeper(self, members: list[int], length: np.ndarray, quality: np.ndarray) -> int:
        if self.keep == "longest":
            return min(members, key=lambda x: (-int(length[x]), x))
        if self.keep == "best_quality":
            return min(members, key=lambda x: (-float(quality[x]), -int(length[x]), x))
        return min(members)

    # filter pass ---------------------------------------------------------------------------------

    def bind(self, plan: dict) -> None:
        super().bind(plan)
        self._examples = {m for t in plan["top"] for m in t["members"]}
        self.stats.extra["largest_clusters"] = plan["top"]
        self.stats.extra["examples"] = {}
        self.stats.counters["clusters"] = 0

    def apply_plan(self, record: dict) -> None:
        rid = record["id"]
        cid = self.plan["cluster"].get(rid)
        if cid is None:
            return
        record.setdefault("meta", {})["dup_cluster"] = cid
        if rid in self._examples:
            self.stats.extra["examples"][rid] = (record.get("text") or "")[:300]
        hit = self.plan["drop"].get(rid)
        if hit is None:
            self.stats.counters["clusters"] += 1
            return
        cid, keeper, size = hit
        self.reject(record, "near_duplicate", f"near_dedup: cluster {cid} of {size}, kept {keeper} (keep={self.keep})")


def _batches(records: Iterable[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for r in records:
        batch.append(r)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _agreement(sig: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Share of equal signature slots per pair: the MinHash estimate of Jaccard similarity."""
    out = np.empty(len(a), dtype=np.float64)
    for s in range(0, len(a), chunk):
        out[s : s + chunk] = (sig[a[s : s + chunk]] == sig[b[s : s + chunk]]).mean(axis=1)
    return out


def _jaccard(x: np.ndarray, y: np.ndarray) -> float:
    inter = len(np.intersect1d(x, y, assume_unique=True))
    union = len(x) + len(y) - inter
    return inter / union if union else 1.0
