"""Text helpers shared by the steps: script detection, language-aware words, stable 64-bit hashing.

Hashes must agree across processes and machines (Python's ``hash`` is salted), so everything that
feeds deduplication goes through :func:`stable_hash` or numpy mixing with fixed constants.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from functools import lru_cache

import numpy as np

# Han, kana, hangul and CJK punctuation blocks: text dominated by these has no spaces between words.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u31f0-\u31ff"
CJK_RE = re.compile(f"[{_CJK}]")
_HAN_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA_RE = re.compile("[\u3040-\u30ff\u31f0-\u31ff]")
_SPACE_RE = re.compile(r"\s+")
WORD_RE = re.compile(r"\w+")
# Japanese has no segmenter in our dependencies: runs of one script approximate words well enough
# for the ratios the quality rules take.
_JA_WORD_RE = re.compile("[\u4e00-\u9fff\u3400-\u4dbf]+|[\u3040-\u309f]+|[\u30a0-\u30ff\u31f0-\u31ff]+|\\w+")

CJK_LANGS = frozenset({"zh", "ja", "wuu", "yue", "gan", "lzh"})
TERMINAL_PUNCT = tuple(".!?\"'。！？…」』”’）)") + ("……",)

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def cjk_ratio(text: str, sample: int = 4000) -> float:
    """Share of CJK characters among the non-space characters of the first ``sample`` characters."""
    head = text[:sample]
    if head.isascii():
        return 0.0
    dense = len("".join(head.split()))
    if dense <= 0:
        return 0.0
    return len(CJK_RE.findall(head)) / dense


def is_cjk(text: str, lang: str | None = None, min_ratio: float = 0.3) -> bool:
    """True for text whose words are not separated by spaces (Chinese, Japanese)."""
    if lang:
        return lang in CJK_LANGS
    return cjk_ratio(text) >= min_ratio


def guess_cjk_lang(text: str) -> str:
    """'ja' when kana is present, else 'zh': enough to pick a segmenter without a language model."""
    return "ja" if _KANA_RE.search(text[:4000]) else "zh"


@lru_cache(maxsize=1)
def _jieba():
    import logging

    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


# Chinese without a segmenter: each run of CJK characters cut into consecutive pairs (a Chinese word
# is 1.5-2 characters on average), other letters and digits as \w runs; one C-level findall.
_BIGRAM_RE = re.compile(f"[{_CJK}]{{1,2}}|(?:(?![{_CJK}])\\w)+")
SEGMENTERS = ("bigram", "jieba")


def words(text: str, lang: str | None = None, segmenter: str = "bigram") -> list[str]:
    """Words of ``text`` without punctuation: CJK by ``segmenter``, Japanese by script runs, else spaces.

    Measuring CJK text in words (not in space-separated "words", of which a Chinese paragraph has
    one) is what lets the Gopher/C4/FineWeb ratios apply to it fairly. ``segmenter`` is ``bigram``
    (consecutive character pairs, fast) or ``jieba`` (dictionary words, about 50x slower).
    """
    if is_cjk(text, lang):
        code = lang if lang in ("zh", "ja") else guess_cjk_lang(text)
        if code == "ja":
            return _JA_WORD_RE.findall(text)
        if segmenter == "jieba":
            return [w for w in _jieba().lcut(text, HMM=False) if WORD_RE.search(w)]
        return _BIGRAM_RE.findall(text)
    return _SPACED_WORD_RE.findall(f" {text} ")


_PUNCT_STRIP = "".join(chr(i) for i in range(0x2070) if unicodedata.category(chr(i)).startswith(("P", "S")))
_P_CLASS = "".join(re.escape(c) for c in _PUNCT_STRIP)
# Whitespace-separated tokens with punctuation and symbols stripped from both ends (tokens of only
# punctuation give nothing): the same as ``tok.strip(_PUNCT_STRIP)`` over ``text.split()``, in C.
# Run over the text padded with a space at each end: a token starts right after a whitespace
# character, which the regex engine finds by its first character class far faster than it can try
# a lookbehind at every position; same tokens as ``(?<!\S) ... (?!\S)`` on the unpadded text.
_SPACED_WORD_RE = re.compile(rf"\s[{_P_CLASS}]*([^\s{_P_CLASS}](?:\S*[^\s{_P_CLASS}])?)[{_P_CLASS}]*(?=\s)")


def stable_hash(data: str) -> int:
    """64-bit hash that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8"), digest_size=8).digest(), "little")


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over a uint64 array: spreads small inputs (code points) over 64 bits."""
    with np.errstate(over="ignore"):
        z = x.astype(np.uint64, copy=True)
        z += np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def window_hashes(tokens: np.ndarray, n: int) -> np.ndarray:
    """Hashes of every run of ``n`` consecutive token hashes (the whole run if shorter than ``n``)."""
    length = len(tokens)
    if length == 0:
        return tokens[:0]
    n = min(n, length)
    count = length - n + 1
    with np.errstate(over="ignore"):
        acc = np.zeros(count, dtype=np.uint64)
        for k in range(n):
            acc = acc * np.uint64(0x100000001B3) + tokens[k : k + count]
    return mix64(acc)


_NON_WORD_RE = re.compile(r"[\W_]+")
_ASCII_SEP = {c: " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")}


def token_hashes(texts: list[str], word_n: int, cjk_n: int) -> list[tuple[np.ndarray, int]]:
    """Per text, (token hashes, n-gram size): lowercased words for spaced text, characters for CJK.

    Word hashes come from rensa's batch hasher (FxHash, stable across processes); CJK characters
    are their code points mixed to 64 bits. Punctuation and spacing never enter a shingle.
    """
    out: list[tuple[np.ndarray, int] | None] = [None] * len(texts)
    word_docs, word_idx = [], []
    for i, text in enumerate(texts):
        low = text.lower()
        if is_cjk(text):
            chars = _NON_WORD_RE.sub("", low)
            cps = np.frombuffer(chars.encode("utf-32-le"), dtype=np.uint32)
            out[i] = (mix64(cps), cjk_n)
        else:
            # ASCII fast path: same words as \w+ but via C-level translate + split
            word_docs.append(low.translate(_ASCII_SEP).split() if low.isascii() else WORD_RE.findall(low))
            word_idx.append(i)
    if word_docs:
        from rensa import RMinHash

        hashed = RMinHash.hash_token_sets(word_docs)
        for i, h in zip(word_idx, hashed, strict=True):
            out[i] = (np.array(h, dtype=np.uint64), word_n)
    return out  # type: ignore[return-value]


def _bmp_table(pattern: str) -> np.ndarray:
    """Which code points below 0x10000 match ``pattern`` (one character class), from one C-level scan."""
    table = np.zeros(0x10000, dtype=bool)
    plane = "".join(map(chr, range(0x10000)))
    table[[m.start() for m in re.finditer(pattern, plane)]] = True
    return table


@lru_cache(maxsize=1)
def _char_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(whitespace, punctuation-or-symbol stripped from word ends, letter) over the BMP, built once.

    Whitespace is ``\\s`` (what ``str.split`` splits on), a letter ``[^\\W\\d_]`` (a word character that
    is no digit or underscore): the classes of ``_SPACED_WORD_RE`` and of quality's no-letter rule.
    """
    space = _bmp_table(r"\s")
    punct = np.zeros(0x10000, dtype=bool)
    punct[[ord(c) for c in _PUNCT_STRIP]] = True
    letter = _bmp_table(r"[^\W\d_]")
    return space, punct, letter


