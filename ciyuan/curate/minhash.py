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
* :func:`shingles` makes the shingle hashes ``near_dedup`` uses (word ``n``-grams of lowercased
  ``\\w+`` words; character ``n``-grams for Chinese/Japanese), for a whole batch of documents in a
  few numpy passes over their code points instead of a regex and a string per word.
"""

from __future__ import annotations

import re

import numpy as np

from ciyuan.curate.text import is_cjk, mix64

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


# --------------------------------------------------------------------------- shingles

# code points hashed at once: bounds the arrays whatever the documents' size; also the size of the
# power tables below (two of 8 bytes a code point: 1 << 20 builds in ~0.05 CPU s, 4 << 20 took ~0.2)
_CHUNK_CHARS = 1 << 20
_WORD_BMP: np.ndarray | None = None


def _word_chars(cps: np.ndarray) -> np.ndarray:
    """Which code points ``re``'s ``\\w`` matches (``str.isalnum()`` or ``_``), as a boolean mask."""
    global _WORD_BMP
    if _WORD_BMP is None:  # one regex pass over the BMP (surrogates are not characters: never words)
        table = np.zeros(0x10000, dtype=bool)
        bmp = "".join(chr(i) if not 0xD800 <= i < 0xE000 else " " for i in range(0x10000))
        for m in re.finditer(r"\w+", bmp):
            table[m.start() : m.end()] = True
        _WORD_BMP = table
    if not len(cps) or int(cps.max()) <= 0xFFFF:
        return _WORD_BMP[cps]
    out = _WORD_BMP[np.minimum(cps, 0xFFFF)]
    astral = cps > 0xFFFF
    if astral.any():
        cp = np.unique(cps[astral])
        ok = cp[[chr(int(c)).isalnum() for c in cp]]
        out[astral] = np.isin(cps[astral], ok)
    return out


