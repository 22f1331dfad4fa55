"""Normalise text so that later rules, hashes and tokens see one spelling of the same content."""

from __future__ import annotations

import re
import unicodedata

import ftfy
from ftfy.badness import is_bad

from ciyuan.curate.steps.base import TEXT, Param, Step

# C0/C1 controls except tab and newline, plus invisible format characters that only hide content
# (zero-width space, BOM, word joiner, soft hyphen). ZWJ/ZWNJ stay: emoji and Indic scripts need them.
_CONTROL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u2060\ufeff\u00ad]")
_HSPACE_RE = re.compile(r"[^\S\n]+")  # whitespace other than newline (incl. NBSP, ideographic space)
_TRAIL_RE = re.compile(r" *\n *")
_BLANKS_RE = re.compile(r"\n{3,}")


class Normalize(Step):
    name = "normalize"
    modalities = TEXT
    kind = "mapper"
    description = "Unicode NFC, mojibake repair (ftfy), control characters removed, whitespace collapsed."
    params = (
        Param("form", "str", "NFC", "Unicode normalisation form.", ("NFC", "NFKC", "none")),
        Param("fix_mojibake", "bool", True, "Repair mis-decoded text (UTF-8 read as Latin-1 etc.) with ftfy."),
        Param("remove_control", "bool", True, "Drop control and invisible format characters (keeps \\n, \\t)."),
        Param(
            "collapse_whitespace",
            "bool",
            True,
            "Runs of spaces/tabs become one space, lines are trimmed, 3+ newlines become 2.",
        ),
        Param("keep_tabs", "bool", False, "Keep tab characters when collapsing whitespace (for TSV/code)."),
    )

    def normalize(self, text: str) -> str:
        """The normalised form of ``text`` (pure; also used by exact_dedup)."""
        if self.fix_mojibake and not text.isascii() and is_bad(text):
            text = ftfy.fix_text(text, normalization=None)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if self.remove_control:
            text = _CONTROL_RE.sub("", text)
        if self.form != "none" and not text.isascii():
            text = unicodedata.normalize(self.form, text)
        if self.collapse_whitespace:
            text = re.sub(r"[^\S\n\t]+", " ", text) if self.keep_tabs else _HSPACE_RE.sub(" ", text)
            text = _TRAIL_RE.sub("\n", text)
            text = _BLANKS_RE.sub("\n\n", text).strip()
        return text

    def process(self, record: dict) -> None:
        text = record.get("text")
        if not text:
            return
        new = self.normalize(text)
        if new != text:
            record["text"] = new
            self.mark_changed(record, text)
