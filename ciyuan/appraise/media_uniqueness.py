"""Uniqueness of media against the catalog: perceptual hashes of every listed image, video and clip.

Why: a provider who re-lists someone else's pictures, resized or recompressed, changes every byte
and every caption they like; MinHash of the caption text sees nothing. The picture itself is the
evidence, so media records are judged by the perceptual hashes curation already uses
(:mod:`ciyuan.curate.media`): the DCT hash of an image, the DCT hashes of ``FRAMES`` keyframes of a
video (taken at fixed shares of the clip), the log-mel DCT hash of an audio clip.

* **Match**: same modality and a Hamming distance of at most ``THRESHOLDS[modality]`` bits (the
  thresholds of the ``image-caption``, ``video-clips`` and ``speech-asr`` recipes); a video's
  distance is the mean over its aligned keyframes, rounded half up, as in ``media_near_dedup``.
* **Search**: :class:`~ciyuan.curate.phash.HammingIndex` (multi-index hashing, never all pairs),
  one index per modality and keyframe position over the catalog's hashes; a pair found at any
  position is then measured over all of them.
* **Catalog on disk**: one ``.npz`` segment per listed version (record ids, modality codes, an
  ``(n, FRAMES)`` uint64 hash array; an image's or clip's one hash fills every slot), appended when
  the version is listed, and a SQLite file mapping listing codes to listing id, provider, version.
  Hashes are 32 bytes a record, so a query loads them all: a million listed media files is 32 MB.
* ``score = 1 - tokens of records near-duplicating another provider's listed media / tokens``,
  with the matched pairs as evidence. The first to list keeps it, as for text: a record is a copy
  only when the earliest listing holding a near-duplicate belongs to someone else.
"""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from pathlib import Path
from typing import Any

import numpy as np

from ciyuan.curate.phash import HammingIndex

FRAMES = 4
MODS = ("image", "audio", "video")
THRESHOLDS = {"image": 10, "audio": 8, "video": 10}
MAX_PAIRS = 50  # matched pairs listed in the evidence


def record_hashes(record: dict, frames: int = FRAMES) -> list[int]:
    """The perceptual hashes of one media record (``NoMedia`` when its bytes cannot be had)."""
    from ciyuan.curate import media

    m = record.get("modality")
    with media.open_media(record) as src:
        if m == "image":
            return [media.image_hash(src)] * frames
        if m == "audio":
            return [media.audio_hash(src)] * frames
        return (media.keyframe_hashes(src, frames) * frames)[:frames]


def empty_hashes() -> dict[str, Any]:
    return {"rows": np.zeros(0, np.int64), "ids": np.zeros(0, "U1"), "mods": np.zeros(0, np.int8),
            "hashes": np.zeros((0, FRAMES), np.uint64), "skipped": {}}  # fmt: skip


def version_hashes(version: Any) -> dict[str, Any]:
    """Hashes of every media record of a version, with its row in record order (as the appraisal
    scans it); records whose media cannot be decoded are counted by reason, never matched."""
    from ciyuan.curate import media

    rows, ids, mods, hashes = [], [], [], []
    skipped: Counter[str] = Counter()
    row = 0
    for batch in version.iter_batches(columns=["id", "modality", "media", "media_ref"], batch_size=1024):
        names = batch.schema.names
        cols = {n: batch.column(n).to_pylist() if n in names else [None] * batch.num_rows
                for n in ("id", "modality", "media", "media_ref")}  # fmt: skip
        for j in range(batch.num_rows):
            rec = {n: cols[n][j] for n in cols}
            if rec["modality"] in MODS:
                try:
                    h = record_hashes(rec)
                except media.NoMedia as exc:
                    skipped[exc.reason] += 1
                except Exception:  # a file the decoder refuses is evidence of nothing
                    skipped["undecodable"] += 1
                else:
                    rows.append(row + j)
                    ids.append(str(rec["id"]))
                    mods.append(MODS.index(rec["modality"]))
                    hashes.append(h)
        row += batch.num_rows
    if not rows:
        return {**empty_hashes(), "skipped": dict(skipped)}
    return {"rows": np.asarray(rows, np.int64), "ids": np.asarray(ids), "mods": np.asarray(mods, np.int8),
            "hashes": np.asarray(hashes, np.uint64).reshape(len(rows), FRAMES), "skipped": dict(skipped)}


def save_hashes(path: Path, h: dict[str, Any]) -> None:
    np.savez(path, rows=h["rows"], ids=h["ids"], mods=h["mods"], hashes=h["hashes"])


def load_hashes(path: Path) -> dict[str, Any]:
    with np.load(path) as z:
        return {"rows": z["rows"], "ids": z["ids"], "mods": z["mods"], "hashes": z["hashes"], "skipped": {}}


def _frames(mod: str) -> int:
    return FRAMES if mod == "video" else 1


