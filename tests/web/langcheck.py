"""Find interface text in the wrong language on a rendered page.

Every visible text node (and every ``placeholder``, ``title``, ``alt`` and ``aria-label``) is
looked at, except what the page itself marks as data: an element with ``translate="no"`` (ids,
dataset names, record text, codes: things no translator may change) or with a ``lang`` other
than the page's (the language toggle). In Chinese mode what is left may hold no English word
(a run of two or more Latin letters) other than the technical names listed in ``TERMS``; in
English mode it may hold no Chinese character. So a string a template writes without ``t()``,
or a key missing from the Chinese table, or a backend label shown raw (``buyer_balance``,
``metered``), is reported with the text around it.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Names that stay as they are in Chinese text: formats, standards, products, units, currencies.
TERMS = {
    "API", "JSON", "JSON-LD", "LD", "HTML", "OpenAPI", "Croissant", "KNN", "Shapley", "SDK", "Python", "Cookie",
    "HttpOnly", "AI", "CNY", "USD", "EUR", "UTC", "SHA", "IPv", "ciyuan", "PII", "ID", "CSV", "URL", "Jia", "et", "al",
    "IRI", "SHACL", "DistMult", "MRR", "Hits", "GB",  # knowledge graphs: standard names and acronyms
    "BM", "MiniLM", "torch",  # BM25, the packaged sentence model and its runtime (knowledge bases)
}  # fmt: skip
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
HIDDEN = {"script", "style", "template", "noscript"}
ATTRS = ("placeholder", "title", "alt", "aria-label")
WORD = re.compile(r"[A-Za-z][A-Za-z-]*[A-Za-z]")
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")


class _Walker(HTMLParser):
    def __init__(self, lang: str) -> None:
        super().__init__(convert_charrefs=True)
        self.lang = lang
        self.stack: list[tuple[str, bool]] = []  # (tag, is data)
        self.texts: list[tuple[str, str]] = []  # (where, text)

    def _data(self) -> bool:
        return any(d for _, d in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "html":
            return
        own = a.get("lang", "").split("-")[0]
        in_head = any(t == "head" for t, _ in self.stack)  # the tab title names the dataset: data
        data = tag in HIDDEN or a.get("translate") == "no" or bool(own and own != self.lang) or in_head
        if not (data or self._data()):
            for k in ATTRS:
                if a.get(k):
                    self.texts.append((f"<{tag} {k}>", a[k]))
        if tag not in VOID:
            self.stack.append((tag, data))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):  # tolerate unclosed <p>, <li>, ...
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if data.strip() and not self._data():
            where = "/".join(t for t, _ in self.stack[-3:])
            self.texts.append((where, data.strip()))


def wrong_language(html: str, lang: str) -> list[str]:
    """Every piece of interface text on the page that is not in ``lang`` (``"zh"`` or ``"en"``)."""
    w = _Walker(lang)
    w.feed(html)
    bad = []
    for where, text in w.texts:
        if lang == "zh":
            words = [m for m in WORD.findall(text) if m not in TERMS and not all(p in TERMS for p in m.split("-"))]
            if words:
                bad.append(f"{where}: {text[:120]!r} (English: {', '.join(words[:5])})")
        elif CJK.search(text):
            bad.append(f"{where}: {text[:120]!r} (Chinese)")
    return bad
