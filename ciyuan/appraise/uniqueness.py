"""Uniqueness against the catalog: MinHash signatures of every listed version in an on-disk LSH index.

Why: a buyer pays for tokens that are new to the market. A provider who re-lists someone else's
data (or a lightly edited copy) should see a uniqueness near zero, and the price follows.

* **Signature**: MinHash (:mod:`ciyuan.curate.minhash`, the implementation curation's
  ``near_dedup`` uses too; 128 permutations, fixed seed) over the set of character 5-grams of the
  case- and whitespace-folded text; works for Chinese and English alike.
* **LSH**: 16 bands of 8 rows; a band's key is :func:`ciyuan.curate.minhash.band_keys` of its 8
  values (a segment written with another key formula is re-keyed from its signatures on first use). Two records whose
  Jaccard similarity is s share at least one band key with probability 1 - (1 - s^8)^16
  (0.5 at s ≈ 0.70, 0.98 at s = 0.85). Every candidate is then verified: the share of equal
  signature values (an unbiased Jaccard estimate) must reach ``threshold`` (0.7).
* **Index on disk**: one *segment* per listed version, appended when it is listed: per band a
  sorted uint64 key array and the row each key came from, the signatures, and a listing code per
  row; a SQLite file maps codes to listing id, provider and version. Lookups are binary searches
  on memory-mapped arrays, so the index scales with disk, not memory; ``compact`` merges
  segments so a lookup touches a few files however many listings there are.
* ``uniqueness = tokens of records with no verified near-duplicate in another listing / tokens``.
  The first to list a record keeps it: a record is a copy only when the earliest listing holding
  it belongs to another provider, so the original provider's score does not fall when a copycat
  lists the same data later (the copycat's does).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np

from ciyuan.appraise.features import rolling_ngram_hashes
from ciyuan.curate import minhash
from ciyuan.errors import InvalidInput

NUM_PERM = 128
BANDS = 16
ROWS = NUM_PERM // BANDS
SHINGLE = 5
SEED = 1729
THRESHOLD = 0.7
MAX_RUN = 32  # candidates looked at per band key (bounds the work for very common keys)
EMPTY = minhash.EMPTY


def _codes(texts: Sequence[str | None]) -> tuple[np.ndarray, np.ndarray]:
    arrays = [np.frombuffer(" ".join((t or "").lower().split()).encode("utf-32-le"), dtype=np.uint32)
              for t in texts]  # fmt: skip
    lens = np.array([len(a) for a in arrays], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)])
    codes = np.concatenate(arrays).astype(np.uint64) if arrays else np.zeros(0, np.uint64)
    return codes, starts


def signatures(texts: Sequence[str | None]) -> np.ndarray:
    """MinHash signatures (n, 128) uint32; an empty text gets an all-0xFFFFFFFF row (never matched)."""
    n = len(texts)
    if n == 0:
        return np.zeros((0, NUM_PERM), np.uint32)
    codes, starts = _codes(texts)
    lens = np.diff(starts)
    h, doc = rolling_ngram_hashes(codes, starts, SHINGLE)
    # texts shorter than one shingle: the whole (non-empty) text is the single shingle
    short = np.nonzero((lens > 0) & (lens < SHINGLE))[0]
    if len(short):
        extra_h, extra_d = [], []
        for i in short:
            seg = codes[starts[i] : starts[i + 1]]
            hh, _ = rolling_ngram_hashes(seg, np.array([0, len(seg)]), len(seg))
            extra_h.append(hh[0])
            extra_d.append(i)
        h = np.concatenate([h, np.array(extra_h, np.uint64)])
        doc = np.concatenate([doc, np.array(extra_d, np.int64)])
        order = np.argsort(doc, kind="stable")
        h, doc = h[order], doc[order]
    offsets = np.searchsorted(doc, np.arange(n + 1)).astype(np.uint64)
    return minhash.signatures(h, offsets, NUM_PERM, SEED)


def band_keys(sig: np.ndarray) -> np.ndarray:
    """(n, BANDS) uint64 keys of the catalog's banding (see :func:`ciyuan.curate.minhash.band_keys`)."""
    return minhash.band_keys(sig, BANDS, ROWS)


_valid = minhash.valid