def _distance(a: np.ndarray, b: np.ndarray, frames: int) -> np.ndarray:
    total = np.bitwise_count(a[:, :frames] ^ b[:, :frames]).sum(axis=1).astype(np.int64)
    return (2 * total + frames) // (2 * frames)


def _matches(q: np.ndarray, stored: np.ndarray, mod: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(query row, stored row, distance)`` of every pair within the modality's threshold."""
    thr, frames = THRESHOLDS[mod], _frames(mod)
    found = []
    for f in range(frames):
        idx = HammingIndex(thr)
        idx.add(stored[:, f])
        found.append(idx.query(q[:, f])[:, :2])
    qs = np.unique(np.concatenate(found), axis=0) if found else np.empty((0, 2), np.int64)
    if not len(qs):
        e = np.empty(0, np.int64)
        return e, e, e
    d = _distance(q[qs[:, 0]], stored[qs[:, 1]], frames)
    ok = d <= thr
    return qs[ok, 0], qs[ok, 1], d[ok]


def near_duplicates_within(h: dict[str, Any]) -> np.ndarray:
    """Mask over ``h``'s records of those within the threshold of an earlier record of their modality."""
    dup = np.zeros(len(h["rows"]), bool)
    for code, mod in enumerate(MODS):
        pos = np.nonzero(h["mods"] == code)[0]
        if len(pos) < 2:
            continue
        hs = h["hashes"][pos]
        found = []
        for f in range(_frames(mod)):
            idx = HammingIndex(THRESHOLDS[mod])
            idx.add(hs[:, f])
            found.append(idx.pairs()[:, :2])
        ij = np.unique(np.concatenate(found), axis=0)
        if len(ij):
            d = _distance(hs[ij[:, 0]], hs[ij[:, 1]], _frames(mod))
            dup[pos[ij[d <= THRESHOLDS[mod], 1]]] = True  # the later of each pair
    return dup


class MediaCatalog:
    """Append-only store of the perceptual hashes of listed versions, in a folder on disk."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        (self.root / "segments").mkdir(parents=True, exist_ok=True)
        self._db = self.root / "index.sqlite"
        with closing(self._connect()) as con, con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS listings (code INTEGER PRIMARY KEY, listing_id TEXT UNIQUE NOT NULL,"
                " provider TEXT NOT NULL, version_id TEXT NOT NULL, rows INTEGER NOT NULL, added_at REAL NOT NULL)"
            )

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self._db, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    def add(self, listing_id: str, provider: str, version_id: str, h: dict[str, Any]) -> dict:
        """Append one listed version's hashes (idempotent per listing; a version without media adds nothing)."""
        with closing(self._connect()) as con, con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT code FROM listings WHERE listing_id=?", (listing_id,)).fetchone()
            if row:
                return {"listing_id": listing_id, "code": row[0], "added": 0}
            if not len(h["rows"]):
                return {"listing_id": listing_id, "added": 0}
            cur = con.execute(
                "INSERT INTO listings (listing_id, provider, version_id, rows, added_at) VALUES (?,?,?,?,?)",
                (listing_id, provider, version_id, len(h["rows"]), time.time()),
            )
            code = int(cur.lastrowid)
            tmp = self.root / "segments" / f".{code}.tmp.npz"
            np.savez(tmp, ids=h["ids"], mods=h["mods"], hashes=h["hashes"])
            tmp.replace(self.root / "segments" / f"{code}.npz")
        return {"listing_id": listing_id, "code": code, "added": len(h["rows"])}

    def listings(self) -> list[dict]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT code, listing_id, provider, version_id, rows FROM listings ORDER BY code")
            return [dict(zip(("code", "listing_id", "provider", "version_id", "rows"), r, strict=True)) for r in rows]

    def size(self) -> int:
        return sum(r["rows"] for r in self.listings())

    def load(self, exclude_providers: Iterable[str] = (), exclude_listings: Iterable[str] = ()) -> dict[str, Any]:
        """Every stored hash with its listing code and record id (listings in ``exclude_*`` left out)."""
        ex_p, ex_l = set(exclude_providers), set(exclude_listings)
        codes, ids, mods, hashes = [], [], [], []
        for r in self.listings():
            if r["provider"] in ex_p or r["listing_id"] in ex_l:
                continue
            with np.load(self.root / "segments" / f"{r['code']}.npz") as z:
                codes.append(np.full(len(z["mods"]), r["code"], np.int64))
                ids.append(z["ids"])
                mods.append(z["mods"])
                hashes.append(z["hashes"])
        if not codes:
            return {"codes": np.zeros(0, np.int64), "ids": np.zeros(0, "U1"), "mods": np.zeros(0, np.int8),
                    "hashes": np.zeros((0, FRAMES), np.uint64)}  # fmt: skip
        return {"codes": np.concatenate(codes), "ids": np.concatenate(ids), "mods": np.concatenate(mods),
                "hashes": np.concatenate(hashes)}  # fmt: skip


def uniqueness(
    h: dict[str, Any],
    tokens: np.ndarray,
    index: MediaCatalog,
    exclude_providers: Iterable[str] = (),
    exclude_listings: Iterable[str] = (),
    owner: str | None = None,
) -> dict:
    """Near-duplicates of a version's media in other listings, by perceptual hash, with the pairs.

    ``tokens`` are the tokens of every record of the version (indexed by ``h["rows"]``); the score
    is over the media records' tokens. ``duplicated`` is a mask over ``h``'s records.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    names = {r["code"]: r for r in index.listings()}
    cat = index.load(exclude_providers, exclude_listings)
    n = len(h["rows"])
    best = np.zeros(n, np.int64)  # earliest listing code holding a near-duplicate (0: none)
    match_at = np.full(n, -1, np.int64)
    dist = np.zeros(n, np.int64)
    for code, mod in enumerate(MODS):
        qpos = np.nonzero(h["mods"] == code)[0]
        spos = np.nonzero(cat["mods"] == code)[0]
        if not len(qpos) or not len(spos):
            continue
        qi, si, d = _matches(h["hashes"][qpos], cat["hashes"][spos], mod)
        # earliest listing first, then the nearest: the first row per query after sorting wins
        c = cat["codes"][spos[si]]
        order = np.lexsort((d, c, qi))
        qi, si, d, c = qi[order], si[order], d[order], c[order]
        first = np.concatenate([[True], qi[1:] != qi[:-1]]) if len(qi) else np.zeros(0, bool)
        q = qpos[qi[first]]
        best[q], match_at[q], dist[q] = c[first], spos[si[first]], d[first]
    first_here = np.zeros(n, bool)
    if owner is not None:
        first_here = np.array([b > 0 and names[int(b)]["provider"] == owner for b in best], dtype=bool)
    dup = (best > 0) & ~first_here
    media_tokens = tokens[h["rows"]] if n else np.zeros(0, np.int64)
    total = int(media_tokens.sum())
    dup_tokens = int(media_tokens[dup].sum())
    matched: dict[str, dict] = {}
    for b in best[dup]:
        r = names[int(b)]
        m = matched.setdefault(r["listing_id"], {"provider": r["provider"], "records": 0})
        m["records"] += 1
    pairs = [{"record": str(h["ids"][i]), "modality": MODS[int(h["mods"][i])],
              "listing": names[int(best[i])]["listing_id"], "provider": names[int(best[i])]["provider"],
              "listed_record": str(cat["ids"][match_at[i]]), "distance": int(dist[i])}
             for i in np.nonzero(dup)[0][:MAX_PAIRS]]  # fmt: skip
    return {
        "score": 1.0 - dup_tokens / total if total else 1.0,
        "duplicated": dup,
        "evidence": {
            "records": n,
            "records_near_duplicated": int(dup.sum()),
            "records_first_listed_by_owner": int(first_here.sum()),
            "tokens": total,
            "tokens_near_duplicated": dup_tokens,
            "matched_listings": matched,
            "pairs": pairs,
            "index_hashes": index.size(),
            "skipped": h.get("skipped") or {},
            "method": "perceptual hash (image: DCT pHash; video: mean over 4 keyframe pHashes; audio: log-mel "
            f"DCT hash), multi-index Hamming search, within {THRESHOLDS} bits",
        },
    }


def texts_for_signature(recs: list[dict]) -> list[str | None]:
    """The text MinHash reads: a media record is judged by its pixels or samples (perceptual hashes),
    not by its caption, so two pictures with one caption are not copies and a re-captioned copy is; a
    robot episode's text is its task, which many different demonstrations share."""
    return [None if r.get("modality") in MODS or r.get("modality") == "episode" else r.get("text") for r in recs]


def fold_into(uniq: dict, mu: dict) -> None:
    """Fold the media records' catalog matches into U: one share of tokens over text and media alike."""
    ev = uniq["evidence"]
    mu.pop("duplicated")
    ev["records_near_duplicated"] += mu["evidence"]["records_near_duplicated"]
    ev["records_first_listed_by_owner"] += mu["evidence"]["records_first_listed_by_owner"]
    ev["tokens_near_duplicated"] += mu["evidence"]["tokens_near_duplicated"]
    for lid, m in mu["evidence"]["matched_listings"].items():
        have = ev["matched_listings"].setdefault(lid, {"provider": m["provider"], "records": 0})
        have["records"] += m["records"]
    uniq["score"] = 1.0 - ev["tokens_near_duplicated"] / ev["tokens"] if ev["tokens"] else 1.0
    ev["media"] = {"score": mu["score"], **mu["evidence"]}
