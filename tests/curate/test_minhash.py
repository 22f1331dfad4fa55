"""The shared MinHash module: batch shingling agrees with the word-by-word definition it replaces."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ciyuan.curate import minhash
from ciyuan.curate.steps import make_step
from ciyuan.curate.text import WORD_RE, stable_hash, window_hashes

# words, punctuation, Unicode letters and digits, astral characters, underscores and odd spaces
_ALPHABET = st.sampled_from(list("ab cZ_9.-,\n\t") + ["é", "ß", "Ⅻ", "٣", "\u00a0", "\u2010", "😀", "𝐀", "\x00"])
texts = st.lists(st.text(_ALPHABET, max_size=60), min_size=1, max_size=8)


@given(texts)
def test_word_tokens_are_the_regex_words_and_equal_words_hash_equal(batch):
    toks, offsets = minhash._word_tokens([t.lower() for t in batch])
    seen: dict[str, int] = {}
    for i, text in enumerate(batch):
        words = WORD_RE.findall(text.lower())
        mine = toks[offsets[i] : offsets[i + 1]].tolist()
        assert len(mine) == len(words), (text, words)
        for w, h in zip(words, mine, strict=True):
            assert seen.setdefault(w, h) == h  # the same word always gets the same hash ...
    assert len(set(seen.values())) == len(seen)  # ... and different words different ones


@given(st.lists(st.integers(0, 40), min_size=1, max_size=12), st.integers(1, 6))
def test_batch_windows_equal_per_document_windows(lengths, n):
    rng = np.random.default_rng(sum(lengths) + n)
    docs = [rng.integers(0, 2**63, size=k, dtype=np.uint64) for k in lengths]
    starts = np.concatenate(([0], np.cumsum(lengths))).astype(np.int64)
    flat, offsets = minhash._windows(np.concatenate(docs), starts, n)
    for i, d in enumerate(docs):
        assert np.array_equal(flat[offsets[i] : offsets[i + 1]], window_hashes(d, n)), (lengths, n, i)


def test_shingles_of_a_batch_equal_shingles_of_each_text():
    batch = ["The quick brown fox jumps over the lazy dog again", "", "two words", "今天天气很好，我们去公园散步吧",
             "naïve café — résumé", "x"]  # fmt: skip
    flat, offsets = minhash.shingles(batch, 5, 5)
    for i, t in enumerate(batch):
        one, _ = minhash.shingles([t], 5, 5)
        assert np.array_equal(flat[offsets[i] : offsets[i + 1]], one), t
    assert offsets[2] == offsets[1]  # the empty text has no shingle, and so the empty signature
    assert (minhash.signatures(flat, offsets, 128, 1)[1] == minhash.EMPTY).all()
    step = make_step("near_dedup")
    assert np.array_equal(step.shingles(batch[0]), np.unique(flat[: offsets[1]]))


@given(st.text(st.sampled_from(list("ab \t\n\r\x0b\x0c\x1c\x1f") + ["\u00a0", "\u2003", "\u3000", "\u2028", "é"])))
def test_exact_dedup_key_collapses_whitespace_like_the_regex(text):
    want = stable_hash(re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip())
    assert make_step("exact_dedup").key(text) == want
