"""Questions made from a base's own records, and recall@k: retrieval measured by use.

A buyer of a knowledge base pays for what retrieval finds, so its appraisal asks whether a
question about a record finds that record. Without human questions, each question is a phrase
sampled from a held-out record and lightly perturbed (one term dropped from the middle, case
and punctuation lost), so an exact substring match is not enough, as with a real paraphrase; the
answer is right when the record is among the top ``k`` results. Phrases are measured in words
for spaced scripts and in characters for Chinese and Japanese (no spaces to count), so every
language gets questions of a comparable length.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence

QUESTIONS_VERSION = 1
_SPACED_WORDS = (5, 9)  # words in a phrase of spaced text
_UNSPACED_CHARS = (8, 14)  # characters in a phrase of Chinese/Japanese text
_PUNCT = re.compile(r"[\W_]+", re.UNICODE)
_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def _unspaced(text: str) -> bool:
    """True when most letters are Chinese/Japanese characters, which need no spaces."""
    letters = [c for c in text if c.isalnum()]
    return bool(letters) and sum(bool(_UNSPACED.match(c)) for c in letters) * 2 > len(letters)


def question_from(text: str, rng: random.Random) -> str | None:
    """A perturbed phrase of ``text``, or None when the text is too short to ask about."""
    if _unspaced(text):
        units, (lo, hi), joiner = list(_PUNCT.sub("", text)), _UNSPACED_CHARS, ""
    else:
        units, (lo, hi), joiner = _PUNCT.sub(" ", text).lower().split(), _SPACED_WORDS, " "
    if len(units) < lo:
        return None
    n = rng.randint(lo, min(hi, len(units)))
    i = rng.randrange(len(units) - n + 1)
    phrase = units[i : i + n]
    del phrase[rng.randrange(1, n - 1)]
    return joiner.join(phrase)


def make_questions(records: Sequence[dict], n: int, seed: int = 0) -> list[dict]:
    """Up to ``n`` questions ``{question, record_id}`` from distinct records, seeded (reproducible)."""
    rng = random.Random(seed)
    order = list(range(len(records)))
    rng.shuffle(order)
    out: list[dict] = []
    for i in order:
        rec = records[i]
        q = question_from(rec.get("text") or "", rng)
        if q:
            out.append({"question": q, "record_id": str(rec["id"])})
            if len(out) == n:
                break
    return out


def recall_at_k(questions: Sequence[dict], answer: Callable[[str], list[dict]], k: int) -> float | None:
    """Share of questions whose record is among the first ``k`` results of ``answer(question)``."""
    if not questions:
        return None
    hits = sum(any(r["record_id"] == q["record_id"] for r in answer(q["question"])[:k]) for q in questions)
    return hits / len(questions)