def _windows(tokens: np.ndarray, doc_starts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every run of ``n`` tokens inside one document (a shorter document: all its tokens).

    ``tokens`` is the flat uint64 token hashes of the documents, ``doc_starts`` their offsets plus
    the total at the end. Returns (flat window hashes, offsets per document). The same values as
    :func:`ciyuan.curate.text.window_hashes` document by document.
    """
    docs = len(doc_starts) - 1
    lens = np.diff(doc_starts)
    total = len(tokens)
    counts = np.maximum(lens - n + 1, np.minimum(lens, 1))  # windows per document
    with np.errstate(over="ignore"):
        if total >= n:
            acc = np.zeros(total - n + 1, dtype=np.uint64)
            for k in range(n):
                acc = acc * _PRIME + tokens[k : k + total - n + 1]
            first = np.arange(total - n + 1)
            doc_of = np.searchsorted(doc_starts, first, side="right") - 1
            keep = first + n <= doc_starts[doc_of + 1]
            full = mix64(acc[keep])
        else:
            full = np.zeros(0, dtype=np.uint64)
        short = np.nonzero((lens > 0) & (lens < n))[0]
        if not len(short):
            return full, np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        # documents shorter than n: one shingle of all their tokens; merge them in document order
        extra = np.empty(len(short), dtype=np.uint64)
        for i, d in enumerate(short.tolist()):
            acc1 = np.zeros(1, dtype=np.uint64)
            for t in tokens[doc_starts[d] : doc_starts[d + 1]]:
                acc1 = acc1 * _PRIME + t
            extra[i] = mix64(acc1)[0]
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    out = np.empty(int(offsets[-1]), dtype=np.uint64)
    is_short = np.zeros(docs, dtype=bool)
    is_short[short] = True
    normal = ~is_short & (lens > 0)
    c = counts[normal]
    full_pos = np.repeat(offsets[:-1][normal], c) + (np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c))
    out[full_pos] = full
    out[offsets[short]] = extra
    return out, offsets


_POW: np.ndarray = np.ones(1, dtype=np.uint64)  # _CHAR_P ** i (mod 2**64)
_INV: np.ndarray = np.ones(1, dtype=np.uint64)  # its inverse: _CHAR_P ** -i (mod 2**64)
_CHAR_P = 0x9E3779B97F4A7C15  # odd, so invertible modulo 2**64


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first ``n`` powers of ``_CHAR_P`` and of its inverse, grown on demand and kept."""
    global _POW, _INV
    if len(_POW) < n:
        size = max(n, 2 * len(_POW), _CHUNK_CHARS + (1 << 16))
        with np.errstate(over="ignore"):
            for base, name in ((_CHAR_P, "_POW"), (pow(_CHAR_P, -1, 1 << 64), "_INV")):
                steps = np.full(size, base, dtype=np.uint64)
                steps[0] = 1
                globals()[name] = np.cumprod(steps)
    return _POW[:n], _INV[:n]


def prepare() -> None:
    """Build the per-process tables :func:`shingles` needs (word characters, hash powers) now.

    Why: a curation driver that builds them before it forks its workers hands them over for free;
    each worker would otherwise build its own on its first batch.
    """
    _word_chars(np.zeros(1, dtype=np.uint32))
    _powers(1)


def _word_tokens(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-word uint64 hashes of lowercased texts (``\\w+`` runs), flat, with per-text offsets.

    A word's hash is its polynomial hash ``sum(c_j * P**j)`` over its code points, read off one
    prefix sum of the whole batch (``(H[end] - H[start]) * P**-start``): three passes over the
    characters, however many words, then a mix per word.
    """
    joined = "\x00".join(texts)  # NUL is not a word character: no word spans two texts
    cps = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    isw = _word_chars(cps)
    edge = np.diff(isw.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts = np.flatnonzero(edge == 1)
    ends = np.flatnonzero(edge == -1)
    pw, inv = _powers(len(cps) + 1)
    with np.errstate(over="ignore"):
        prefix = np.zeros(len(cps) + 1, dtype=np.uint64)
        np.cumsum(cps.astype(np.uint64) * pw[: len(cps)], out=prefix[1:])
        words = (prefix[ends] - prefix[starts]) * inv[starts]
        words = mix64(words + (ends - starts).astype(np.uint64))
    text_starts = np.concatenate(([0], np.cumsum([len(t) + 1 for t in texts])))
    offsets = np.searchsorted(starts, text_starts[:-1]).tolist() + [len(starts)]
    return words, np.asarray(offsets, dtype=np.int64)


def _cjk_tokens(text: str) -> np.ndarray:
    """Code points of the word characters of a Chinese/Japanese text (no spaces, no punctuation)."""
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    keep = _word_chars(cps) & (cps != 95)
    return mix64(cps[keep].astype(np.uint64))


def shingles(texts: list[str], word_n: int, cjk_n: int) -> tuple[np.ndarray, np.ndarray]:
    """Shingle hashes of ``texts`` (flat uint64, possibly repeated) and the offsets of each text.

    Spaced text: runs of ``word_n`` lowercased words; Chinese/Japanese: runs of ``cjk_n``
    characters. A text shorter than a run is one shingle; a text without words has none.
    """
    low = [t.lower() for t in texts]
    cjk = [is_cjk(t) for t in texts]
    out: list[tuple[np.ndarray, np.ndarray]] = []
    sizes: list[np.ndarray] = []
    i = 0
    while i < len(low):
        if cjk[i]:
            toks = _cjk_tokens(low[i])
            w, off = _windows(toks, np.array([0, len(toks)]), cjk_n)
            out.append((w, off))
            sizes.append(np.diff(off))
            i += 1
            continue
        j, chars = i, 0
        while j < len(low) and not cjk[j] and (j == i or chars + len(low[j]) <= _CHUNK_CHARS):
            chars += len(low[j])
            j += 1
        toks, starts = _word_tokens(low[i:j])
        w, off = _windows(toks, starts, word_n)
        out.append((w, off))
        sizes.append(np.diff(off))
        i = j
    flat = np.concatenate([w for w, _ in out]) if out else np.zeros(0, np.uint64)
    offsets = np.concatenate(([0], np.cumsum(np.concatenate(sizes)))) if sizes else np.zeros(1, np.int64)
    return flat, offsets.astype(np.int64)
