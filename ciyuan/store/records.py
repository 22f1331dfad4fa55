"""The record schema of a shard and conversions between record dicts and Arrow.

A record is ``{"id", "modality", "text", "media", "media_ref", "meta", "tokens"}``; in Parquet ``meta``
is JSON text and every tokenizer's counts are an int64 column ``tokens__<name>``.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import pyarrow as pa

from ciyuan.canonical import canonical_json

TOKENS_PREFIX = "tokens__"
BASE_FIELDS = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("modality", pa.string(), nullable=False),
    pa.field("text", pa.large_string()),
    pa.field("media", pa.large_binary()),
    pa.field("media_ref", pa.string()),
    pa.field("meta", pa.large_string()),
]
RECORD_COLUMNS = tuple(f.name for f in BASE_FIELDS)  # a shard's record columns, before the token counts
REJECT_FIELDS = [pa.field("step", pa.string()), pa.field("reason", pa.string())]
QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("source", pa.string()),
        pa.field("line", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("raw", pa.large_binary()),
        pa.field("member", pa.string()),  # inside a tar: the member; else null
    ]
)


def token_column(tokenizer: str) -> str:
    """The Parquet column holding per-record counts under ``tokenizer`` (names made column-safe)."""
    return TOKENS_PREFIX + re.sub(r"[^A-Za-z0-9_]+", "_", tokenizer)


def token_key(tokenizer: str) -> str:
    """The key a count read back from a shard has in ``record["tokens"]``: the column's name, less the prefix."""
    return token_column(tokenizer)[len(TOKENS_PREFIX):]


def name_token_counts(tokens: dict, tokenizers: list[str]) -> dict:
    """``tokens`` keyed by schedule name (``episode-openvla``) where a shard gave the column-safe key
    (``episode_openvla``), in place: a count read back is then the one kept, not a second beside it."""
    for t in tokenizers:
        key = token_key(t)
        if key != t and key in tokens:
            tokens.setdefault(t, tokens[key])
            del tokens[key]
    return tokens


def record_schema(tokenizers: list[str], rejected: bool = False) -> pa.Schema:
    fields = list(BASE_FIELDS) + [pa.field(token_column(t), pa.int64(), nullable=False) for t in tokenizers]
    if rejected:
        fields += REJECT_FIELDS
    return pa.schema(fields)


def content_id(text: str | None, media: bytes | None = None) -> str:
    """An id from content, for records that bring none: same content, same id."""
    h = hashlib.sha256()
    h.update((text or "").encode("utf-8", "surrogatepass"))
    if media:
        h.update(b"\0")
        h.update(media)
    return h.hexdigest()[:32]


def dump_meta(meta: dict | None) -> str:
    return canonical_json(meta or {}, default=str)


def to_table(records: list[dict], tokenizers: list[str], rejected: bool = False) -> pa.Table:
    cols: dict[str, list[Any]] = {
        "id": [r["id"] for r in records],
        "modality": [r.get("modality") or "text" for r in records],
        "text": [r.get("text") for r in records],
        "media": [r.get("media") for r in records],
        "media_ref": [r.get("media_ref") for r in records],
        "meta": [dump_meta(r.get("meta")) for r in records],
    }
    for t in tokenizers:
        cols[token_column(t)] = [int(r["tokens"][t]) for r in records]
    if rejected:
        cols["step"] = [r["_rejected"]["step"] for r in records]
        cols["reason"] = [r["_rejected"]["reason"] for r in records]
    return pa.Table.from_pydict(cols, schema=record_schema(tokenizers, rejected))


def from_batch(batch: pa.RecordBatch | pa.Table) -> list[dict]:
    """Record dicts from an Arrow batch (any subset of the shard columns)."""
    names = batch.schema.names
    data = batch.to_pydict()
    n = batch.num_rows
    token_cols = [c for c in names if c.startswith(TOKENS_PREFIX)]
    out = []
    for i in range(n):
        rec: dict[str, Any] = {}
        for c in names:
            if c.startswith(TOKENS_PREFIX):
                continue
            v = data[c][i]
            rec[c] = json.loads(v) if c == "meta" and v is not None else v
        if token_cols:
            rec["tokens"] = {c[len(TOKENS_PREFIX):]: data[c][i] for c in token_cols}
        if "step" in rec and "reason" in rec:
            rec["_rejected"] = {"step": rec.pop("step"), "reason": rec.pop("reason")}
        out.append(rec)
    return out
