"""Perceptual hashes of images and a near-duplicate index that never compares all pairs.

``phash`` is the DCT hash: the image in grey, resized to 32x32, its 2-D DCT-II, the 8x8 lowest
frequencies against their median: 64 bits, as a Python int (bit 63 is the DC term). Resizing,
recompressing and light cropping move few of those bits; different pictures differ in about half.

``HammingIndex`` finds every pair within Hamming distance ``k`` by multi-index hashing
(Norouzi, Punjani and Fleet, CVPR 2012): the 64 bits are cut into ``m`` blocks; two hashes within
``k`` agree to within ``r = k // m`` bits in at least one block (else they would differ in at least
``m * (r + 1) > k`` bits). With ``m = k + 1`` that is an exact match of one block; fewer, wider
blocks searched to radius ``r`` give far fewer false candidates, and the layout is picked for the
index size from a cost estimate. Each block is a bucket table (``2**width`` counts and offsets
over the ids sorted by that block); a hash looks up its block value flipped in at most ``r``
bits, and every candidate is verified by popcount. A pair is kept only from the first block where
it qualifies, so it is reported once without a set. All of it runs as numpy array operations, in
chunks bounded to a few million candidates.
"""

from __future__ import annotations

import io
import os
from functools import cache
from itertools import combinations
from math import comb

import numpy as np

BITS = 64
MAX_BLOCK_BITS = 20  # a bucket table has 2**width entries (two int64 arrays: 16 MiB at 20 bits)
CHUNK_CANDIDATES = 250_000  # candidates expanded at once: temporaries stay in the CPU caches

_ORIENT = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE", 6: "ROTATE_270",
           7: "TRANSVERSE", 8: "ROTATE_90"}


