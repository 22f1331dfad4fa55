"""The optimised quality rules give the same answers as a plain, slow reference written from the rules.

``Quality.evaluate`` counts with Counters, stops counting once a rule is decided, and stops the
n-gram pass once the larger sizes must pass. Each shortcut is only allowed to change how much work
is done, never a rule's outcome or the numbers in a failure's reason. The reference below computes
every signal the obvious way (dicts of n-gram tuples, a seen-set walk over lines, one regex per
character), and the two must agree on failed rules, reasons and the number of rules checked, on
English, German, Chinese, Japanese and Korean pages, on repetitive and broken text, and on random
text; and the mojibake and whitespace shortcuts of ``normalize`` must equal ftfy and the plain regexes.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from ftfy.badness import is_bad
from hypothesis import given, settings
from hypothesis import strategies as st

from ciyuan.curate.steps import langid
from ciyuan.curate.steps import quality as q
from ciyuan.curate.steps.normalize import Normalize, looks_like_mojibake
from ciyuan.curate.text import _PUNCT_STRIP, TERMINAL_PUNCT, guess_cjk_lang, is_cjk, words

DATA = Path(__file__).parent / "data" / "manpages.json"
RECIPE = {
    "c4_reject_curly_bracket": False,
    "fineweb_max_dup_line_char_ratio": 0.1,
    "fineweb_max_newline_word_ratio": 0.5,
}

# the published regexes as they were before the padded rewrites
_OLD_WORD_RE = re.compile(
    rf"(?<!\S)[{re.escape(_PUNCT_STRIP)}]*([^\s{re.escape(_PUNCT_STRIP)}](?:\S*[^\s{re.escape(_PUNCT_STRIP)}])?)"
    rf"[{re.escape(_PUNCT_STRIP)}]*(?!\S)"
)
_SENTENCE_RE = re.compile(r"[.!?。！？]+(?=\s|$|[\"'”’」』）)])|[。！？]")


def ref_spaced_words(text: str) -> list[str]:
    """Whitespace tokens with punctuation and symbols stripped from both ends, empty ones dropped."""
    return [w for w in (t.strip(_PUNCT_STRIP) for t in text.split()) if w]


def has_letter(w: str) -> bool:
    return any(re.fullmatch(r"\w", c) and not re.fullmatch(r"[\d_]", c) for c in w)


def ref_dup(items: list[str]) -> tuple[float, float]:
    items = [x for x in items if x.strip()]
    if not items:
        return 0.0, 0.0
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        seen.add(x)
    return n / len(items), chars / max(sum(len(x) for x in items), 1)


def ref_top(ws: list[str], n: int) -> float:
    total = sum(len(w) for w in ws) or 1
    grams = [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]
    counts: dict[tuple, int] = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    if not counts or max(counts.values()) < 2:
        return 0.0
    best = max(counts.values())
    first = next(g for g in counts if counts[g] == best)  # dicts keep first-seen order
    return best * sum(len(w) for w in first) / total


def ref_dup_ngrams(ws: list[str], n: int) -> float:
    total = sum(len(w) for w in ws) or 1
    seen: set[tuple] = set()
    covered = [False] * len(ws)
    for i in range(len(ws) - n + 1):
        g = tuple(ws[i : i + n])
        if g in seen:
            for j in range(i, i + n):
                covered[j] = True
        seen.add(g)
    return sum(len(w) for w, c in zip(ws, covered, strict=True) if c) / total


def ref_evaluate(step: q.Quality, text: str, lang: str | None) -> tuple[list[tuple[str, str]], int]:
    """The rules in their published order, each computed directly; reasons as evaluate writes them."""
    cjk = is_cjk(text, lang)
    if cjk and lang not in ("zh", "ja"):
        lang = guess_cjk_lang(text)
    # words() looks at the script itself when no CJK language is given, as evaluate relies on
    spaced = not cjk and not is_cjk(text)
    ws = ref_spaced_words(text) if spaced else words(text, lang if cjk else None, step.cjk_segmenter)
    lines = text.split("\n")
    nonempty = [ln.strip() for ln in lines if ln.strip()]
    fails: list[tuple[str, str]] = []
    checked = 0

    def check(ok: bool, rule: str, reason: str) -> None:
        nonlocal checked
        checked += 1
        if not ok:
            fails.append((rule, reason))

    n = len(ws)
    if step.gopher:
        check(step.min_words <= n, "gopher_min_words", f"gopher: {n} words < {step.min_words}")
        check(n <= step.max_words, "gopher_max_words", f"gopher: {n} words > {step.max_words}")
        if n:
            mean = sum(len(w) for w in ws) / n
            lo, hi = (
                (step.cjk_min_mean_word_length, step.cjk_max_mean_word_length)
                if cjk
                else (step.min_mean_word_length, step.max_mean_word_length)
            )
            check(
                lo <= mean <= hi, "gopher_mean_word_length", f"gopher: mean word length {mean:.1f} outside [{lo}, {hi}]"
            )
            ratio = (text.count("#") + text.count("...") + text.count("…")) / n
            check(
                ratio <= step.max_symbol_word_ratio,
                "gopher_symbol_ratio",
                f"gopher: symbol/word ratio {ratio:.2f} > {step.max_symbol_word_ratio}",
            )
            alpha = 1 - sum(not has_letter(w) for w in ws) / n
            check(
                alpha >= step.max_non_alpha_words_ratio,
                "gopher_alpha_words",
                f"gopher: words with a letter {alpha:.2f} < {step.max_non_alpha_words_ratio}",
            )
            # stop words: the step's own counting (not what is being optimised), so compare its outcome only
            stop_fail = [f for f in step.evaluate(text, lang)[0] if f[0] == "gopher_stop_words"]
            if q.STOP_WORDS.get(lang or ("en" if not cjk else "zh")) is not None and step.min_stop_words:
                checked += 1
                fails.extend(stop_fail)
        if nonempty:
            bullets = sum(ln.startswith(q.BULLETS) for ln in nonempty) / len(nonempty)
            check(
                bullets <= step.max_bullet_lines_ratio,
                "gopher_bullet_lines",
                f"gopher: bullet lines {bullets:.2f} > {step.max_bullet_lines_ratio}",
            )
            ell = sum(ln.endswith(q.ELLIPSES) for ln in nonempty) / len(nonempty)
            check(
                ell <= step.max_ellipsis_lines_ratio,
                "gopher_ellipsis_lines",
                f"gopher: ellipsis lines {ell:.2f} > {step.max_ellipsis_lines_ratio}",
            )
    if step.gopher_repetition:
        lf, lc = ref_dup(lines)
        pf, pc = ref_dup(re.split(r"\n\s*\n", text))
        check(
            lf <= step.max_dup_line_ratio,
            "gopher_dup_lines",
            f"gopher: duplicated lines {lf:.2f} > {step.max_dup_line_ratio}",
        )
        check(
            pf <= step.max_dup_para_ratio,
            "gopher_dup_paragraphs",
            f"gopher: duplicated paragraphs {pf:.2f} > {step.max_dup_para_ratio}",
        )
        check(
            lc <= step.max_dup_line_char_ratio,
            "gopher_dup_line_chars",
            f"gopher: characters in duplicated lines {lc:.2f} > {step.max_dup_line_char_ratio}",
        )
        check(
            pc <= step.max_dup_para_char_ratio,
            "gopher_dup_paragraph_chars",
            f"gopher: characters in duplicated paragraphs {pc:.2f} > {step.max_dup_para_char_ratio}",
        )
        if n:
            for k, mx in step._top:
                f = ref_top(ws, k)
                check(f <= mx, f"gopher_top_{k}gram", f"gopher: top {k}-gram characters {f:.2f} > {mx}")
            for k, mx in step._dup:
                f = ref_dup_ngrams(ws, k)
                check(f <= mx, f"gopher_dup_{k}gram", f"gopher: characters in repeated {k}-grams {f:.2f} > {mx}")
    if step.c4:
        if step.c4_reject_lorem_ipsum:
            check("lorem ipsum" not in text.lower(), "c4_lorem_ipsum", "c4: contains 'lorem ipsum'")
        if step.c4_reject_curly_bracket:
            check("{" not in text, "c4_curly_bracket", "c4: contains '{'")
        s = len(_SENTENCE_RE.findall(text))
        check(s >= step.c4_min_sentences, "c4_min_sentences", f"c4: {s} sentences < {step.c4_min_sentences}")
    if step.fineweb:
        if nonempty:
            punct = sum(ln.endswith(TERMINAL_PUNCT) for ln in nonempty) / len(nonempty)
            check(
                punct >= step.fineweb_min_punct_lines_ratio,
                "fineweb_punct_lines",
                f"fineweb: lines ending in punctuation {punct:.2f} < {step.fineweb_min_punct_lines_ratio}",
            )
            w = step.fineweb_short_line_width
            short = sum(q._width(ln) < w for ln in nonempty) / len(nonempty)
            check(
                short <= step.fineweb_max_short_lines_ratio,
                "fineweb_short_lines",
                f"fineweb: short lines {short:.2f} > {step.fineweb_max_short_lines_ratio}",
            )
            dup = sum(len(ln) * (c - 1) for ln, c in Counter(nonempty).items())
            ratio = dup / max(len(text) - text.count("\n"), 1)
            check(
                ratio <= step.fineweb_max_dup_line_char_ratio,
                "fineweb_dup_line_chars",
                f"fineweb: characters in duplicated lines {ratio:.3f} > {step.fineweb_max_dup_line_char_ratio}",
            )
        if n:
            nl = text.count("\n") / n
            check(
                nl <= step.fineweb_max_newline_word_ratio,
                "fineweb_newline_ratio",
                f"fineweb: newlines per word {nl:.2f} > {step.fineweb_max_newline_word_ratio}",
            )
    return fails, checked


def _pages() -> dict[str, str]:
    return json.loads(DATA.read_text(encoding="utf-8"))


def _variants(text: str, rng: random.Random) -> list[str]:
    """The page, a repetitive copy, a cut-down copy, one with blank-padded lines, one with doubled lines."""
    lines = text.split("\n")
    half = "\n".join(lines[: max(3, len(lines) // 5)])
    rep = "\n".join(lines[:12] * 4)
    padded = "\n".join(("  " + ln + " \t") if i % 3 == 0 else ln for i, ln in enumerate(lines))
    doubled = "\n".join(ln for ln in lines for _ in range(1 + (rng.random() < 0.4)))
    ws = text.split(" ")
    for _ in range(len(ws) // 8):
        ws[rng.randrange(len(ws))] = rng.choice(ws)
    return [text, half, rep, padded, doubled, " ".join(ws)]


def _samples() -> list[tuple[str, str, str | None]]:
    rng = random.Random(5)
    out = []
    for lang, page in _pages().items():
        for i, v in enumerate(_variants(page, rng)):
            out.append((f"{lang}-{i}", v, None))
            out.append((f"{lang}-{i}-tagged", v, lang))
    out += [
        ("de", "Der Hund und die Katze sind nicht zu Hause. " * 3 + "Das ist gut, und es ist mit Liebe gemacht.", "de"),
        ("mixed", "日本語の文章です。" * 5 + "\nand the English half, to be sure, with the stop words.", None),
        ("ko", "이것은 한국어 문서입니다. 문장이 여러 개 있습니다!\n" * 3, "ko"),
        ("numbers", "1 2 3 4 5 6 7 8 9 10 -- ## ... 3.14 v2 x_1 2024-01-01 …\n" * 6, None),
        ("bullets", "\n".join(f"• item {i} of the list..." for i in range(40)), None),
        ("lorem", "Lorem Ipsum dolor sit amet. " * 30, None),
        ("empty", "", None),
        ("spaces", " \n \n\t\n", None),
    ]
    return out


@pytest.mark.parametrize("params", [RECIPE, {}], ids=["text-pretrain", "defaults"])
def test_evaluate_equals_reference(params: dict) -> None:
    step = q.Quality(**params)
    for name, text, lang in _samples():
        assert step.evaluate(text, lang) == ref_evaluate(step, text, lang), name


def test_spaced_words_equal_reference_and_old_regex() -> None:
    for _, text, _ in _samples():
        if not is_cjk(text):
            assert words(text) == ref_spaced_words(text) == _OLD_WORD_RE.findall(text)


def test_repetition_exact_without_limits_and_same_decisions_with_them() -> None:
    step = q.Quality()
    for name, text, lang in _samples():
        ws = words(text, lang if is_cjk(text, lang) else None)
        if not ws:
            continue
        ids = np.fromiter(map(hash, ws), dtype=np.int64, count=len(ws)).view(np.uint64)
        lens = np.fromiter(map(len, ws), dtype=np.int64, count=len(ws))
        exact = q._repetition(ids, lens, step._top_ns, step._dup_ns)
        for n in step._top_ns:
            assert exact[n] == pytest.approx(ref_top(ws, n)), (name, n)
        for n in step._dup_ns:
            assert exact[n] == pytest.approx(ref_dup_ngrams(ws, n)), (name, n)
        bounded = q._repetition(ids, lens, step._top_ns, step._dup_ns, step._dup_limits)
        for n, mx in step._dup:
            assert (bounded[n] <= mx) == (exact[n] <= mx), (name, n)
            assert bounded[n] >= exact[n] - 1e-12  # an upper bound where it stopped early


_TEXT = st.lists(
    st.sampled_from(list("ab cd\n\n  .!?#…—•-日本語の文はです한국어 123_{}é") + ["the ", "and ", "的", "了", "ab cd "]),
    max_size=200,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(_TEXT, st.sampled_from([None, "en", "zh", "ja", "ko"]))
def test_evaluate_equals_reference_on_random_text(text: str, lang: str | None) -> None:
    step = q.Quality(**RECIPE)
    assert step.evaluate(text, lang) == ref_evaluate(step, text, lang)


def test_mojibake_check_equals_ftfy() -> None:
    rng = random.Random(3)
    texts = list(_pages().values()) + [s for _, s, _ in _samples()]
    for t in list(texts):
        for _ in range(6):  # mis-decode a random stretch: UTF-8 read as Latin-1 / Windows-1252
            i = rng.randrange(max(len(t), 1))
            bad = t[i : i + 30].encode("utf-8").decode(rng.choice(["latin-1", "cp1252"]), errors="replace")
            texts.append(t[:i] + bad + t[i + 30 :])
    texts += ["Ã©", "â€™s", "Ã¢â‚¬â„¢", "Â ", "x Â y", "ГўВЂВ™a", "naïve café", "¡Hola! ¿Qué?"]
    assert any(is_bad(t) for t in texts) and not all(is_bad(t) for t in texts)
    for t in texts:
        assert looks_like_mojibake(t) == is_bad(t), t[:80]


def _old_collapse(text: str, keep_tabs: bool) -> str:
    text = re.sub(r"[^\S\n\t]+", " ", text) if keep_tabs else re.sub(r"[^\S\n]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab \t\n\r\u00a0\u3000\u2028\x0b\x0c")), max_size=60), st.booleans())
def test_whitespace_collapse_equals_plain_regexes(text: str, keep_tabs: bool) -> None:
    step = Normalize(fix_mojibake=False, remove_control=False, form="none", keep_tabs=keep_tabs)
    assert step.normalize(text) == _old_collapse(text.replace("\r\n", "\n").replace("\r", "\n"), keep_tabs)


_LID_CJK = langid._CJK
_OLD_NOT_PROSE = re.compile(
    rf"[^\s{_LID_CJK}\u3000-\u303f\uff00-\uffef]*[/\\@][^\s{_LID_CJK}\u3000-\u303f\uff00-\uffef]*"
)
_OLD_OTHER_LETTERS = re.compile(rf"(?:(?![{_LID_CJK}])[^\W\d_])+")


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(list("ab/\\@ .:-_1日한の，\u3000é\n") + ["http://x.org/a", "a@b.cn", "路径/usr/bin"]),
        max_size=80,
    ).map("".join)
)
def test_langid_patterns_equal_the_plain_ones(text: str) -> None:
    assert langid._NOT_PROSE.sub(" ", text) == _OLD_NOT_PROSE.sub(" ", text)
    assert langid._OTHER_LETTERS.findall(text) == _OLD_OTHER_LETTERS.findall(text)
