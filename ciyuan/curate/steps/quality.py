"""Heuristic quality rules: Gopher (quality + repetition), C4 and FineWeb, fair to Chinese/Japanese.

Defaults are the published thresholds: Gopher (Rae et al. 2021, appendix A), C4 (Raffel et al.
2020, section 2.2) and FineWeb (Penedo et al. 2024). Spaced languages are measured in
whitespace words; Chinese in jieba words and Japanese in script runs, so a Chinese page is never
rejected for "having one word". Stop-word checks use a per-language list and are skipped for a
language without one. The record's ``meta["quality_score"]`` is the share of rules it passes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache
from itertools import filterfalse, islice, repeat

import numpy as np

from ciyuan.curate.repetition import dup_stats as _dup_stats
from ciyuan.curate.repetition import repetition as _repetition
from ciyuan.curate.steps.base import TEXT, Param, Step
from ciyuan.curate.text import (
    SEGMENTERS,
    TERMINAL_PUNCT,
    _bmp_table,
    guess_cjk_lang,
    is_cjk,
    spaced_word_arrays,
    words,
)
from ciyuan.errors import InvalidInput

STOP_WORDS: dict[str, frozenset[str]] = {
    # Gopher's list for English; short high-frequency function words for the others.
    "en": frozenset({"the", "be", "to", "of", "and", "that", "have", "with"}),
    "de": frozenset({"der", "die", "das", "und", "ist", "zu", "den", "mit", "nicht", "von"}),
    "fr": frozenset({"le", "la", "les", "de", "et", "est", "un", "une", "des", "que"}),
    "es": frozenset({"el", "la", "de", "que", "y", "en", "los", "se", "un", "por"}),
    "zh": frozenset({"的", "了", "是", "在", "和", "有", "也", "就", "都", "这", "与", "而"}),
    # particles: a run of kana between kanji/katakana words, as Japanese script runs cut it
    "ja": frozenset({"の", "に", "は", "を", "た", "が", "で", "て", "と", "し", "も", "へ", "から", "まで", "より"}),
}
BULLETS = ("•", "●", "○", "▪", "◦", "‣", "-", "*", "·", "–", "—")
ELLIPSES = ("...", "…")
POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_SENTENCE_END_RE = re.compile(r"[.!?。！？]+(?=\s|$|[\"'”’」』）)])|[。！？]")
_PARA_RE = re.compile(r"\n\s*\n")
# a space-free token without a letter, in the words joined by spaces and padded with one at each end
# (a leading whitespace class lets the engine skip to token starts instead of testing a lookbehind)
_NO_LETTER_RE = re.compile(r"\s(?:[^\w\s]|[\d_])+(?=\s)")
_LOREM_RE = re.compile("lorem ipsum", re.IGNORECASE)


def _count_stops(ws: Iterable[str], stops: frozenset[str], enough: int) -> int:
    """Stop words among ``ws``, counting only until ``enough`` (all a passing check needs)."""
    found = 0
    for w in ws:
        if w in stops or (not w.islower() and w.lower() in stops):
            found += 1
            if found >= enough:
                break
    return found


def _count_zh_stops(text: str, stops: frozenset[str], enough: int) -> int:
    """Stop words among jieba's words of ``text``, segmenting lazily until ``enough`` are found.

    Counting characters would find 的 inside 目的 and 是 inside 但是; jieba's words do not. Prose
    has its two stop words in the first sentence or two, so only a text that fails segments whole.
    """
    from ciyuan.curate.text import _jieba

    found = 0
    for w in _jieba().cut(text, HMM=False):
        if w in stops:
            found += 1
            if found >= enough:
                break
    return found


_HAN_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_WIDE_RE = re.compile("[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


@lru_cache(maxsize=1)
def _wide_table() -> np.ndarray:
    return _bmp_table(_WIDE_RE.pattern)


def _wide_per_line(text: str) -> np.ndarray:
    """Wide characters (see :func:`_width`) on each line of ``text.split("\\n")``, from one numpy pass."""
    cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    wide = _wide_table()[np.where(cps > 0xFFFF, 0, cps)]  # no wide character lies above the BMP
    cum = np.zeros(len(cps) + 1, dtype=np.int64)
    np.cumsum(wide, out=cum[1:])
    nl = np.flatnonzero(cps == 10)
    return cum[np.append(nl, len(cps))] - cum[np.concatenate(([0], nl + 1))]


def _width(line: str) -> int:
    """Display width: a Chinese, Japanese or Korean character carries about as much as two Latin ones."""
    return len(line) + len(_WIDE_RE.findall(line))


class Quality(Step):
    name = "quality"
    modalities = TEXT
    kind = "filter"
    description = "Gopher quality + repetition, C4 and FineWeb rules (published thresholds), CJK-aware."
    params = (
        Param("gopher", "bool", True, "Apply the Gopher quality rules."),
        Param("gopher_repetition", "bool", True, "Apply the Gopher repetition rules."),
        Param("c4", "bool", True, "Apply the C4 document rules."),
        Param("fineweb", "bool", True, "Apply the FineWeb rules."),
        Param("min_words", "int", 50, "Gopher: fewest words (segmented words for CJK)."),
        Param("max_words", "int", 100_000, "Gopher: most words."),
        Param("min_mean_word_length", "float", 3.0, "Gopher: shortest mean word length (spaced languages)."),
        Param("max_mean_word_length", "float", 10.0, "Gopher: longest mean word length (spaced languages)."),
        Param("cjk_min_mean_word_length", "float", 1.0, "Same for Chinese/Japanese segmented words."),
        Param("cjk_max_mean_word_length", "float", 6.0, "Same for Chinese/Japanese segmented words."),
        Param("max_symbol_word_ratio", "float", 0.1, "Gopher: most '#' and ellipses per word."),
        Param("max_bullet_lines_ratio", "float", 0.9, "Gopher: most lines starting with a bullet."),
        Param("max_ellipsis_lines_ratio", "float", 0.3, "Gopher: most lines ending with an ellipsis."),
        Param(
            "max_non_alpha_words_ratio",
            "float",
            0.8,
            "Gopher: at least this share of words must contain a letter (name kept from datatrove).",
        ),
        Param("min_stop_words", "int", 2, "Gopher: fewest stop words (languages with a stop list only)."),
        Param("max_dup_line_ratio", "float", 0.3, "Gopher: most duplicated lines."),
        Param("max_dup_para_ratio", "float", 0.3, "Gopher: most duplicated paragraphs."),
        Param("max_dup_line_char_ratio", "float", 0.2, "Gopher: most characters in duplicated lines."),
        Param("max_dup_para_char_ratio", "float", 0.2, "Gopher: most characters in duplicated paragraphs."),
        Param(
            "top_ngram_max",
            "list[str]",
            ["2:0.2", "3:0.18", "4:0.16"],
            "Gopher: n:max share of characters in the most frequent n-gram.",
        ),
        Param(
            "dup_ngram_max",
            "list[str]",
            ["5:0.15", "6:0.14", "7:0.13", "8:0.12", "9:0.11", "10:0.1"],
            "Gopher: n:max share of characters in repeated n-grams.",
        ),
        Param("c4_min_sentences", "int", 3, "C4: fewest sentences."),
        Param("c4_reject_lorem_ipsum", "bool", True, "C4: reject placeholder 'lorem ipsum' text."),
        Param("c4_reject_curly_bracket", "bool", True, "C4: reject text with '{' (code, templates)."),
        Param(
            "c4_line_filter",
            "bool",
            False,
            "C4: drop lines without terminal punctuation, with < c4_min_words_per_line words, mentioning "
            "javascript or cookie/privacy policy. Off by default: it rewrites documents (headings, lists).",
        ),
        Param("c4_min_words_per_line", "int", 5, "C4 line filter: fewest words in a kept line."),
        Param("fineweb_min_punct_lines_ratio", "float", 0.12, "FineWeb: fewest lines ending in punctuation."),
        Param("fineweb_max_short_lines_ratio", "float", 0.67, "FineWeb: most short lines."),
        Param("fineweb_short_line_width", "int", 30, "FineWeb: a line narrower than this is short (CJK, Hangul = 2)."),
        Param(
            "fineweb_max_dup_line_char_ratio",
            "float",
            0.01,
            "FineWeb: most characters in duplicated lines (relative to all characters).",
        ),
        Param("fineweb_max_newline_word_ratio", "float", 0.3, "FineWeb: most newlines per word."),
        Param(
            "cjk_segmenter",
            "str",
            "bigram",
            "How Chinese is cut into words: consecutive character pairs (fast) or jieba (dictionary words).",
            SEGMENTERS,
        ),
        Param("score_only", "bool", False, "Only compute meta['quality_score'] and the failed rules; keep all."),
    )

    def setup(self) -> None:
        self._top = [(int(a), float(b)) for a, b in (x.split(":") for x in self.top_ngram_max)]
        self._dup = [(int(a), float(b)) for a, b in (x.split(":") for x in self.dup_ngram_max)]
        self._top_ns = {n for n, _ in self._top}
        self._dup_ns = {n for n, _ in self._dup}
        self._dup_limits = {n: min(mx for m, mx in self._dup if m == n) for n in self._dup_ns}
        if self.cjk_segmenter not in SEGMENTERS:
            raise InvalidInput(
                f"quality: unknown cjk_segmenter {self.cjk_segmenter!r}", hint=f"use one of {', '.join(SEGMENTERS)}"
            )

    def warm(self) -> None:
        # not jieba's dictionary (~0.5 CPU s): only Chinese needs it, and the driver cannot tell
        from ciyuan.curate.text import _char_tables

        _char_tables()
        _wide_table()

    # ----------------------------------------------------------------------------------------

    def evaluate(self, text: str, lang: str | None) -> tuple[list[tuple[str, str]], int]:
        """Failed rules as (rule, reason), and how many rules were checked.

        Every statistic comes from one split into words and one into lines, made once per document.
        """
        cjk = is_cjk(text, lang)
        if cjk and lang not in ("zh", "ja"):
            lang = guess_cjk_lang(text)
        # words() of a text not called CJK still looks at its script (a page langid calls "en")
        segmented = cjk or (bool(lang) and is_cjk(text))
        if segmented:
            ws: Iterable[str] = words(text, lang if cjk else None, self.cjk_segmenter)
            n_words = len(ws)  # type: ignore[arg-type]
            lens = np.fromiter(map(len, ws), dtype=np.int64, count=n_words)
            ids = None
        else:  # the words' starts, lengths, hashes and letters in numpy, the strings only as needed
            starts, lens, ids, no_letter = spaced_word_arrays(text)
            n_words = len(starts)
            ws = map(text.__getitem__, map(slice, starts.tolist(), (starts + lens).tolist()))
        lines = text.split("\n")
        stripped = list(map(str.strip, lines))
        nonempty = list(filter(None, stripped))
        # the same lines unstripped (Gopher counts raw lines, FineWeb stripped ones); after
        # normalize they are the same list, and so can share one Counter
        raw = nonempty if lines == stripped else [ln for ln, st in zip(lines, stripped, strict=True) if st]
        counted: dict[int, Counter[str]] = {}

        def line_counts(items: list[str]) -> Counter[str]:
            if id(items) not in counted:
                counted[id(items)] = Counter(items)
            return counted[id(items)]

        fails: list[tuple[str, str]] = []
        checked = 0

        def check(ok: bool, rule: str, reason: str) -> None:
            nonlocal checked
            checked += 1
            if not ok:
                fails.append((rule, reason))

        if self.gopher:
            check(self.min_words <= n_words, "gopher_min_words", f"gopher: {n_words} words < {self.min_words}")
            check(n_words <= self.max_words, "gopher_max_words", f"gopher: {n_words} words > {self.max_words}")
            if n_words:
                mean = float(lens.sum()) / n_words
                lo, hi = (
                    (self.cjk_min_mean_word_length, self.cjk_max_mean_word_length)
                    if cjk
                    else (self.min_mean_word_length, self.max_mean_word_length)
                )
                check(
                    lo <= mean <= hi,
                    "gopher_mean_word_length",
                    f"gopher: mean word length {mean:.1f} outside [{lo}, {hi}]",
                )
                symbols = text.count("#") + text.count("...") + text.count("…")
                ratio = symbols / n_words
                check(
                    ratio <= self.max_symbol_word_ratio,
                    "gopher_symbol_ratio",
                    f"gopher: symbol/word ratio {ratio:.2f} > {self.max_symbol_word_ratio}",
                )
                if segmented:
                    no_letter = len(_NO_LETTER_RE.findall(" " + " ".join(ws) + " "))
                alpha = 1 - no_letter / n_words
                check(
                    alpha >= self.max_non_alpha_words_ratio,
                    "gopher_alpha_words",
                    f"gopher: words with a letter {alpha:.2f} < {self.max_non_alpha_words_ratio}",
                )
                stops = STOP_WORDS.get(lang or ("en" if not cjk else "zh"))
                if stops is not None and self.min_stop_words:
                    need = self.min_stop_words
                    if cjk and lang == "zh":
                        found = _count_zh_stops(text, stops, need)
                    else:  # spaced words, or Japanese script runs (a particle is a kana run of its own)
                        found = _count_stops(ws, stops, need)
                    if found < need:  # text in two scripts: the other script's stop words count too
                        if cjk:
                            found += _count_stops(ws, STOP_WORDS["en"], need - found)
                        elif _HAN_RE.search(text):
                            other = guess_cjk_lang(text)
                            found += (
                                _count_zh_stops(text, STOP_WORDS["zh"], need - found)
                                if other == "zh"
                                else _count_stops(words(text, "ja"), STOP_WORDS["ja"], need - found)
                            )
                    check(
                        found >= self.min_stop_words,
                        "gopher_stop_words",
                        f"gopher: {found} stop words < {self.min_stop_words}",
                    )
            if nonempty:
                bullets = sum(map(str.startswith, nonempty, repeat(BULLETS))) / len(nonempty)
                check(
                    bullets <= self.max_bullet_lines_ratio,
                    "gopher_bullet_lines",
                    f"gopher: bullet lines {bullets:.2f} > {self.max_bullet_lines_ratio}",
                )
                ell = sum(map(str.endswith, nonempty, repeat(ELLIPSES))) / len(nonempty)
                check(
                    ell <= self.max_ellipsis_lines_ratio,
                    "gopher_ellipsis_lines",
                    f"gopher: ellipsis lines {ell:.2f} > {self.max_ellipsis_lines_ratio}",
                )

        if self.gopher_repetition:
            line_frac, line_chars = _dup_stats(raw, line_counts(raw))
            paras = list(filterfalse(str.isspace, filter(None, _PARA_RE.split(text))))
            para_frac, para_chars = _dup_stats(paras)
            check(
                line_frac <= self.max_dup_line_ratio,
                "gopher_dup_lines",
                f"gopher: duplicated lines {line_frac:.2f} > {self.max_dup_line_ratio}",
            )
            check(
                para_frac <= self.max_dup_para_ratio,
                "gopher_dup_paragraphs",
                f"gopher: duplicated paragraphs {para_frac:.2f} > {self.max_dup_para_ratio}",
            )
            check(
                line_chars <= self.max_dup_line_char_ratio,
                "gopher_dup_line_chars",
                f"gopher: characters in duplicated lines {line_chars:.2f} > {self.max_dup_line_char_ratio}",
            )
            check(
                para_chars <= self.max_dup_para_char_ratio,
                "gopher_dup_paragraph_chars",
                f"gopher: characters in duplicated paragraphs {para_chars:.2f} > {self.max_dup_para_char_ratio}",
            )
            if n_words:
                # Python's str hash is salted per process, but only equality inside one document
                # matters here (ties go to the earliest n-gram), so every process gets the same shares.
                if ids is None:
                    ids = np.fromiter(map(hash, ws), dtype=np.int64, count=n_words).view(np.uint64)
                rep = _repetition(ids, lens, self._top_ns, self._dup_ns, self._dup_limits)
                for n, mx in self._top:
                    f = rep[n]
                    check(f <= mx, f"gopher_top_{n}gram", f"gopher: top {n}-gram characters {f:.2f} > {mx}")
                for n, mx in self._dup:
                    f = rep[n]
                    check(f <= mx, f"gopher_dup_{n}gram", f"gopher: characters in repeated {n}-grams {f:.2f} > {mx}")

        if self.c4:
            if self.c4_reject_lorem_ipsum:
                check(not _LOREM_RE.search(text), "c4_lorem_ipsum", "c4: contains 'lorem ipsum'")
            if self.c4_reject_curly_bracket:
                check("{" not in text, "c4_curly_bracket", "c4: contains '{'")
            # enough sentences end the count: the number is only reported when it falls short
            sentences = sum(1 for _ in islice(_SENTENCE_END_RE.finditer(text), self.c4_min_sentences))
            check(
                sentences >= self.c4_min_sentences,
                "c4_min_sentences",
                f"c4: {sentences} sentences < {self.c4_min_sentences}",
            )

        if self.fineweb:
            if nonempty:
                punct = sum(map(str.endswith, nonempty, repeat(TERMINAL_PUNCT))) / len(nonempty)
                check(
                    punct >= self.fineweb_min_punct_lines_ratio,
                    "fineweb_punct_lines",
                    f"fineweb: lines ending in punctuation {punct:.2f} < {self.fineweb_min_punct_lines_ratio}",
                )
                width = self.fineweb_short_line_width
                # widths of the stripped lines; an ASCII line is exactly as wide as it is long
                slens = np.fromiter(map(len, stripped), dtype=np.int64, count=len(stripped))
                # stripping removes only whitespace, never a wide character
                seen = slens if text.isascii() else slens + _wide_per_line(text)
                n_short = int((seen[slens > 0] < width).sum())
                short = n_short / len(nonempty)
                check(
                    short <= self.fineweb_max_short_lines_ratio,
                    "fineweb_short_lines",
                    f"fineweb: short lines {short:.2f} > {self.fineweb_max_short_lines_ratio}",
                )
                dup_chars = 0
                counts = line_counts(nonempty)
                if len(counts) < len(nonempty):
                    dup_chars = sum(len(ln) * (c - 1) for ln, c in counts.items() if c > 1)
                ratio = dup_chars / max(len(text) - text.count("\n"), 1)
                check(
                    ratio <= self.fineweb_max_dup_line_char_ratio,
                    "fineweb_dup_line_chars",
                    f"fineweb: characters in duplicated lines {ratio:.3f} > {self.fineweb_max_dup_line_char_ratio}",
                )
            if n_words:
                nl = text.count("\n") / n_words
                check(
                    nl <= self.fineweb_max_newline_word_ratio,
                    "fineweb_newline_ratio",
                    f"fineweb: newlines per word {nl:.2f} > {self.fineweb_max_newline_word_ratio}",
                )
        return fails, checked

    def c4_filter_lines(self, text: str, lang: str | None) -> str:
        """C4's line filter: keep lines that end in punctuation, are long enough and are not boilerplate."""
        kept = []
        for line in text.split("\n"):
            s = line.strip()
            low = s.lower()
            if not s.endswith(TERMINAL_PUNCT):
                continue
            if len(words(s, lang if is_cjk(s, lang) else None, self.cjk_segmenter)) < self.c4_min_words_per_line:
                continue
            if "javascript" in low or any(p in low for p in POLICY):
                continue
            kept.append(line)
        return "\n".join(kept)

    def process(self, record: dict) -> None:
        text = record.get("text") or ""
        meta = record.setdefault("meta", {})
        lang = meta.get("language")
        if self.c4 and self.c4_line_filter:
            new = self.c4_filter_lines(text, lang)
            if new != text:
                record["text"] = new
                self.mark_changed(record, text)
                text = new
        fails, checked = self.evaluate(text, lang)
        score = round(1 - len(fails) / checked, 4) if checked else 1.0
        meta["quality_score"] = score
        if fails:
            meta["quality_failed"] = [r for r, _ in fails]
            self.stats.counters.update(r for r, _ in fails)
            if not self.score_only:
                rule, reason = fails[0]
                self.reject(record, rule, reason)
