"""Real text found on the machine at run time, in three domains (nothing is shipped in the repo).

legal: Debian copyright files (licence grants and notices); changelog: Debian package changelogs;
general: man pages with the troff markup stripped. When a domain has too little text here, two
clearly different synthetic domains stand in (and ``REAL`` says so).
"""

from __future__ import annotations

import glob
import gzip
import re
import zlib
from collections.abc import Callable

import numpy as np
import pytest

_TROFF = re.compile(r"\\f[BIRP]|\\\(..|\\[-&e]|\\s[-+]?\d")


def _read(path: str) -> str:
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rt", errors="replace") as fh:
                return fh.read()
        with open(path, errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


def _paragraphs(text: str, min_chars: int = 200) -> list[str]:
    out, cur = [], []
    for para in re.split(r"\n\s*\n", text):
        cur.append(para.strip())
        if sum(len(c) for c in cur) >= min_chars:
            out.append("\n".join(cur))
            cur = []
    return out


def _troff_to_text(src: str) -> str:
    lines = [ln for ln in src.splitlines() if not ln.startswith((".", "'"))]
    return _TROFF.sub("", "\n".join(lines))


def _collect(pattern: str, budget_chars: int, convert=lambda s: s) -> list[str]:
    docs, have = [], 0
    for path in sorted(glob.glob(pattern)):
        for p in _paragraphs(convert(_read(path))):
            docs.append(p)
            have += len(p)
        if have >= budget_chars:
            break
    return docs if have >= budget_chars else []


def _synthetic(seed: int, topic: list[str], n_docs: int) -> list[str]:
    rng = np.random.default_rng(seed)
    common = [
        "the",
        "of",
        "and",
        "to",
        "in",
        "is",
        "that",
        "for",
        "it",
        "with",
        "as",
        "on",
        "be",
        "by",
        "this",
    ]
    vocab = topic + common
    return [" ".join(rng.choice(vocab, 60)) + "." for _ in range(n_docs)]


def corpora(chars: int = 400_000) -> tuple[dict[str, list[str]], bool]:
    """``({"legal", "changelog", "general"}: paragraphs), real`` with at least ``chars`` each."""
    real = {
        "legal": _collect("/usr/share/doc/*/copyright", chars),
        "changelog": _collect("/usr/share/doc/*/changelog.Debian.gz", chars),
        "general": _collect("/usr/share/man/man1/*.1.gz", chars, _troff_to_text),
    }
    if all(real.values()):
        return real, True
    n = chars // 300
    fake = {
        "legal": _synthetic(1, ["licence", "copyright", "warranty", "permission", "software", "holder", "liable"], n),
        "changelog": _synthetic(2, ["release", "upload", "fix", "bug", "version", "package", "urgency", "build"], n),
        "general": _synthetic(3, ["option", "file", "command", "output", "display", "user", "default", "program"], n),
    }
    return fake, False


def split(docs: list[str], eval_share: float = 0.15) -> tuple[list[str], list[str]]:
    """Deterministic train/eval split by a hash of each paragraph."""
    train = [d for d in docs if zlib.crc32(d.encode()) % 1000 >= eval_share * 1000]
    ev = [d for d in docs if zlib.crc32(d.encode()) % 1000 < eval_share * 1000]
    return train, ev


@pytest.fixture(scope="session")
def real_corpora() -> tuple[dict[str, list[str]], bool, Callable]:
    """The three domains, whether they are real text, and the deterministic splitter."""
    docs, real = corpora()
    return docs, real, split
