"""BM25 over chunks (bm25s), with an analyzer that is right for Chinese, Japanese and Korean.

bm25s only scores the terms it is given, so the analyzer decides what a "word" is. Splitting on
spaces would make a whole Chinese sentence one term and nothing would ever match; a dictionary
segmenter (jieba) is not a dependency and knows only Chinese. So runs of CJK characters (Han,
kana, Hangul) become overlapping character bigrams (a lone character stays a unigram), the
standard language-independent choice for CJK search, and every other run of letters and digits
is one lower-cased word. Text is NFKC-normalised first, so full-width Latin letters and
half-width katakana meet their usual forms. tests/knowledge/test_bm25.py measures recall per
language on a question set made in the test.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

ANALYZER = "cjk-bigram+words"
ANALYZER_VERSION = 1

_CJK = (
    "\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\ua960-\ua97f\uac00-\ud7af\uf900-\ufaff\uff66-\uff9f"
)
_TERM = re.compile(rf"[{_CJK}]+|(?:(?![{_CJK}])[^\W_])+")
_CJK_RUN = re.compile(rf"[{_CJK}]")


def analyze(text: str) -> list[str]:
    """The terms of ``text``: CJK runs as character bigrams, other runs of letters/digits as words."""
    out: list[str] = []
    for m in _TERM.finditer(unicodedata.normalize("NFKC", text or "").lower()):
        run = m.group()
        if _CJK_RUN.match(run):
            if len(run) == 1:
                out.append(run)
            else:
                out.extend(run[i : i + 2] for i in range(len(run) - 1))
        else:
            out.append(run)
    return out


def describe() -> dict:
    """The analyzer's identity, stored in the index manifest (a change rebuilds the index)."""
    return {"name": ANALYZER, "version": ANALYZER_VERSION, "k1": 1.5, "b": 0.75, "method": "lucene"}


class Bm25Index:
    """A bm25s index of chunk texts; rows are chunk positions in the index's chunk table."""

    def __init__(self, retriever, size: int) -> None:
        self._r = retriever
        self.size = size

    @classmethod
    def build(cls, texts: Sequence[str]) -> Bm25Index:
        import bm25s

        r = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
        terms = [analyze(t) for t in texts]
        if not any(terms):  # bm25s needs one term somewhere: a sentinel row no analyzed query can match
            terms.append(["\x00"])
        r.index(terms, show_progress=False)
        return cls(r, len(texts))

    def save(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)
        self._r.save(folder, show_progress=False)

    @classmethod
    def load(cls, folder: str, size: int) -> Bm25Index:
        import bm25s

        return cls(bm25s.BM25.load(folder, mmap=True, show_progress=False), size)

    def search(self, query: str, k: int) -> list[tuple[int, float]]:
        """``(row, score)`` of the best ``k`` chunks with a positive score, best first."""
        terms = analyze(query)
        if not terms or self.size == 0:
            return []
        k = min(k, self.size)
        docs, scores = self._r.retrieve([terms], k=k, show_progress=False, n_threads=1)
        rows, vals = np.asarray(docs[0]), np.asarray(scores[0])
        return [(int(r), float(v)) for r, v in zip(rows, vals, strict=True) if v > 0 and r < self.size]
