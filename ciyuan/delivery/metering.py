"""Pure metering rules: cursors, partitions, batch sizing, exact marginal prices, content digests.

Nothing here touches the database, so the SDK can use the same cursor and digest code as the
server and a buyer can recompute what the exchange claims.

*Cursors* are plain text ``c1.<parts>.<part>.<offset>``: a position inside one partition of an
entitlement's selection. They need no signature, because the server checks every cursor against
its own record of what this stream acknowledged; a client can only ask to continue, to re-read
what it already paid for, or to resume the open batch.

*Partitions*: the selection's records (in version order) are cut into ``parts`` contiguous,
disjoint slices; partition ``k`` holds positions ``[R*k//parts, R*(k+1)//parts)``. Every record is
in exactly one slice, so DataLoader workers (or machines) that each take one slice never overlap.

*Prices*: a batch of ``t`` tokens posted when ``P`` tokens of the entitlement are already posted
costs ``price(P + t) - price(P)``. The sum over any split telescopes to ``price(total)`` exactly.
The hold taken before sending is ``price(t)``, which is never less than that marginal amount for
an arbitrage-free (monotone, subadditive, ceil-rounded) schedule:
``ceil(f(P+t)) - ceil(f(P)) <= ceil(f(P+t) - f(P)) <= ceil(f(t))``.

*Digest* (``ciyuan-batch-v2``): each record has a leaf, the sha256 of its canonical form (for
``id, modality, text, media, media_ref, meta`` in that order: the value's length as 8 bytes
little-endian, -1 for null, then its bytes). A batch's digest is the sha256 of the tag, the
record count, the leaves in order, and the token counts as 8-byte little-endian integers. It is
free of the delivery format (NDJSON and Arrow give the same digest), and the server keeps leaves
with the decoded shards it caches, so a batch's digest hashes 32 bytes per record instead of every
byte of the batch; a buyer recomputes it from the records alone (:func:`digest`). Batches held
before v2 carry the columnar ``ciyuan-batch-v1`` digest (:func:`digest_v1`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ciyuan.errors import InvalidInput
from ciyuan.store.records import RECORD_COLUMNS, dump_meta  # dump_meta: a client re-serialises meta identically

MAX_PARTS = 1024
CURSOR_RE = re.compile(r"^c1\.(\d{1,4})\.(\d{1,4})\.(\d{1,15})$")
COLUMNS = (*RECORD_COLUMNS, "tokens")  # the wire form: the shard's record columns and one token count
SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("modality", pa.string()),
        ("text", pa.string()),
        ("media", pa.binary()),
        ("media_ref", pa.string()),
        ("meta", pa.string()),
        ("tokens", pa.int64()),
    ]
)


@dataclass(frozen=True)
class Cursor:
    parts: int
    part: int
    offset: int

    def __str__(self) -> str:
        return f"c1.{self.parts}.{self.part}.{self.offset}"

    @classmethod
    def start(cls, parts: int = 1, part: int = 0) -> Cursor:
        return check_partition(cls(parts, part, 0))

    @classmethod
    def parse(cls, text: str | None, *, parts: int = 1, part: int = 0) -> Cursor:
        """A cursor from text; ``None`` means the start of partition ``part`` of ``parts``."""
        if text is None or text == "":
            return cls.start(parts, part)
        m = CURSOR_RE.match(text) if isinstance(text, str) else None
        if m is None:
            raise InvalidInput(
                f"cursor {str(text)[:80]!r} is not a ciyuan cursor",
                hint="pass back the next_cursor of the previous batch, or omit it to start",
                code="bad_cursor",
            )
        return check_partition(cls(int(m[1]), int(m[2]), int(m[3])))


def check_partition(c: Cursor) -> Cursor:
    if not 1 <= c.parts <= MAX_PARTS or not 0 <= c.part < c.parts:
        raise InvalidInput(
            f"partition {c.part} of {c.parts} is not valid",
            hint=f"parts is 1..{MAX_PARTS} and part is 0..parts-1",
            code="bad_cursor",
        )
    return c


def partition_bounds(records: int, parts: int, part: int) -> tuple[int, int]:
    """Selection positions ``[lo, hi)`` of partition ``part``: contiguous, disjoint, covering all."""
    return records * part // parts, records * (part + 1) // parts


def batch_end(cum: np.ndarray, lo: int, start: int, hi: int, max_tokens: int, cap_tokens: int) -> int:
    """End of the batch starting at partition offset ``start``: as many records as fit ``max_tokens``
    (at least one) and never more than ``cap_tokens``. ``cum[i]`` is the token total of selection
    positions ``[0, i)``; offsets are relative to ``lo`` and the slice ends at ``hi``.
    """
    a = lo + start
    if a >= hi:
        return start
    base = int(cum[a])
    limit = base + min(max_tokens, cap_tokens)
    # the last position j in (a, hi] with cum[j] <= limit
    j = int(np.searchsorted(cum[a + 1 : hi + 1], limit, side="right")) + a
    if j == a and int(cum[a + 1]) - base <= cap_tokens:
        j = a + 1  # one record larger than max_tokens still goes alone, if the entitlement covers it
    return j - lo


def marginal_price(price, posted_tokens: int, tokens: int) -> int:
    """What ``tokens`` more tokens cost after ``posted_tokens``: telescopes to ``price(total)``."""
    return price(posted_tokens + tokens) - price(posted_tokens)


# -- content ----------------------------------------------------------------------------------------


def _slow_parts(arr: pa.Array) -> tuple[np.ndarray, memoryview]:
    """Lengths (-1 for null) and value bytes of an array with nulls (their slots' bytes are skipped)."""
    arr = arr.cast(pa.large_binary())
    lens = pc.fill_null(pc.binary_length(arr), -1).to_numpy(zero_copy_only=False).astype("<i8")
    filled = pc.fill_null(arr, pa.scalar(b"", pa.large_binary()))
    n = len(filled)
    if n == 0:
        return lens, memoryview(b"")
    offsets = np.frombuffer(filled.buffers()[1], dtype="<i8", count=n + 1, offset=filled.offset * 8)
    data = filled.buffers()[2]
    mv = memoryview(data)[int(offsets[0]) : int(offsets[-1])] if data is not None else memoryview(b"")
    return lens, mv


def _chunk_parts(arr: pa.Array) -> tuple[np.ndarray, memoryview]:
    """Lengths and value bytes of one chunk, read in place from its buffers when it has no nulls.

    This avoids copying the batch (a cast and a fill) just to hash it: hashing is then the only
    pass over the bytes. Arrays with nulls take the general path, which drops null slots' bytes.
    """
    n = len(arr)
    if n == 0:
        return np.zeros(0, "<i8"), memoryview(b"")
    if arr.null_count or not (pa.types.is_string(arr.type) or pa.types.is_binary(arr.type)
                              or pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)):
        return _slow_parts(arr)
    width = "<i8" if pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type) else "<i4"
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=width, count=n + 1, offset=arr.offset * np.dtype(width).itemsize)
    lens = np.diff(offsets).astype("<i8")
    data = bufs[2]
    mv = memoryview(data)[int(offsets[0]) : int(offsets[-1])] if data is not None else memoryview(b"")
    return lens, mv