def _expand(lo: np.ndarray, hi: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """For runs [lo, hi) return (run index, position) pairs, at most ``cap`` per run."""
    cnt = np.minimum(hi - lo, cap)
    qi = np.repeat(np.arange(len(lo)), cnt)
    first = np.repeat(np.cumsum(cnt) - cnt, cnt)
    pos = np.repeat(lo, cnt) + (np.arange(cnt.sum()) - first)
    return qi, pos


def near_duplicates_within(sig: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Mask of records that near-duplicate an earlier record of the same set.

    Per band, records are grouped by key and each non-first member is checked against the
    first; a record is a duplicate when any band's check passes. Transitive chains may be
    missed, which can only *under*-count duplicates.
    """
    n = len(sig)
    dup = np.zeros(n, bool)
    if n < 2:
        return dup
    keys = band_keys(sig)
    valid = _valid(sig)
    for b in range(BANDS):
        order = np.lexsort((np.arange(n), keys[:, b]))
        order = order[valid[order]]
        kb = keys[order, b]
        if len(kb) < 2:
            continue
        new_run = np.concatenate([[True], kb[1:] != kb[:-1]])
        run_first = order[np.maximum.accumulate(np.where(new_run, np.arange(len(kb)), 0))]
        cand = ~new_run
        a, f = order[cand], run_first[cand]
        keep = ~dup[a]
        a, f = a[keep], f[keep]
        if len(a):
            sim = minhash.agreement(sig[a], sig[f])
            dup[a[sim >= threshold]] = True
    return dup


class CatalogIndex:
    """Append-only LSH index of the signatures of listed versions, in a folder on disk."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        (self.root / "segments").mkdir(parents=True, exist_ok=True)
        self._db = self.root / "index.sqlite"
        with closing(self._connect()) as con, con:
            con.execute(
                "CREATE TABLE IF NOT EXISTS listings (code INTEGER PRIMARY KEY, listing_id TEXT UNIQUE NOT NULL,"
                " provider TEXT NOT NULL, version_id TEXT NOT NULL, rows INTEGER NOT NULL, added_at REAL NOT NULL)"
            )
            con.execute("CREATE TABLE IF NOT EXISTS segments (name TEXT PRIMARY KEY, rows INTEGER NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self._db, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        return con

    # -- writing ---------------------------------------------------------------------------

    def add(self, listing_id: str, provider: str, version_id: str, sig: np.ndarray) -> dict:
        """Append the signatures of one listed version as a new segment (idempotent per listing)."""
        sig = np.asarray(sig, dtype=np.uint32)
        if sig.ndim != 2 or sig.shape[1] != NUM_PERM:
            raise InvalidInput(f"signatures must be (n, {NUM_PERM})", hint="make them with signatures()")
        with closing(self._connect()) as con, con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT code FROM listings WHERE listing_id=?", (listing_id,)).fetchone()
            if row:
                return {"listing_id": listing_id, "code": row[0], "added": 0}
            cur = con.execute(
                "INSERT INTO listings (listing_id, provider, version_id, rows, added_at) VALUES (?,?,?,?,?)",
                (listing_id, provider, version_id, int(len(sig)), time.time()),
            )
            code = int(cur.lastrowid)
            sig = sig[_valid(sig)]
            name = self._write_segment(sig, np.full(len(sig), code, dtype=np.uint32))
            con.execute("INSERT INTO segments (name, rows) VALUES (?, ?)", (name, len(sig)))
        return {"listing_id": listing_id, "code": code, "added": int(len(sig)), "segment": name}

    def _new_segment_dir(self) -> tuple[str, Path]:
        name = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        tmp = self.root / "segments" / f".{name}.tmp"
        tmp.mkdir()
        return name, tmp

    def _write_segment(self, sig: np.ndarray, codes: np.ndarray, place: tuple[str, Path] | None = None) -> str:
        """Write keys, rows, codes (and the signatures unless ``sig`` is already ``place``'s sigs.npy)."""
        name, tmp = place or self._new_segment_dir()
        n = len(sig)
        keys = band_keys(sig) if n else np.zeros((0, BANDS), np.uint64)
        # one band at a time, straight into the files: memory stays at the signatures + keys
        out_keys = np.lib.format.open_memmap(tmp / "keys.npy", mode="w+", dtype=np.uint64, shape=(BANDS, n))
        out_rows = np.lib.format.open_memmap(tmp / "rows.npy", mode="w+", dtype=np.uint32, shape=(BANDS, n))
        for b in range(BANDS):
            order = np.argsort(keys[:, b], kind="stable")
            out_keys[b] = keys[order, b]
            out_rows[b] = order
        out_keys.flush()
        out_rows.flush()
        del out_keys, out_rows, keys
        if place is None:
            np.save(tmp / "sigs.npy", sig)
        np.save(tmp / "codes.npy", codes)
        (tmp / "meta.json").write_text(
            json.dumps(
                {
                    "rows": int(len(sig)),
                    "bands": BANDS,
                    "rows_per_band": ROWS,
                    "num_perm": NUM_PERM,
                    "seed": SEED,
                    "shingle": SHINGLE,
                    "band_hash": minhash.BAND_HASH,
                }
            )
        )
        os.replace(tmp, self.root / "segments" / name)
        return name

    def _ensure_keys(self, seg: Path) -> None:
        """Re-key a segment written with an older band-key formula, from its stored signatures."""
        meta_path = seg / "meta.json"
        meta = json.loads(meta_path.read_text())
        if meta.get("band_hash") == minhash.BAND_HASH:
            return
        sig = np.load(seg / "sigs.npy", mmap_mode="r")
        keys = band_keys(sig) if len(sig) else np.zeros((0, BANDS), np.uint64)
        order = np.argsort(keys, axis=0, kind="stable").T.astype(np.uint32)
        sorted_keys = np.take_along_axis(keys, order.T.astype(np.int64), axis=0).T
        for name, arr in (("keys", np.ascontiguousarray(sorted_keys)), ("rows", np.ascontiguousarray(order))):
            tmp = seg / f".{name}.npy.tmp"
            with open(tmp, "wb") as fh:
                np.save(fh, arr)
            os.replace(tmp, seg / f"{name}.npy")
        tmp = seg / ".meta.json.tmp"
        tmp.write_text(json.dumps({**meta, "band_hash": minhash.BAND_HASH}))
        os.replace(tmp, meta_path)

    def compact(self) -> dict:
        """Merge every segment into one (an LSM-style merge); lookups then touch one segment."""
        with closing(self._connect()) as con, con:
            con.execute("BEGIN IMMEDIATE")
            names = [r[0] for r in con.execute("SELECT name FROM segments ORDER BY name")]
            if len(names) < 2:
                return {"segments": len(names)}
            parts = [np.load(self.root / "segments" / n / "sigs.npy", mmap_mode="r") for n in names]
            total = int(sum(len(p) for p in parts))
            place = self._new_segment_dir()
            # signatures are copied into the merged file segment by segment, never all in memory
            merged_sig = np.lib.format.open_memmap(place[1] / "sigs.npy", mode="w+", dtype=np.uint32,
                                                   shape=(total, NUM_PERM))  # fmt: skip
            at = 0
            for p in parts:
                merged_sig[at : at + len(p)] = p
                at += len(p)
            merged_sig.flush()
            codes = np.concatenate([np.load(self.root / "segments" / n / "codes.npy") for n in names])
            merged = self._write_segment(merged_sig, codes, place)
            del merged_sig, parts
            con.execute("DELETE FROM segments")
            con.execute("INSERT INTO segments (name, rows) VALUES (?, ?)", (merged, total))
        for n in names:
            shutil.rmtree(self.root / "segments" / n, ignore_errors=True)
        return {"segments": 1, "merged": len(names)}

    # -- reading ---------------------------------------------------------------------------

    def listings(self) -> list[dict]:
        with closing(self._connect()) as con:
            rows = con.execute("SELECT code, listing_id, provider, version_id, rows FROM listings ORDER BY code")
            return [dict(zip(("code", "listing_id", "provider", "version_id", "rows"), r, strict=True)) for r in rows]

    def size(self) -> int:
        with closing(self._connect()) as con:
            return int(con.execute("SELECT COALESCE(SUM(rows), 0) FROM segments").fetchone()[0])

    def _segments(self) -> list[Path]:
        with closing(self._connect()) as con:
            return [self.root / "segments" / r[0] for r in con.execute("SELECT name FROM segments ORDER BY name")]

    def query(
        self,
        sig: np.ndarray,
        exclude_providers: Iterable[str] = (),
        exclude_listings: Iterable[str] = (),
        threshold: float = THRESHOLD,
        earliest: bool = False,
    ) -> np.ndarray:
        """Listing code of a verified near-duplicate for each query row, or 0 when there is none.

        With ``earliest`` the code is the smallest (codes grow in listing order, so it names the
        first listing that held the record); otherwise any match, found sooner.
        """
        sig = np.asarray(sig, dtype=np.uint32)
        found = np.zeros(len(sig), dtype=np.int64)
        if len(sig) == 0:
            return found
        ex_p, ex_l = set(exclude_providers), set(exclude_listings)
        excluded = np.array(
            [r["code"] for r in self.listings() if r["provider"] in ex_p or r["listing_id"] in ex_l], dtype=np.int64
        )
        qkeys = band_keys(sig)
        valid = _valid(sig)
        for seg in self._segments():
            self._ensure_keys(seg)
            keys = np.load(seg / "keys.npy", mmap_mode="r")
            if keys.shape[1] == 0:
                continue
            rows = np.load(seg / "rows.npy", mmap_mode="r")
            sigs = np.load(seg / "sigs.npy", mmap_mode="r")
            codes = np.load(seg / "codes.npy", mmap_mode="r")
            for b in range(BANDS):
                todo = np.nonzero(valid if earliest else (found == 0) & valid)[0]
                if len(todo) == 0:
                    break
                kb = keys[b]
                # sorted needles walk the memory map in order; the right edge only for the rare hits
                q_order = np.argsort(qkeys[todo, b], kind="stable")
                todo = todo[q_order]
                q = qkeys[todo, b]
                lo = np.searchsorted(kb, q, side="left")
                hit = np.asarray(kb[np.minimum(lo, len(kb) - 1)]) == q
                if not hit.any():
                    continue
                hi = np.searchsorted(kb, q[hit], side="right")
                qi, pos = _expand(lo[hit], hi, MAX_RUN)
                qrow = todo[hit][qi]
                srow = np.asarray(rows[b][pos], dtype=np.int64)
                order = np.argsort(srow, kind="stable")  # sorted reads from the memory map
                qrow, srow = qrow[order], srow[order]
                c = np.asarray(codes[srow], dtype=np.int64)
                keep = ~np.isin(c, excluded)
                qrow, srow, c = qrow[keep], srow[keep], c[keep]
                if len(qrow) == 0:
                    continue
                sim = minhash.agreement(sig[qrow], sigs[srow])
                ok = sim >= threshold
                if earliest:
                    first = np.where(found == 0, np.iinfo(np.int64).max, found)
                    np.minimum.at(first, qrow[ok], c[ok])
                    found = np.where(first == np.iinfo(np.int64).max, 0, first)
                else:
                    found[qrow[ok]] = c[ok]
        return found


def uniqueness(
    sig: np.ndarray,
    tokens: np.ndarray,
    index: CatalogIndex,
    exclude_providers: Iterable[str] = (),
    exclude_listings: Iterable[str] = (),
    owner: str | None = None,
) -> dict:
    """Share of tokens with no verified near-duplicate in another listing, with evidence.

    With ``owner`` (the appraising provider) the first to list a record keeps it: a record counts
    as copied only when its earliest listing belongs to someone else, so a later copycat does not
    lower the original provider's score, while the copycat's own score falls.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    names = {r["code"]: r for r in index.listings()}
    hit = index.query(sig, exclude_providers, exclude_listings, earliest=owner is not None)
    first_here = np.zeros(len(hit), dtype=bool)
    if owner is not None and (hit > 0).any():
        mine = np.array([c for c, r in names.items() if r["provider"] == owner], dtype=np.int64)
        first_here = np.isin(hit, mine) & (hit > 0)
        hit = np.where(first_here, 0, hit)
    total = int(tokens.sum())
    dup_tokens = int(tokens[hit > 0].sum())
    by_code = {}
    if (hit > 0).any():
        codes, counts = np.unique(hit[hit > 0], return_counts=True)
        by_code = {names[int(c)]["listing_id"]: {"provider": names[int(c)]["provider"], "records": int(n)}
                   for c, n in zip(codes, counts, strict=True)}  # fmt: skip
    return {
        "score": 1.0 - dup_tokens / total if total else 1.0,
        "evidence": {
            "records": int(len(sig)),
            "records_near_duplicated": int((hit > 0).sum()),
            "records_first_listed_by_owner": int(first_here.sum()),
            "owner": owner,
            "tokens": total,
            "tokens_near_duplicated": dup_tokens,
            "matched_listings": by_code,
            "index_signatures": index.size(),
            "excluded_providers": sorted(set(exclude_providers)),
            "method": f"minhash(num_perm={NUM_PERM}, char {SHINGLE}-grams) lsh({BANDS}x{ROWS}) "
            f"verified jaccard>={THRESHOLD}",
        },
    }
