"""A seeded multilingual corpus for retrieval tests: English, Chinese, Japanese and Korean documents
made of pseudo-words drawn from a Zipf-like distribution, so common words repeat across documents
(as real text does) while each document keeps rarer words of its own.
"""

from __future__ import annotations

import random

LANGS = ("en", "zh", "ja", "ko")
_KANA_PARTICLES = ["の", "に", "を", "は", "が", "で", "と", "から", "まで"]


def _vocab(lang: str, rng: random.Random, size: int) -> list[str]:
    words: set[str] = set()
    while len(words) < size:
        if lang == "en":
            n = rng.randint(2, 4)
            words.add("".join(rng.choice("bcdfghklmnprstvz") + rng.choice("aeiou") for _ in range(n)))
        elif lang == "zh":
            words.add("".join(chr(0x4E00 + rng.randrange(4000)) for _ in range(rng.randint(1, 3))))
        elif lang == "ja":
            kanji = "".join(chr(0x4E00 + rng.randrange(3000)) for _ in range(rng.randint(1, 2)))
            kana = "".join(chr(0x30A1 + rng.randrange(80)) for _ in range(rng.randint(0, 2)))
            words.add(kanji + kana)
        else:
            words.add("".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(rng.randint(2, 3))))
    return sorted(words)


def documents(lang: str, n: int, seed: int = 0, words: tuple[int, int] = (40, 70)) -> list[dict]:
    """``n`` records ``{id, text, meta}`` in ``lang``; ids are ``<lang>-<i>``."""
    rng = random.Random(f"{lang}-{seed}")
    vocab = _vocab(lang, rng, 3000)
    weights = [1.0 / (r + 1) for r in range(len(vocab))]
    out = []
    for i in range(n):
        ws = rng.choices(vocab, weights=weights, k=rng.randint(*words))
        if lang in ("zh", "ja"):
            parts = []
            for j, w in enumerate(ws):
                parts.append(w)
                if lang == "ja" and j % 2:
                    parts.append(rng.choice(_KANA_PARTICLES))
                if j % 9 == 8:
                    parts.append("。")
            text = "".join(parts) + "。"
        else:
            text = " ".join(ws) + "."
        out.append({"id": f"{lang}-{i}", "text": text, "meta": {"language": lang}})
    return out
