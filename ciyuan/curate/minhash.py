"""MinHash signatures and LSH band keys: the one implementation curation and appraisal share.

Why one: ``near_dedup`` (duplicates inside a dataset) and appraisal's uniqueness (duplicates
across the catalog) answer the same question at different scales. With two copies a fix or a
speed-up in one never reached the other, and the two disagreed on what an empty document's
signature is. Callers bring their own shingles (word n-grams, character n-grams) as 64-bit
hashes; everything after that lives here.

* :func:`signatures` turns shingle sets into ``(n, num_perm)`` uint32 signatures (rensa's
  Rust MinHash over the flat hash array, one call per batch). A set with no shingle gets the
  :data:`EMPTY` row, which :func:`valid` excludes from banding, so empty documents never match.
* :func:`band_keys` mixes each band's ``rows`` values into one 64-bit key seeded by the band
  number, so different bands never share a key by accident. :data:`BAND_HASH` names the formula;
  anything that stores keys on disk records it and re-keys when it changes.
* :func:`agreement` is the share of equal slots: the unbiased estimate of Jaccard similarity.
* :func:`candidate_probability` is the chance that a pair of similarity ``s`` shares a band.
"""

from __future__ import annotations

import numpy as np

from ciyuan.curate.text import mix64

EMPTY = np.uint32(0xFFFFFFFF)
BAND_HASH = "fnv1a-mix64/1"  # the band-key formula below; stored beside keys written to disk
_PRIME = np.uint64(0x100000001B3)


def _rensa():
    import rensa

    return rensa.RMinHash


def signatures(hashes: np.ndarray, offsets: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """MinHash signatures of the sets ``hashes[offsets[i]:offsets[i + 1]]``, one row per set.

    ``hashes`` is uint64 (shingle hashes of every set back to back), ``offsets`` has one entry
    more than there are sets. Sets without a member get an all-:data:`EMPTY` row.
    """
    offsets = np.asarray(offsets, dtype=np.uint64)
    n = len(offsets) - 1
    if n <= 0:
        return np.zeros((0, num_perm), dtype=np.uint32)
    sizes = np.diff(offsets.astype(np.int64))
    if not sizes.any():
        return np.full((n, num_perm), EMPTY, dtype=np.uint32)
    flat = np.ascontiguousarray(hashes, dtype=np.uint64)
    mat = _rensa().digest_matrix_from_flat_token_hashes(flat, offsets, num_perm, seed)
    sig = np.asarray(mat.to_rows(), dtype=np.uint32).reshape(n, num_perm)
    sig[sizes == 0] = EMPTY
    return sig


def valid(sig: np.ndarray) -> np.ndarray:
    """Rows that came from a non-empty set (the others are never banded or matched)."""
    return ~(np.asarray(sig) == EMPTY).all(axis=1)


def band_keys(sig: np.ndarray, bands: int, rows: int, chunk: int = 1 << 18) -> np.ndarray:
    """``(n, bands)`` uint64 keys; band ``b`` hashes slots ``b*rows .. (b+1)*rows - 1``.

    Works through ``chunk`` rows at a time, so a memory-mapped signature file of any size is
    read once with bounded extra memory.
    """
    n = len(sig)
    if bands * rows > (sig.shape[1] if sig.ndim == 2 else 0):
        raise ValueError(f"bands x rows = {bands * rows} exceeds the signature length")
    out = np.empty((n, bands), dtype=np.uint64)
    seeds = np.arange(1, bands + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for lo in range(0, n, chunk):
            s = np.asarray(sig[lo : lo + chunk, : bands * rows]).reshape(-1, bands, rows).astype(np.uint64)
            key = np.broadcast_to(seeds, s.shape[:2]).copy()
            for c in range(rows):
                key *= _PRIME
                key += s[:, :, c]
            out[lo : lo + chunk] = mix64(key)
    return out


def agreement(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of equal slots per row pair: the MinHash estimate of their Jaccard similarity."""
    return (np.asarray(a) == np.asarray(b)).mean(axis=1)


def candidate_probability(s: float, bands: int, rows: int) -> float:
    """Chance that two sets of Jaccard similarity ``s`` share at least one band key."""
    return 1.0 - (1.0 - s**rows) ** bands