_LETTER_RE = re.compile(r"[^\W\d_]")


def spaced_word_arrays(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """(start, length, hash, no-letter count) of :func:`words` of spaced ``text``, without making the words.

    The same words as ``_SPACED_WORD_RE`` (whitespace tokens with punctuation and symbols stripped
    from both ends), found with numpy over the text's code points: a word runs from the first to the
    last character of its token that is neither space nor punctuation. The hash of a word is the sum
    of a 64-bit mix of each (character, offset in the word) pair, so equal words hash alike and
    different ones collide about as rarely as Python's ``hash``. The last value counts the words
    without a letter (``[^\\W\\d_]``). Code points above the BMP are never space or punctuation; their
    letter flag is asked of the regex engine, one distinct character at a time.
    """
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    empty = np.zeros(0, dtype=np.int64)
    if not len(cps):
        return empty, empty, empty.view(np.uint64), 0
    space, punct, letter = _char_tables()
    astral = cps > 0xFFFF
    idx = np.where(astral, 0, cps) if astral.any() else cps
    sp = space[idx]
    core = ~(sp | punct[idx])
    if astral.any():
        core[astral] = True
    pos = np.flatnonzero(core)
    if not len(pos):
        return empty, empty, empty.view(np.uint64), 0
    # token number of each character: whitespace characters seen before it (same within a token)
    tok = np.cumsum(sp)[pos]
    brk = tok[1:] != tok[:-1]
    first = pos[np.concatenate(([True], brk))]
    last = pos[np.concatenate((brk, [True]))]
    lens = (last - first + 1).astype(np.int64)
    # every character of every word, word after word
    offs = np.arange(int(lens.sum()), dtype=np.int64)
    starts = np.zeros(len(lens), dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    offs -= np.repeat(starts, lens)
    chars = cps[np.repeat(first, lens) + offs]
    with np.errstate(over="ignore"):
        ids = np.add.reduceat(mix64(chars.astype(np.uint64) | (offs.astype(np.uint64) << np.uint64(21))), starts)
    is_letter = letter[np.where(chars > 0xFFFF, 0, chars)]
    if (chars > 0xFFFF).any():
        hi = np.flatnonzero(chars > 0xFFFF)
        is_letter[hi] = [_LETTER_RE.match(chr(c)) is not None for c in chars[hi].tolist()]
    no_letter = int((np.add.reduceat(is_letter.view(np.uint8), starts) == 0).sum())
    return first.astype(np.int64), lens, ids, no_letter