def _column_update(h: hashlib._Hash, col: pa.Array | pa.ChunkedArray) -> None:
    """Feed one column's canonical form (all value lengths, then all value bytes) to ``h``."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    parts = [_chunk_parts(c) for c in chunks]
    for lens, _ in parts:
        h.update(lens.tobytes())
    for _, data in parts:
        h.update(data)


LEAF_COLUMNS = RECORD_COLUMNS
_NULL_LEN = (-1).to_bytes(8, "little", signed=True)


def record_leaves(table: pa.Table) -> np.ndarray:
    """The leaf (sha256 of the canonical form) of every record, as an ``(n, 32)`` uint8 array."""
    n = table.num_rows
    out = np.empty((n, 32), dtype=np.uint8)
    if n == 0:
        return out
    cols = []
    for name in LEAF_COLUMNS:
        values = table.column(name).to_pylist()
        cols.append([v.encode() if isinstance(v, str) else v for v in values])
    flat = memoryview(out).cast("B")
    sha = hashlib.sha256
    for i, row in enumerate(zip(*cols, strict=True)):
        h = sha()
        for v in row:
            if v is None:
                h.update(_NULL_LEN)
            else:
                h.update(len(v).to_bytes(8, "little"))
                h.update(v)
        flat[32 * i : 32 * i + 32] = h.digest()
    return out


def digest_leaves(leaves: np.ndarray, tokens: np.ndarray) -> str:
    """The batch digest from its records' leaves and token counts (see module doc)."""
    h = hashlib.sha256()
    h.update(b"ciyuan-batch-v2\0")
    h.update(len(leaves).to_bytes(8, "big"))
    h.update(np.ascontiguousarray(leaves, dtype=np.uint8).tobytes())
    h.update(np.asarray(tokens).astype("<i8").tobytes())
    return h.hexdigest()


def digest(table: pa.Table) -> str:
    """sha256 of a batch of records (``ciyuan-batch-v2``, see module doc), from the records alone."""
    return digest_leaves(record_leaves(table), table.column("tokens").to_numpy())


def digest_v1(table: pa.Table) -> str:
    """sha256 of a batch in the v1 canonical columnar form (per column: lengths, then bytes)."""
    h = hashlib.sha256()
    h.update(b"ciyuan-batch-v1\0")
    h.update(table.num_rows.to_bytes(8, "big"))
    for name in COLUMNS:
        col = table.column(name)
        h.update(name.encode() + b"\0")
        if name == "tokens":
            h.update(col.to_numpy().astype("<i8").tobytes())
        else:
            _column_update(h, col)
    return h.hexdigest()


def records_to_table(records: list[dict]) -> pa.Table:
    """Records as NDJSON delivers them (meta a dict, media base64) back to the canonical table."""
    cols: dict[str, list] = {c: [] for c in COLUMNS}
    for r in records:
        cols["id"].append(r.get("id"))
        cols["modality"].append(r.get("modality"))
        cols["text"].append(r.get("text"))
        m = r.get("media")
        cols["media"].append(base64.b64decode(m) if isinstance(m, str) else m)
        cols["media_ref"].append(r.get("media_ref"))
        meta = r.get("meta")
        cols["meta"].append(meta if isinstance(meta, str) or meta is None else dump_meta(meta))
        cols["tokens"].append(int(r.get("tokens") or 0))
    return pa.table(cols, schema=SCHEMA)


def table_to_ndjson(table: pa.Table) -> bytes:
    """NDJSON lines of a batch: meta parsed back to an object, media as base64."""
    out = []
    cols = {c: table.column(c).to_pylist() for c in COLUMNS}
    for i in range(table.num_rows):
        media = cols["media"][i]
        meta = cols["meta"][i]
        rec = {
            "id": cols["id"][i],
            "modality": cols["modality"][i],
            "text": cols["text"][i],
            "media": base64.b64encode(media).decode() if media is not None else None,
            "media_ref": cols["media_ref"][i],
            "meta": json.loads(meta) if meta else {},
            "tokens": cols["tokens"][i],
        }
        out.append(json.dumps(rec, ensure_ascii=False, separators=(",", ":")))
    return ("\n".join(out) + "\n").encode() if out else b""
