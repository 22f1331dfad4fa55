"""Media deduplication: exact by decoded content, near by perceptual hash within a Hamming distance.

``media_exact_dedup`` hashes what a loader decodes (pixels, PCM samples, video frames), so a PNG and
a lossless WebP of one picture, or a WAV and a FLAC of one recording, are one record; the first in
shard order is kept (the hash partitions and reduce of :class:`ExactDedup`).

``media_near_dedup`` hashes images (DCT hash), audio (log-mel DCT hash) and video (the DCT hash of
``video_frames`` frames at fixed shares of the clip) and finds every pair within ``threshold`` bits
through the multi-index :class:`~ciyuan.curate.phash.HammingIndex`, never all pairs. A video pair's
distance is the mean over its aligned frames; the mean is at most ``threshold`` only if one frame
pair is, so indexing each frame position at ``threshold`` finds every such pair. Records pair
only with records of their own modality. Duplicates are dropped greedily in keep order: a record
goes when a record kept before it is within the threshold, and names the nearest one, so every
reported distance is a real one (no chains through dropped records).

A record whose bytes cannot be had (a ``media_ref`` without the blob store) or do not decode is
skipped, counted by reason under ``counters`` and listed under ``extra.skipped``: never judged a
duplicate of something it was not compared with.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from ciyuan.curate import media
from ciyuan.curate.phash import HammingIndex
from ciyuan.curate.scratch import Scratch, node, split
from ciyuan.curate.steps.base import GlobalStep, Param, modality_of
from ciyuan.curate.steps.exact_dedup import ExactDedup
from ciyuan.errors import InvalidInput

MEDIA: frozenset[str] = frozenset({"image", "audio", "video"})
MAX_REPORTED_PAIRS = 200  # removed near duplicates listed in the report, beside what they duplicate
_HIST_CHUNK = 2_000_000  # distances the histogram computes at once (16 MB of uint64)


class MediaExactDedup(ExactDedup):
    name = "media_exact_dedup"
    modalities = MEDIA
    description = (
        "Drop media whose decoded content (pixels, PCM samples, video frames) equals an earlier record's, "
        "whatever the file format."
    )
    params = ()

    def scan_columns(self, round_: int) -> list[str] | None:
        return ["media", "media_ref"]  # the bytes (or blob), never the text

    def scan(self, round_: int, records: Iterable[dict], shard: int, context: Any) -> dict:
        """Write (content key, node) of each record whose content can be had; list the ones skipped."""
        ids: list[str] = []
        keys: list[int] = []
        rows: list[int] = []
        skipped: dict[str, list[str]] = {}
        for r in records:
            row = len(ids)
            ids.append(r["id"])
            try:
                keys.append(self.content_key(r))
                rows.append(row)
            except media.NoMedia as exc:
                skipped[r["id"]] = [exc.reason, str(exc)]
        sc = Scratch(context["scratch"])
        sc.save_ids(shard, ids)
        sc.save_partitioned("hash", shard, np.asarray(keys, dtype=np.uint64),
                            node(shard, np.asarray(rows, dtype=np.uint64)), context["parts"])  # fmt: skip
        return {"rows": len(ids), "skipped": skipped}

    def content_key(self, record: dict) -> int:
        """64-bit key of what the record holds; raises :class:`media.NoMedia` when it cannot be had."""
        with media.open_media(record) as src:
            return media.content_key(modality_of(record), src)

    def duplicate_reason(self, record: dict, keeper: str) -> str:
        return f"media_exact_dedup: same decoded {modality_of(record)} content as {keeper}"

    def reduce(self, round_: int, parts: list, context: Any) -> tuple[bool, dict]:
        done, plan = super().reduce(round_, parts, context)
        for s, part in enumerate(parts):
            plan["by_shard"][s]["skipped"] = part.get("skipped", {})
        return done, plan

    def apply_plan(self, record: dict) -> None:
        rid = record["id"]
        skipped = self.plan.get("skipped", {}).get(rid)
        if skipped:
            _note_skipped(self, rid, skipped)
            return
        keeper = self.plan["drop"].get(rid)
        if keeper is not None:
            record.setdefault("meta", {})["exact_dup_of"] = keeper
            self.reject(record, "exact_duplicate", self.duplicate_reason(record, keeper))
        elif rid in self.plan["groups"]:
            self.stats.counters["groups"] += 1


def _note_skipped(step: GlobalStep, rid: str, skipped: list[str]) -> None:
    reason, message = skipped
    step.stats.counters[f"skipped_{reason}"] += 1
    step.stats.extra.setdefault("skipped", {})[rid] = message


def _size_of(record: dict) -> float:
    """What ``keep: largest`` ranks by: pixels (x frames for video), or audio samples."""
    meta = record.get("meta") or {}
    m = modality_of(record)
    facts = meta.get(m) or {}
    if m == "image":
        return float((facts.get("width") or 0) * (facts.get("height") or 0))
    if m == "video":
        return float((facts.get("width") or 0) * (facts.get("height") or 0) * (facts.get("frames") or 1))
    return float((facts.get("duration_s") or 0) * (facts.get("sample_rate") or 0) * (facts.get("channels") or 1))


class MediaNearDedup(GlobalStep):
    name = "media_near_dedup"
    modalities = MEDIA
    description = (
        "Near-duplicate media by perceptual hash within a Hamming distance (images: DCT hash; video: hashes "
        "of frames at fixed shares of the clip; audio: log-mel fingerprint), through a multi-index, not all pairs."
    )
    params = (
        Param("threshold", "int", 10, "Hamming distance (of 64 bits) at or below which two records are duplicates."),
        Param("video_frames", "int", 4, "Frames hashed per video clip (at the middles of equal shares of it)."),
        Param("keep", "str", "first", "Which record of a duplicate group survives.", ("first", "largest")),
        Param("histogram_radius", "int", 20, "The report's distance histogram goes up to this (>= the threshold)."),
        Param("histogram_sample", "int", 1000,
              "The histogram counts the pairs of up to this many records (evenly spaced) with every other "
              "record: exact for inputs this small, linear in the input beyond."),  # fmt: skip
    )

    def setup(self) -> None:
        super().setup()
        if not 0 <= self.threshold <= 32:
            raise InvalidInput(f"media_near_dedup: threshold {self.threshold} is outside 0..32",
                               hint="random 64-bit hashes differ in about 32 bits; e.g. threshold: 10")  # fmt: skip
        if not 1 <= self.video_frames <= 64:
            raise InvalidInput("media_near_dedup: video_frames must be 1..64", hint="e.g. video_frames: 4")

    @property
    def radius(self) -> int:
        return min(32, max(self.threshold, self.histogram_radius))

    def scan_columns(self, round_: int) -> list[str] | None:
        return ["media", "media_ref", "meta"]  # bytes to hash, probed facts for keep: largest

    def hashes(self, record: dict) -> list[int]:
        """The record's perceptual hashes: one for an image or audio clip, ``video_frames`` for a video."""
        m = modality_of(record)
        with media.open_media(record) as src:
            if m == "image":
                return [media.image_hash(src)]
            if m == "audio":
                return [media.audio_hash(src)]
            return media.keyframe_hashes(src, self.video_frames)

    def scan(self, round_: int, records: Iterable[dict], shard: int, context: Any) -> dict:
        """Write each hashable record's hashes (one row per hash slot), modality and keep rank."""
        ids: list[str] = []
        rows: list[int] = []
        mods: list[int] = []
        sizes: list[float] = []
        hashes: list[list[int]] = []
        skipped: dict[str, list[str]] = {}
        width = self.video_frames
        for r in records:
            row = len(ids)
            ids.append(r["id"])
            try:
                h = self.hashes(r)
            except media.NoMedia as exc:
                skipped[r["id"]] = [exc.reason, str(exc)]
                continue
            rows.append(row)
            mods.append(_MODS.index(modality_of(r)))
            sizes.append(_size_of(r))
            hashes.append((h * width)[:width])  # an image's one hash fills every slot alike
        sc = Scratch(context["scratch"])
        sc.save_ids(shard, ids)
        sc.save("near-nodes", shard, node(shard, np.asarray(rows, dtype=np.uint64)))
        sc.save("near-mods", shard, np.asarray(mods, dtype=np.int8))
        sc.save("near-sizes", shard, np.asarray(sizes, dtype=np.float64))
        sc.save("near-hashes", shard, np.asarray(hashes, dtype=np.uint64).reshape(len(rows), width))
        return {"rows": len(ids), "hashed": len(rows), "skipped": skipped}

    def reduce(self, round_: int, parts: list, context: Any) -> tuple[bool, dict]:
        sc = Scratch(context["scratch"])
        nodes = np.concatenate([sc.load("near-nodes", s) for s in range(len(parts))])
        mods = np.concatenate([sc.load("near-mods", s) for s in range(len(parts))])
        sizes = np.concatenate([sc.load("near-sizes", s) for s in range(len(parts))])
        hashes = np.concatenate([sc.load("near-hashes", s) for s in range(len(parts))])
        drops: dict[int, tuple[int, int]] = {}  # position -> (keeper position, distance)
        histogram: dict[str, tuple[list[int], int]] = {}
        for code, mod in enumerate(_MODS):
            pos = np.nonzero(mods == code)[0]
            if not len(pos):
                continue
            frames = self.video_frames if mod == "video" else 1
            i, j, d = self._pairs(hashes[pos], frames, self.threshold)
            histogram[mod] = self._histogram(hashes[pos], frames)
            drops.update(self._greedy(pos, pos[i], pos[j], d, nodes, sizes))
        by_shard: list[dict] = [{"drop": {}, "skipped": p.get("skipped", {})} for p in parts]
        named = sorted({int(nodes[p]) for kv in drops.items() for p in (kv[0], kv[1][0])})
        name = dict(zip(named, sc.ids_of(np.asarray(named, dtype=np.uint64)), strict=True)) if named else {}
        pairs = []
        for p, (k, dist) in sorted(drops.items(), key=lambda kv: int(nodes[kv[0]])):
            removed, kept = name[int(nodes[p])], name[int(nodes[k])]
            by_shard[int(split(nodes[p : p + 1])[0][0])]["drop"][removed] = [kept, dist]
            if len(pairs) < MAX_REPORTED_PAIRS:
                pairs.append({"removed": removed, "kept": kept, "distance": dist, "modality": _MODS[int(mods[p])]})
        hist = {
            m: {"distances": list(range(len(c))), "counts": c, "records": int((mods == _MODS.index(m)).sum()),
                "sampled": k}
            for m, (c, k) in histogram.items()
        }  # fmt: skip
        summary = {"threshold": self.threshold, "pairs": pairs, "removed": len(drops), "histogram": hist}
        return True, {"by_shard": by_shard, **summary}

    def _pairs(self, h: np.ndarray, frames: int, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every pair (i < j) of rows within ``radius``, with its distance.

        One frame position indexed at a time; a pair found at any position is then measured over all
        of them (mean of the aligned frames' distances, rounded half up).
        """
        found = []
        for f in range(frames):
            idx = HammingIndex(radius)
            idx.add(h[:, f])
            found.append(idx.pairs()[:, :2])
        ij = np.unique(np.concatenate(found), axis=0) if found else np.empty((0, 2), np.int64)
        if not len(ij):
            e = np.empty(0, np.int64)
            return e, e, e
        i, j = ij[:, 0], ij[:, 1]
        total = np.bitwise_count(h[i, :frames] ^ h[j, :frames]).sum(axis=1).astype(np.int64)
        d = (2 * total + frames) // (2 * frames)
        keep = d <= radius
        return i[keep], j[keep], d[keep]

    def _histogram(self, h: np.ndarray, frames: int) -> tuple[list[int], int]:
        """Pairs by distance up to the radius: every pair when the input has at most
        ``histogram_sample`` rows, else every pair with one of that many evenly spaced rows.

        ``(counts, rows sampled)``. Compared by brute force in chunks (sample x rows popcounts), so
        the cost is linear in the input and the radius costs nothing (the dedup's index search is
        not widened for the histogram's sake).
        """
        n = len(h)
        r = self.radius
        k = min(n, max(1, self.histogram_sample))
        picked = np.unique(np.linspace(0, n - 1, k).astype(np.int64)) if n else np.zeros(0, np.int64)
        in_sample = np.zeros(n, dtype=bool)
        in_sample[picked] = True
        counts = np.zeros(r + 1, dtype=np.int64)
        cols = np.arange(n)
        step = max(1, _HIST_CHUNK // max(1, n * frames))
        for s0 in range(0, len(picked), step):
            rows = picked[s0 : s0 + step]
            total = np.bitwise_count(h[rows, None, :frames] ^ h[None, :, :frames]).sum(axis=2).astype(np.int64)
            d = (2 * total + frames) // (2 * frames)
            # each unordered pair once: with a later row, or with a row outside the sample
            once = (cols[None, :] > rows[:, None]) | ~in_sample[None, :]
            d = d[once]
            counts += np.bincount(d[d <= r], minlength=r + 1)[: r + 1]
        return counts.tolist(), len(picked)

    def _greedy(self, pos, a, b, d, nodes, sizes) -> dict[int, tuple[int, int]]:
        """Drop, in keep order, every record with an earlier kept neighbour; name the nearest one."""
        if self.keep == "largest":
            rank_key = np.lexsort((nodes[pos], -sizes[pos]))
        else:
            rank_key = np.argsort(nodes[pos], kind="stable")
        rank = np.empty(len(nodes), dtype=np.int64)
        rank[pos[rank_key]] = np.arange(len(pos))
        first_is_a = rank[a] < rank[b]
        hi = np.where(first_is_a, a, b)  # the record kept first of the pair
        lo = np.where(first_is_a, b, a)
        order = np.lexsort((rank[hi], d, rank[lo]))
        dropped: dict[int, tuple[int, int]] = {}
        for k in order.tolist():
            later, earlier = int(lo[k]), int(hi[k])
            if later in dropped or earlier in dropped:
                continue
            dropped[later] = (earlier, int(d[k]))
        return dropped

    def bind(self, plan: dict) -> None:
        super().bind(plan)
        self.stats.extra["near_duplicates"] = {"threshold": plan.get("threshold"), "pairs": plan.get("pairs", []),
                                               "removed": plan.get("removed", 0)}  # fmt: skip
        self.stats.extra["distance_histogram"] = plan.get("histogram", {})

    def apply_plan(self, record: dict) -> None:
        rid = record["id"]
        skipped = self.plan.get("skipped", {}).get(rid)
        if skipped:
            _note_skipped(self, rid, skipped)
            return
        hit = self.plan["drop"].get(rid)
        if hit is None:
            return
        keeper, dist = hit
        meta = record.setdefault("meta", {})
        meta["near_dup_of"], meta["near_dup_distance"] = keeper, dist
        self.reject(record, "near_duplicate",
                    f"media_near_dedup: {modality_of(record)} within Hamming distance {dist} of {keeper} "
                    f"(threshold {self.threshold})")  # fmt: skip


_MODS = ("image", "audio", "video")
