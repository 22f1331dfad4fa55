"""Length filters in characters and in tokens (the unit the dataset is priced in)."""

from __future__ import annotations

import re

from ciyuan.config import DEFAULT_TOKENIZER
from ciyuan.curate.steps.base import TEXT, Param, Step, token_count
from ciyuan.tokens import get_schedule

# Han, kana, Hangul: one such character says about as much as two or three Latin letters
_WIDE_RE = re.compile("[\u1100-\u11ff\u3040-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


class Length(Step):
    name = "length"
    modalities = TEXT
    kind = "filter"
    description = "Reject records shorter or longer than limits in characters and tokens."
    params = (
        Param("min_chars", "int", 1, "Reject text with fewer characters (0 disables)."),
        Param("max_chars", "int", 0, "Reject text with more characters (0 disables)."),
        Param("min_tokens", "int", 0, "Reject records with fewer tokens (0 disables)."),
        Param("max_tokens", "int", 0, "Reject records with more tokens (0 disables)."),
        Param("tokenizer", "str", "", "Which record['tokens'] count to use; empty = the first one counted."),
        Param(
            "cjk_char_weight",
            "float",
            1.0,
            "How many characters a Chinese/Japanese/Korean character counts as in min_chars/max_chars "
            "(2 = display width: a limit set for Latin text then asks CJK text for as much content).",
        ),
    )

    def _tokens(self, record: dict) -> int:
        n = token_count(record, self.tokenizer or None)
        if n is not None:
            return n
        name = self.tokenizer or DEFAULT_TOKENIZER
        n = get_schedule(name).count_records([record])[0]
        record.setdefault("tokens", {})[name] = n
        return n

    def _chars(self, text: str) -> int:
        if self.cjk_char_weight == 1.0 or text.isascii():
            return len(text)
        return round(len(text) + (self.cjk_char_weight - 1) * len(_WIDE_RE.findall(text)))

    def process(self, record: dict) -> None:
        chars = self._chars(record.get("text") or "")
        if self.min_chars and chars < self.min_chars:
            self.reject(record, "too_few_chars", f"length: {chars} characters < {self.min_chars}")
            return
        if self.max_chars and chars > self.max_chars:
            self.reject(record, "too_many_chars", f"length: {chars} characters > {self.max_chars}")
            return
        if self.min_tokens or self.max_tokens:
            n = self._tokens(record)
            if self.min_tokens and n < self.min_tokens:
                self.reject(record, "too_few_tokens", f"length: {n} tokens < {self.min_tokens}")
            elif self.max_tokens and n > self.max_tokens:
                self.reject(record, "too_many_tokens", f"length: {n} tokens > {self.max_tokens}")
