"""BM25 recall per language on questions made from the records, against a whitespace analyzer.

The question set is made in the test (kbcorpus + ciyuan.knowledge.questions): a perturbed phrase
of a record must find that record in the top 5. Chinese and Japanese have no spaces, so a
whitespace analyzer sees each sentence as one term and (almost) never matches: that is the
measurement that justifies the character-bigram analyzer.
"""

from __future__ import annotations

import bm25s
import kbcorpus
import pytest

from ciyuan.knowledge.bm25 import Bm25Index, analyze
from ciyuan.knowledge.questions import make_questions, recall_at_k


def _recall(docs: list[dict], questions: list[dict], terms) -> float:
    r = bm25s.BM25()
    r.index([terms(d["text"]) for d in docs], show_progress=False)

    def answer(q: str) -> list[dict]:
        res, _ = r.retrieve([terms(q) or ["\x00"]], k=5, show_progress=False)
        return [docs[int(i)] | {"record_id": docs[int(i)]["id"]} for i in res[0]]

    return recall_at_k(questions, answer, 5)


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[dict]]:
    return {lang: kbcorpus.documents(lang, 300, seed=1) for lang in kbcorpus.LANGS}


@pytest.mark.parametrize("lang", kbcorpus.LANGS)
def test_recall_at_5_per_language(corpus, lang):
    docs = corpus[lang]
    questions = make_questions(docs, 60, seed=7)
    assert len(questions) == 60
    ours = _recall(docs, questions, analyze)
    spaces = _recall(docs, questions, lambda t: t.lower().split())
    print(f"{lang}: recall@5 cjk-bigram {ours:.2f}, whitespace {spaces:.2f}")
    assert ours >= 0.9
    if lang in ("zh", "ja"):
        assert spaces <= 0.2 < ours - 0.5


def test_index_over_all_languages_finds_each_language(corpus):
    docs = [d for lang in kbcorpus.LANGS for d in corpus[lang]]
    idx = Bm25Index.build([d["text"] for d in docs])
    questions = make_questions(docs, 120, seed=3)
    got = recall_at_k(questions, lambda q: [{"record_id": docs[r]["id"]} for r, _ in idx.search(q, 5)], 5)
    assert got >= 0.9


def test_analyzer_cuts_cjk_into_bigrams_and_keeps_words():
    assert analyze("风机齿轮箱") == ["风机", "机齿", "齿轮", "轮箱"]
    assert analyze("Gearbox ＯＩＬ 温度") == ["gearbox", "oil", "温度"]  # NFKC: full-width Latin
    assert analyze("한국어 문장") == ["한국", "국어", "문장"]
    assert analyze("中") == ["中"]
    assert analyze("...") == []


def test_empty_base_and_unknown_terms_give_no_results():
    assert Bm25Index.build([]).search("anything", 5) == []
    idx = Bm25Index.build(["alpha beta", "gamma"])
    assert idx.search("zzz", 5) == []
    assert [r for r, _ in idx.search("gamma", 5)] == [1]
