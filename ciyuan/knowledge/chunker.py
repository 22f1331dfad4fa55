"""Versioned chunker: records into token-bounded, overlapping chunks with exact character offsets.

A knowledge base retrieves chunks, and a buyer pays for the tokens of the chunks returned, so a
chunk must be bounded in tokens (not characters or words: CJK text has no spaces and a character
can be several tokens) and must point back into its source exactly: ``record.text[start:end] ==
chunk.text``, so a result can be cited, highlighted and re-read from the version.

The windows are cut on the record's cl100k_base token sequence (the text tokenizer of
``ciyuan.tokens``); a window's byte span is snapped down to the character boundary it falls in, so
a token that splits a multi-byte character never yields half a character, and consecutive windows
without overlap tile the text exactly. A graph record (``modality="graph"``: one subject with its
triples) is one chunk whole: an agent asks about a subject and gets its triples together.

``name``, ``version`` and ``params`` go into the index manifest; changing any of them changes the
index key (``ciyuan.knowledge.retrieval``), so an index is never mixed across chunkers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np

from ciyuan.errors import InvalidInput
from ciyuan.tokens import get_tokenizer, tokenizer_version

CHUNKER_NAME = "token-window"
CHUNKER_VERSION = 1
"""Bump when the cutting rule changes (not its parameters: those are in ``ChunkerParams``)."""


@dataclass(frozen=True)
class ChunkerParams:
    """What a provider may tune; all of it is recorded in the index manifest."""

    max_tokens: int = 256
    overlap: int = 32
    tokenizer: str = "cl100k_base"

    def __post_init__(self) -> None:
        if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int) or self.max_tokens < 8:
            raise InvalidInput(f"chunker max_tokens {self.max_tokens!r} must be an integer >= 8",
                               hint="e.g. max_tokens=256")
        ov = self.overlap
        if isinstance(ov, bool) or not isinstance(ov, int) or not 0 <= ov < self.max_tokens // 2:
            raise InvalidInput(f"chunker overlap {ov!r} must be an integer from 0 to below half of max_tokens",
                               hint=f"e.g. overlap={self.max_tokens // 8}")

    def to_dict(self) -> dict:
        return asdict(self)


def describe(params: ChunkerParams) -> dict:
    """The chunker's identity as stored in an index manifest."""
    return {"name": CHUNKER_NAME, "version": CHUNKER_VERSION, "params": params.to_dict(),
            "tokenizer_version": tokenizer_version(params.tokenizer)}


def _safe(text: str) -> str:
    """Lone surrogates become U+FFFD (one code point each, so offsets are unchanged) before encoding."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def windows(text: str, params: ChunkerParams) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the token windows of ``text``, in order.

    Windows hold ``max_tokens`` tokens and start every ``max_tokens - overlap`` tokens; the last
    one ends at the end of the text. A span is snapped to the character its first byte falls in.
    """
    if not text:
        return []
    enc = get_tokenizer(params.tokenizer).encoding
    safe = _safe(text)
    tokens = enc.encode_ordinary(safe)
    n = len(tokens)
    if n <= params.max_tokens:
        return [(0, len(text))]
    raw = safe.encode("utf-8")
    lens = np.fromiter((len(b) for b in enc.decode_tokens_bytes(tokens)), dtype=np.int64, count=n)
    byte_at = np.concatenate(([0], np.cumsum(lens)))  # byte offset where token i starts; byte_at[n] == len(raw)
    data = np.frombuffer(raw, dtype=np.uint8)
    char_of_byte = np.cumsum((data & 0xC0) != 0x80) - 1  # index of the character byte b belongs to

    def char_at(token_index: int) -> int:
        b = int(byte_at[token_index])
        return len(text) if b >= len(raw) else int(char_of_byte[b])

    step = params.max_tokens - params.overlap
    spans: list[tuple[int, int]] = []
    i = 0
    while True:
        j = min(i + params.max_tokens, n)
        start, end = char_at(i), (len(text) if j == n else char_at(j))
        if end > start and (not spans or spans[-1] != (start, end)):
            spans.append((start, end))
        if j == n:
            return spans
        i += step


def chunk_id(record_id: str, start: int, end: int) -> str:
    """Stable, readable and unique within a version: the record and the span."""
    return f"{record_id}:{start}-{end}"


def chunk_records(records: Iterable[dict], params: ChunkerParams | None = None) -> Iterator[dict]:
    """Chunks ``{chunk_id, record_id, start, end, text}`` of every record that has text.

    Records without text (pictures, sounds without a transcript) have nothing to retrieve and give
    no chunk; a graph record gives exactly one chunk, its whole canonical N-Triples text.
    """
    params = params or ChunkerParams()
    for rec in records:
        text = rec.get("text")
        if not text:
            continue
        rid = str(rec["id"])
        spans = [(0, len(text))] if rec.get("modality") == "graph" else windows(text, params)
        for start, end in spans:
            yield {"chunk_id": chunk_id(rid, start, end), "record_id": rid, "start": start, "end": end,
                   "text": text[start:end]}
