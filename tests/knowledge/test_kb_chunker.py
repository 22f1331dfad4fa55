"""The chunker keeps exact offsets, bounds chunks in tokens, and cuts CJK text without spaces."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciyuan.errors import InvalidInput
from ciyuan.knowledge.chunker import ChunkerParams, chunk_records, describe, windows
from ciyuan.tokens import get_tokenizer

# Latin, CJK, Hangul, kana, emoji (4-byte UTF-8, several tokens each), combining marks, spaces, newlines
ALPHABET = st.sampled_from(
    list("ab cdé\n\t。、风机齿轮箱温度过高ブレードの亀裂한국어문장") + ["😀", "🇨🇳", "\u0301", "e\u0301", "𠀋"]
)
TEXTS = st.lists(ALPHABET, min_size=0, max_size=400).map("".join)


def _check(text: str, params: ChunkerParams) -> list[tuple[int, int]]:
    spans = windows(text, params)
    if not text:
        assert spans == []
        return spans
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (s0, e0), (s1, e1) in zip(spans, spans[1:], strict=False):
        assert s0 < s1 and e0 < e1, (spans, text)
        assert s1 <= e0, "windows leave no gap between them"
    for s, e in spans:
        assert 0 <= s < e <= len(text)
    return spans


@settings(max_examples=150)
@given(TEXTS, st.integers(8, 40), st.integers(0, 3))
def test_windows_cover_the_text_exactly_and_stay_token_bounded(text, max_tokens, overlap):
    params = ChunkerParams(max_tokens=max_tokens, overlap=overlap)
    spans = _check(text, params)
    tok = get_tokenizer("cl100k_base")
    for s, e in spans:
        # a character split between two windows belongs to the later one: at most its bytes (<= 4) more
        assert tok.count(text[s:e]) <= max_tokens + 4
    if overlap == 0:
        assert "".join(text[s:e] for s, e in spans) == text


@settings(max_examples=60)
@given(TEXTS)
def test_chunks_keep_record_id_and_offsets(text):
    recs = [{"id": "r1", "modality": "text", "text": text}]
    chunks = list(chunk_records(recs, ChunkerParams(max_tokens=12, overlap=3)))
    for c in chunks:
        assert c["record_id"] == "r1"
        assert text[c["start"] : c["end"]] == c["text"]
        assert c["chunk_id"] == f"r1:{c['start']}-{c['end']}"
    assert len({c["chunk_id"] for c in chunks}) == len(chunks)


def test_chinese_without_spaces_is_cut_into_several_bounded_chunks():
    text = "风机齿轮箱温度过高，需要立即停机检查。" * 30
    spans = _check(text, ChunkerParams(max_tokens=32, overlap=4))
    assert len(spans) > 5  # a whitespace splitter would see one "word" and make one chunk
    tok = get_tokenizer("cl100k_base")
    assert max(tok.count(text[s:e]) for s, e in spans) <= 36


def test_lone_surrogates_keep_offsets():
    text = "abc\ud800def 风机" * 40
    for s, e in _check(text, ChunkerParams(max_tokens=8, overlap=1)):
        assert text[s:e]


def test_graph_records_are_one_chunk_each_and_records_without_text_none():
    nt = "".join(f'<http://ex.org/s> <http://ex.org/p{i}> "v{i}" .\n' for i in range(200))
    recs = [
        {"id": "g1", "modality": "graph", "text": nt},
        {"id": "img", "modality": "image", "text": None},
        {"id": "t", "modality": "text", "text": ""},
    ]
    chunks = list(chunk_records(recs, ChunkerParams(max_tokens=8, overlap=0)))
    assert [(c["record_id"], c["start"], c["end"]) for c in chunks] == [("g1", 0, len(nt))]


@pytest.mark.parametrize("kw", [{"max_tokens": 4}, {"max_tokens": 16, "overlap": 8}, {"overlap": -1},
                                {"max_tokens": True}, {"max_tokens": 10.5}])
def test_bad_parameters_are_refused_with_a_hint(kw):
    with pytest.raises(InvalidInput) as err:
        ChunkerParams(**kw)
    assert err.value.hint


def test_describe_names_chunker_version_and_params():
    d = describe(ChunkerParams(max_tokens=64, overlap=8))
    assert d["name"] == "token-window" and d["version"] == 1
    assert d["params"] == {"max_tokens": 64, "overlap": 8, "tokenizer": "cl100k_base"}
    assert d["tokenizer_version"]