@cache
def _dct_matrix(n: int = 32) -> np.ndarray:
    """Orthonormal DCT-II matrix: ``D @ x`` transforms the columns of ``x``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2 / n)
    d[0] /= np.sqrt(2)
    return d


def phash(image) -> int:
    """The 64-bit DCT perceptual hash of a PIL image, a path or the image's bytes.

    The picture as displayed is hashed (EXIF orientation applied), so a photo and its rotated,
    orientation-tagged copy agree. A JPEG is decoded at reduced scale (``draft``): the hash needs
    32x32 pixels, and the DCT-domain downscale keeps exactly the low frequencies it reads.
    """
    from PIL import Image

    own = None
    if not isinstance(image, Image.Image):
        src = io.BytesIO(image) if isinstance(image, bytes | bytearray) else image
        own = image = Image.open(src if not isinstance(src, str | os.PathLike) else os.fspath(src))
    try:
        orientation = 1
        if image.format != "PNG" or "exif" in image.info:
            orientation = image.getexif().get(0x0112, 1)
        if image.format == "JPEG":
            image.draft("L", (128, 128))
        grey = image.convert("L").resize((32, 32), Image.Resampling.LANCZOS, reducing_gap=2.0)
        if orientation in _ORIENT:
            grey = grey.transpose(getattr(Image.Transpose, _ORIENT[orientation]))
        return hash_pixels(np.asarray(grey, dtype=np.float64))
    finally:
        if own is not None:
            own.close()


def hash_pixels(grey32: np.ndarray) -> int:
    """The hash of a 32x32 grey array (what ``phash`` computes after resizing)."""
    d = _dct_matrix(32)
    low = (d @ grey32 @ d.T)[:8, :8]
    bits = (low > np.median(low)).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def as_hashes(hashes) -> np.ndarray:
    """Hashes as a uint64 array (from Python ints up to 2**64 - 1, or any integer array)."""
    if isinstance(hashes, np.ndarray) and hashes.dtype == np.uint64:
        return hashes
    if isinstance(hashes, np.ndarray) and hashes.dtype.kind in "iu":
        return hashes.astype(np.uint64)
    return np.fromiter((int(h) for h in hashes), dtype=np.uint64)


def all_pairs(hashes, threshold: int, *, chunk: int = 256) -> np.ndarray:
    """Every pair within ``threshold`` by comparing all pairs (the reference the index must equal).

    Rows ``(i, j, distance)`` with ``i < j``, sorted. Quadratic: for tests and the benchmark.
    """
    h = as_hashes(hashes)
    out = []
    for s in range(0, len(h), chunk):
        rows = h[s : s + chunk]
        d = np.bitwise_count(rows[:, None] ^ h[None, s:])
        ii, jj = np.nonzero(d <= threshold)
        keep = jj > ii
        ii, jj = ii[keep], jj[keep]
        out.append(np.stack([ii + s, jj + s, d[ii, jj]], axis=1).astype(np.int64))
    return _sorted(np.concatenate(out) if out else np.empty((0, 3), np.int64))


def _sorted(rows: np.ndarray) -> np.ndarray:
    if len(rows) == 0:
        return rows.reshape(0, 3).astype(np.int64)
    return rows[np.lexsort((rows[:, 1], rows[:, 0]))]


@cache
def _patterns(width: int, radius: int) -> np.ndarray:
    """Every ``width``-bit value with at most ``radius`` bits set (the flips a lookup tries)."""
    out = [0]
    for r in range(1, radius + 1):
        out.extend(sum(1 << b for b in bits) for bits in combinations(range(width), r))
    return np.array(out, dtype=np.int64)


def _widths(m: int, bits: int) -> list[int]:
    base, extra = divmod(bits, m)
    return [base + (1 if i < extra else 0) for i in range(m)]


def choose_layout(threshold: int, n: int, bits: int = BITS) -> tuple[list[int], int] | None:
    """``(block widths, radius)`` with the least estimated work for ``n`` hashes, or ``None``
    when no layout beats comparing all pairs (a threshold near half the bits)."""
    best = None
    for m in range(1, min(max(threshold + 1, 16), bits) + 1):
        widths = _widths(m, bits)
        if max(widths) > MAX_BLOCK_BITS:
            continue
        r = threshold // m
        cost = 0.0
        for w in widths:
            probes = sum(comb(w, i) for i in range(r + 1))
            cost += probes * (1.0 + 1.5 * n / 2**w)  # a lookup, then the candidates it brings
        if cost > n * 0.5 or sum(comb(w, i) for w in widths for i in range(r + 1)) > 50_000:
            continue  # more than half the all-pairs work per hash, or a probe list too long
        if best is None or cost < best[0]:
            best = (cost, widths, r)
    return (best[1], best[2]) if best else None


class HammingIndex:
    """Hashes added in order (their position is their id); ``pairs()`` and ``query()`` find every
    hash within ``threshold`` bits, identical to ``all_pairs`` (tests/curate/test_phash.py)."""

    def __init__(self, threshold: int, *, bits: int = BITS):
        if not 0 <= threshold <= bits or not 1 <= bits <= 64:
            raise ValueError(f"threshold must be 0..{bits} and bits 1..64 (got {threshold}, {bits})")
        self.threshold = threshold
        self.bits = bits
        self._parts: list[np.ndarray] = []
        self._h = np.empty(0, np.uint64)
        self._tables = None

    def __len__(self) -> int:
        return len(self._h) + sum(len(p) for p in self._parts)

    def add(self, hashes) -> None:
        h = as_hashes(hashes)
        if self.bits < 64 and len(h) and int(h.max()) >> self.bits:
            raise ValueError(f"a hash has more than {self.bits} bits")
        self._parts.append(h)
        self._tables = None

    @property
    def hashes(self) -> np.ndarray:
        if self._parts:
            self._h = np.concatenate([self._h, *self._parts])
            self._parts = []
        return self._h

    def _build(self):
        h = self.hashes
        layout = choose_layout(self.threshold, len(h), self.bits)
        if layout is None:
            return None
        widths, r = layout
        blocks, shift = [], 0
        for w in widths:
            keys = ((h >> np.uint64(shift)) & np.uint64((1 << w) - 1)).astype(np.int64)
            order = np.argsort(keys, kind="stable")
            counts = np.bincount(keys, minlength=1 << w).astype(np.int32 if len(h) < 2**31 else np.int64)
            starts = np.zeros(1 << w, counts.dtype)
            np.cumsum(counts[:-1], out=starts[1:])
            blocks.append(_Block(shift, w, keys, order, h[order], counts, starts))
            shift += w
        return blocks, r

    def _tables_or_none(self):
        if self._tables is None:
            self._tables = self._build() or "brute"
        return None if self._tables == "brute" else self._tables

    def pairs(self) -> np.ndarray:
        """Every pair of added hashes within the threshold: rows ``(i, j, distance)``, ``i < j``, sorted."""
        tables = self._tables_or_none()
        if tables is None:
            return all_pairs(self.hashes, self.threshold)
        return _sorted(self._search(None, *tables))

    def query(self, hashes) -> np.ndarray:
        """For each given hash, the added hashes within the threshold: rows ``(query position, id,
        distance)``, sorted."""
        q = as_hashes(hashes)
        tables = self._tables_or_none()
        if tables is None:
            h = self.hashes
            rows = []
            for s in range(0, len(q), 256):
                d = np.bitwise_count(q[s : s + 256, None] ^ h[None, :])
                ii, jj = np.nonzero(d <= self.threshold)
                rows.append(np.stack([ii + s, jj, d[ii, jj]], axis=1).astype(np.int64))
            return _sorted(np.concatenate(rows) if rows else np.empty((0, 3), np.int64))
        return _sorted(self._search(q, *tables))

    def _search(self, queries: np.ndarray | None, blocks: list[_Block], r: int) -> np.ndarray:
        """Candidates from every block, verified; ``queries`` None joins the index with itself.

        In the self-join a bucket pair ``(u, u ^ f)`` is visited from its smaller side only (the
        side where the top bit of ``f`` is 0), and inside one bucket only ``i < j`` is kept: each
        candidate pair is expanded once. Only the few candidates within the threshold are then
        traced back to their query and checked against the earlier blocks.
        """
        stored = self.hashes
        q = stored if queries is None else queries
        out = []
        for bi, b in enumerate(blocks):
            pats = _patterns(b.width, r)
            top = np.array([1 << (int(p).bit_length() - 1) if p else 0 for p in pats], dtype=np.int64)
            qkeys = b.keys if queries is None else b.key_of(q)
            per_query = len(pats) * (1 + len(stored) / 2**b.width)
            step = max(1, int(CHUNK_CANDIDATES // per_query))
            for s in range(0, len(q), step):
                qk = qkeys[s : s + step]
                probes = qk[:, None] ^ pats[None, :]
                if queries is None:
                    mine = (qk[:, None] & top[None, :]) == 0  # the smaller key of the bucket pair
                    owner = np.nonzero(mine.ravel())[0]
                    probes = probes.ravel()[owner]
                else:
                    owner = np.arange(probes.size)
                    probes = probes.ravel()
                cnt = b.counts[probes]
                ends = np.cumsum(cnt)
                total = int(ends[-1]) if len(ends) else 0
                if not total:
                    continue
                qpos = s + owner // len(pats)  # query of each probe
                offs = np.arange(total) - np.repeat(ends - cnt - b.starts[probes], cnt)
                x = np.repeat(q[qpos], cnt) ^ b.sorted_hashes[offs]
                d = np.bitwise_count(x)
                hit = np.nonzero(d <= self.threshold)[0]
                if not len(hit):
                    continue
                probe_of = np.searchsorted(ends, hit, side="right")
                qi = qpos[probe_of]
                ids = b.order[offs[hit]]
                x, d = x[hit], d[hit]
                if queries is None:  # inside one bucket (pattern 0) each pair comes twice: keep i < j
                    keep = (pats[owner[probe_of] % len(pats)] != 0) | (ids > qi)
                    qi, ids = np.minimum(qi, ids), np.maximum(qi, ids)
                else:
                    keep = np.ones(len(hit), bool)
                for e in blocks[:bi]:  # qualifies in an earlier block: reported there
                    keep &= np.bitwise_count((x >> np.uint64(e.shift)) & np.uint64(e.mask)) > r
                out.append(np.stack([qi[keep], ids[keep], d[keep]], axis=1).astype(np.int64))
        return np.concatenate(out) if out else np.empty((0, 3), np.int64)


class _Block:
    """One block's bucket table: ids sorted by the block's value, their hashes in that order, and
    each value's count and first offset."""

    __slots__ = ("counts", "keys", "mask", "order", "shift", "sorted_hashes", "starts", "width")

    def __init__(self, shift, width, keys, order, sorted_hashes, counts, starts):
        self.shift, self.width, self.mask = shift, width, (1 << width) - 1
        self.keys, self.order, self.sorted_hashes = keys, order, sorted_hashes
        self.counts, self.starts = counts, starts

    def key_of(self, h: np.ndarray) -> np.ndarray:
        return ((h >> np.uint64(self.shift)) & np.uint64(self.mask)).astype(np.int64)
