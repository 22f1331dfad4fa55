"""Robot-episode deduplication: exact by content, near by MinHash over the state trajectory.

``episode_exact_dedup`` keys an episode by :func:`ciyuan.curate.episode.content_digest`: its frame
table without the columns that only place it in a dataset (``episode_index``, ``index``,
``task_index``), its task texts, and each camera's blob digest with the time range the episode covers
in it; the first in shard order is kept (the hash partitions and reduce of :class:`ExactDedup`).

``episode_near_dedup`` resamples each episode's state (action when it has no state) to ``points``
equal shares, quantises it to a grid of ``quantum`` and MinHashes the shingles
(:func:`ciyuan.curate.episode.trajectory_shingles`) with the one MinHash of
:mod:`ciyuan.curate.minhash`. Candidates share an LSH band; a pair is a duplicate when its signature
agreement reaches ``threshold``. Dropped greedily in shard order: an episode goes when one kept
before it is similar enough, and names it with the measured similarity.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from ciyuan.curate import episode as ep
from ciyuan.curate import media, minhash
from ciyuan.curate.steps.base import GlobalStep, Param
from ciyuan.curate.steps.episode import EPISODE
from ciyuan.curate.steps.media_dedup import MediaExactDedup, _note_skipped
from ciyuan.errors import InvalidInput

MAX_REPORTED_PAIRS = 200


class EpisodeExactDedup(MediaExactDedup):
    name = "episode_exact_dedup"
    modalities = EPISODE
    description = (
        "Drop episodes whose frame table (position columns aside), task texts and camera bytes with their "
        "time ranges equal an earlier episode's."
    )
    params = ()

    def scan_columns(self, round_: int) -> list[str] | None:
        return ["media", "media_ref", "meta"]

    def content_key(self, record: dict) -> int:
        return int.from_bytes(ep.content_digest(record, ep.load_table(record))[:8], "little")

    def duplicate_reason(self, record: dict, keeper: str) -> str:
        return f"episode_exact_dedup: same frames, tasks and camera bytes/ranges as {keeper}"


class EpisodeNearDedup(GlobalStep):
    name = "episode_near_dedup"
    modalities = EPISODE
    description = (
        "Near-duplicate trajectories: MinHash (with LSH bands) over each episode's state sequence, resampled to "
        "a fixed number of steps and quantised; keeps the first of each group."
    )
    params = (
        Param("points", "int", 64, "Steps the state sequence is resampled to (equal shares of the episode)."),
        Param("quantum", "float", 0.05, "Grid the resampled values are rounded to (in the state's units)."),
        Param("shingle", "int", 2, "Consecutive grid values of one dimension per shingle."),
        Param("num_perm", "int", 128, "MinHash permutations (signature length)."),
        Param("bands", "int", 32, "LSH bands; bands x rows must not exceed num_perm."),
        Param("rows", "int", 4, "Signature rows per band."),
        Param("threshold", "float", 0.5, "Signature agreement (estimated Jaccard) at or above which two episodes "
              "are duplicates."),
        Param("seed", "int", 42, "MinHash seed (part of the recipe, so results are reproducible)."),
    )

    def setup(self) -> None:
        super().setup()
        if self.bands * self.rows > self.num_perm:
            raise InvalidInput("episode_near_dedup: bands x rows exceeds num_perm", hint="e.g. bands: 32, rows: 4")
        if self.quantum <= 0 or self.points < 2 or self.shingle < 1:
            raise InvalidInput("episode_near_dedup: quantum must be > 0, points >= 2, shingle >= 1",
                               hint="e.g. points: 64, quantum: 0.05, shingle: 2")

    def scan_columns(self, round_: int) -> list[str] | None:
        return ["media", "media_ref", "meta"]

    def signature_input(self, record: dict) -> np.ndarray:
        """The shingle hashes of one episode's trajectory (state, or action when it has no state)."""
        table = ep.load_table(record)
        feats = ep.facts(record).get("features") or {}
        x = ep.numbers(table, feats, "state")
        if not x.shape[1]:
            x = ep.numbers(table, feats, "action")
        return ep.trajectory_shingles(x, self.points, self.quantum, self.shingle)

    def scan(self, round_: int, records: Iterable[dict], shard: int, context: Any) -> dict:
        ids: list[str] = []
        shingles: list[np.ndarray] = []
        skipped: dict[str, list[str]] = {}
        for r in records:
            try:
                shingles.append(self.signature_input(r))
            except media.NoMedia as exc:
                skipped[r["id"]] = [exc.reason, str(exc)]
                continue
            ids.append(r["id"])
        offsets = np.concatenate(([0], np.cumsum([len(s) for s in shingles]))).astype(np.uint64)
        flat = np.concatenate(shingles) if shingles else np.zeros(0, np.uint64)
        sig = minhash.signatures(flat, offsets, self.num_perm, self.seed)
        return {"ids": ids, "sig": sig, "skipped": skipped}

    def reduce(self, round_: int, parts: list, context: Any) -> tuple[bool, dict]:
        ids = [i for p in parts for i in p["ids"]]
        shard_of = [s for s, p in enumerate(parts) for _ in p["ids"]]
        sig = np.concatenate([p["sig"] for p in parts]) if ids else np.zeros((0, self.num_perm), np.uint32)
        ok = minhash.valid(sig)
        keys = minhash.band_keys(sig, self.bands, self.rows)
        buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i in np.flatnonzero(ok).tolist():
            for b, k in enumerate(keys[i].tolist()):
                buckets[(b, k)].append(i)
        cands: set[tuple[int, int]] = set()
        for members in buckets.values():
            for x in range(len(members)):
                for y in range(x + 1, len(members)):
                    cands.add((members[x], members[y]))
        pairs = sorted(cands)
        sims = minhash.agreement(sig[[a for a, _ in pairs]], sig[[b for _, b in pairs]]) if pairs else []
        best: dict[int, tuple[int, float]] = {}  # later -> (earlier kept, similarity)
        for (a, b), s in sorted(zip(pairs, sims, strict=True), key=lambda kv: (kv[0][1], -kv[1], kv[0][0])):
            if s < self.threshold or b in best or a in best:
                continue
            best[b] = (a, float(s))
        by_shard: list[dict] = [{"drop": {}, "skipped": p.get("skipped", {})} for p in parts]
        reported = []
        for b, (a, s) in sorted(best.items()):
            by_shard[shard_of[b]]["drop"][ids[b]] = [ids[a], round(s, 4)]
            if len(reported) < MAX_REPORTED_PAIRS:
                reported.append({"removed": ids[b], "kept": ids[a], "similarity": round(s, 4)})
        summary = {"threshold": self.threshold, "pairs": reported, "removed": len(best), "candidates": len(pairs)}
        return True, {"by_shard": by_shard, **summary}

    def bind(self, plan: dict) -> None:
        super().bind(plan)
        self.stats.extra["near_duplicates"] = {k: plan.get(k) for k in ("threshold", "pairs", "removed", "candidates")}

    def apply_plan(self, record: dict) -> None:
        rid = record["id"]
        skipped = self.plan.get("skipped", {}).get(rid)
        if skipped:
            _note_skipped(self, rid, skipped)
            return
        hit = self.plan["drop"].get(rid)
        if hit is None:
            return
        keeper, sim = hit
        meta = record.setdefault("meta", {})
        meta["near_dup_of"], meta["near_dup_similarity"] = keeper, sim
        self.reject(record, "near_duplicate",
                    f"episode_near_dedup: trajectory similarity {sim:.3f} with {keeper} (threshold {self.threshold})")
