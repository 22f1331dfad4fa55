"""Near-duplicate removal: MinHash (:mod:`ciyuan.curate.minhash`) + LSH bands, verified pairs, union-find.

Round 0 reads every shard and writes its MinHash signatures and LSH band keys to the scan's
scratch folder (:mod:`ciyuan.curate.scratch`); the driver reads the band keys one hash partition
at a time, turns bucket-mates into candidate pairs and drops pairs whose signatures clearly
disagree. With ``verify: exact`` a second round writes the shingle sets of the remaining
candidates only, and a pair is kept when its true Jaccard similarity reaches the threshold (so
precision does not depend on the signature's estimation error). Verified pairs are joined into
connected components; each component keeps one record by ``keep`` and marks the others rejected.
The driver holds only candidate pairs and cluster members, never a signature per record.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ciyuan.curate import minhash
from ciyuan.curate.scratch import ROW_BITS, Scratch, key_groups, node, partitions_for, split, unique_pairs
from ciyuan.curate.steps.base import TEXT, GlobalStep, Param, batched
from ciyuan.curate.text import stable_hash
from ciyuan.errors import InvalidInput

_BATCH = 512
# A signing batch also ends at this many characters: shingling takes about 40 bytes a character
# (code points, prefix hashes, n-gram hashes), so 512 long documents would take hundreds of MB.
_BATCH_CHARS = 1 << 20
# Pairs whose signature agreement is this far below the threshold are not worth an exact check:
# with 128 permutations that is more than five standard deviations of the estimate.
_PREFILTER_SLACK = 0.25


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
    modalities = TEXT
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
        minhash.prepare()  # in the driver, before workers fork: they inherit the tables

    # shingles --------------------------------------------------------------------------------

    def shingles(self, text: str) -> np.ndarray:
        """Sorted distinct shingle hashes of ``text`` (the sets whose Jaccard similarity we judge)."""
        flat, _ = minhash.shingles([text], self.ngram, self.cjk_ngram)
        return np.unique(flat)

    def _signatures(self, texts: list[str]) -> np.ndarray:
        """Signature rows of ``texts``; a text without shingles gets the never-matching empty row."""
        flat, offsets = minhash.shingles(texts, self.ngram, self.cjk_ngram)
        return minhash.signatures(flat, offsets, self.num_perm, self.seed)

    # rounds ------------------------------------------------------------------------------------

    def begin(self, scratch: str, rows: int) -> dict:
        return {"scratch": scratch, "parts": partitions_for(rows * self.bands)}

    def scan_columns(self, round_: int) -> list[str] | None:
        return None if round_ == 0 else ["text"]  # round 1 re-reads candidates' text only

    def scan(self, round_: int, records: Iterable[dict], shard: int, context: Any) -> dict:
        if round_ == 0:
            return self._scan_signatures(records, shard, context)
        return self._scan_shingles(records, shard, context)

    def _scan_signatures(self, records: Iterable[dict], shard: int, context: dict) -> dict:
        """Write the shard's signatures, lengths, quality scores, ids and partitioned band keys.

        Each batch of :data:`_BATCH` records is written as it is signed (:mod:`ciyuan.curate.scratch`
        appenders), so the scan holds a batch, not the shard's signatures (512 bytes a record).
        """
        sc = Scratch(context["scratch"])
        sig_out = sc.appender("sig", shard, np.uint32, self.num_perm)
        length_out = sc.appender("length", shard, np.int64)
        quality_out = sc.appender("quality", shard, np.float32)
        ids_out = sc.ids_appender(shard)
        bands_out = sc.partitioned_appender("band", shard, context["parts"])
        n = with_shingles = 0
        for batch in batched(records, _BATCH, _BATCH_CHARS):
            texts = [r.get("text") or "" for r in batch]
            sig = self._signatures(texts)  # a record without shingles gets no band keys
            sig_out.append(sig)
            length_out.append(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)))
            quality_out.append(np.asarray(
                [float((r.get("meta") or {}).get("quality_score", 0.0) or 0.0) for r in batch], dtype=np.float32))
            ids_out.extend([r["id"] for r in batch])
            rows = np.nonzero(minhash.valid(sig))[0]
            keys = self.band_keys(sig[rows])
            bands_out.add(keys.ravel(), np.repeat(node(shard, rows + n), self.bands))
            n += len(batch)
            with_shingles += len(rows)
        for out in (sig_out, length_out, quality_out, ids_out, bands_out):
            out.close()
        return {"rows": n, "with_shingles": with_shingles}

    def _scan_shingles(self, records: Iterable[dict], shard: int, context: dict) -> dict:
        """Write the shingle sets of the rows the reduce asked for (candidates only), as they are made."""
        sc = Scratch(context["scratch"])
        need = np.asarray(sc.load("need", shard), dtype=np.int64)  # sorted (np.union1d)
        sc.forget()
        rows_out = sc.appender("shingle-rows", shard, np.int64)
        offsets_out = sc.appender("shingle-offsets", shard, np.int64)
        sets_out = sc.appender("shingles", shard, np.uint64)
        offsets_out.append(np.zeros(1, dtype=np.int64))
        at = total = 0
        for row, r in enumerate(records):
            if at < len(need) and need[at] == row:
                at += 1
                got = self.shingles(r.get("text") or "")
                total += len(got)
                rows_out.append(np.asarray([row], dtype=np.int64))
                offsets_out.append(np.asarray([total], dtype=np.int64))
                sets_out.append(got.astype(np.uint64, copy=False))
        for out in (rows_out, offsets_out, sets_out):
            out.close()
        return {"rows": at}

    def reduce(self, round_: int, parts: list, context: Any) -> tuple[bool, Any]:
        sc = Scratch(context["scratch"])
        if round_ == 0:
            a, b = self.candidate_pairs(sc, len(parts), context["parts"])
            est = _agreement(sc, a, b)
            self._pending = {"shards": len(parts), "candidates": len(a)}
            if self.verify == "signature":
                keep = est >= self.threshold
                return True, self._plan(sc, a[keep], b[keep])
            keep = est >= self.threshold - _PREFILTER_SLACK
            a, b = a[keep], b[keep]
            self._pending.update(a=a, b=b)
            if not len(a):
                return True, self._plan(sc, a, b)
            shard, row = split(np.union1d(a, b))
            for s in range(len(parts)):
                sc.save("need", s, row[shard == s])
            return False, dict(context, round=1)
        pend = self._pending
        a, b = pend["a"], pend["b"]
        sims = np.empty(len(a), dtype=np.float64)
        for k, (i, j) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
            sims[k] = _jaccard(_shingle_set(sc, i), _shingle_set(sc, j))
            if k % 1024 == 1023:
                sc.forget()  # the shingle files' touched pages leave the resident set every 1,024 pairs
        sc.forget()
        keep = sims >= self.threshold
        return True, self._plan(sc, a[keep], b[keep])

    def band_keys(self, sig: np.ndarray) -> np.ndarray:
        """One 64-bit key per (record, band); the band number seeds it, so bands never share keys."""
        return minhash.band_keys(sig, self.bands, self.rows)

    def candidate_pairs(self, sc: Scratch, shards: int, parts: int) -> tuple[np.ndarray, np.ndarray]:
        """Node pairs (a < b) that share at least one band key, read one key partition at a time."""
        found_a: list[np.ndarray] = []
        found_b: list[np.ndarray] = []
        for p in range(parts):
            sn, starts, sizes = key_groups(*sc.read_partition("band", shards, p))
            for g in np.nonzero(sizes > 1)[0].tolist():
                a, b = self._group_pairs(sn[starts[g] : starts[g] + sizes[g]])
                found_a.append(a)
                found_b.append(b)
            # pairs found by several bands are merged as we go, so this stays the size of the answer
            if found_a:
                a, b = unique_pairs(np.concatenate(found_a), np.concatenate(found_b))
                found_a, found_b = [a], [b]
        if not found_a:
            return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
        return found_a[0], found_b[0]

    def _group_pairs(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = len(members)
        if m <= self.max_bucket_pairs:
            i, j = np.triu_indices(m, k=1)
            return members[i], members[j]
        star = (np.repeat(members[:1], m - 1), members[1:])
        chain = (members[:-1], members[1:])
        return np.concatenate((star[0], chain[0])), np.concatenate((star[1], chain[1]))

    def _plan(self, sc: Scratch, a: np.ndarray, b: np.ndarray) -> dict:
        pend = self._pending or {}
        shards = pend.get("shards", 1)
        uf = _UnionFind()
        for i, j in zip(a.tolist(), b.tolist(), strict=True):
            uf.union(i, j)
        comps: dict[int, list[int]] = {}
        for x in sorted(uf.parent.keys() | set(a.tolist())):
            comps.setdefault(uf.find(x), []).append(x)
        nodes = np.asarray(sorted(x for m in comps.values() for x in m), dtype=np.uint64)
        ids = dict(zip(nodes.tolist(), sc.ids_of(nodes), strict=True))
        length = dict(zip(nodes.tolist(), sc.gather("length", nodes).tolist(), strict=True))
        quality = dict(zip(nodes.tolist(), sc.gather("quality", nodes).tolist(), strict=True))
        by_shard: list[dict] = [{"cluster": {}, "drop": {}} for _ in range(shards)]
        top = []
        for members in comps.values():
            if len(members) < 2:
                continue
            keeper = self._keeper(members, length, quality)
            cid = f"nd-{stable_hash(ids[keeper]):016x}"[:15]
            for x in members:
                part = by_shard[x >> ROW_BITS]
                part["cluster"][ids[x]] = cid
                if x != keeper:
                    part["drop"][ids[x]] = (cid, ids[keeper], len(members))
            top.append((len(members), cid, ids[keeper], [ids[x] for x in members[:5]]))
        top.sort(key=lambda t: (-t[0], t[1]))
        return {
            "by_shard": by_shard,
            "pairs": len(a),
            "candidates": pend.get("candidates", 0),
            "top": [{"cluster": c, "size": s, "keeper": k, "members": m} for s, c, k, m in top[:10]],
        }

    def _keeper(self, members: list[int], length: dict[int, int], quality: dict[int, float]) -> int:
        if self.keep == "longest":
            return min(members, key=lambda x: (-length[x], x))
        if self.keep == "best_quality":
            return min(members, key=lambda x: (-quality[x], -length[x], x))
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


def _agreement(sc: Scratch, a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Share of equal signature slots per pair: the MinHash estimate of Jaccard similarity."""
    out = np.empty(len(a), dtype=np.float64)
    for s in range(0, len(a), chunk):
        out[s : s + chunk] = minhash.agreement(sc.gather("sig", a[s : s + chunk]), sc.gather("sig", b[s : s + chunk]))
    return out


def _shingle_set(sc: Scratch, x: int) -> np.ndarray:
    shard, row = x >> ROW_BITS, x & ((1 << ROW_BITS) - 1)
    rows = sc.load("shingle-rows", shard)
    k = int(np.searchsorted(rows, row))
    off = sc.load("shingle-offsets", shard)
    return np.asarray(sc.load("shingles", shard)[off[k] : off[k + 1]])


def _jaccard(x: np.ndarray, y: np.ndarray) -> float:
    inter = len(np.intersect1d(x, y, assume_unique=True))
    union = len(x) + len(y) - inter
    return inter / union if union else 1.0
