"""Streaming readers for outside formats (JSONL, Parquet, CSV, folders of text) that never lose an item.

Ingest must account for every input item: each one comes out either as a ``Good`` (a record dict
``{"id", "text", "meta"}``) or as a ``Bad`` (bound for quarantine, with the raw bytes and a reason a
person can act on). Readers stream with bounded memory -- lines are cut from fixed-size chunks,
never from a whole file -- so a 50 GB dump or a single 2 GB line cannot exhaust the machine.

Whitespace-only lines in JSONL are not items (editors and ``cat`` add them) and are skipped, but
they still count toward line numbers so that ``line`` always points at the physical line.
"""

from __future__ import annotations

import base64
import csv
import datetime as _dt
import decimal
import gzip
import json
import math
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import zstandard

from ciyuan.errors import InvalidInput, NotFound

FORMATS = ("jsonl", "parquet", "csv", "text")
RAW_KEEP = 64 * 1024  # bytes of an over-long line kept in quarantine: enough to see what it was
CHUNK = 64 * 1024  # decompressed bytes read per step
ZSTD_IN_CHUNK = 2 * 1024  # compressed bytes fed per step; bounds zstd output even for extreme ratios
PARQUET_BATCH = 1024
TEXT_SUFFIXES = (".txt", ".md", ".markdown")

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass
class Good:
    """One good input record: ``record`` is ``{"id": str | None, "text": str, "meta": dict}``."""

    source: str
    line: int
    record: dict


@dataclass
class Bad:
    """One bad input item, destined for quarantine; ``raw`` holds its (possibly truncated) bytes."""

    source: str
    line: int
    reason: str
    raw: bytes


class _Broken(Exception):
    """The compressed stream stopped decoding; carries the reason for the quarantine entry."""


# --------------------------------------------------------------------------------------------------
# format detection and opening


def _strip_compression(name: str) -> tuple[str, str | None]:
    """Split ``x.jsonl.zst`` into (``x.jsonl``, ``zst``) so the inner extension decides the format."""
    lower = name.lower()
    for suffix, kind in ((".gz", "gzip"), (".gzip", "gzip"), (".zst", "zstd"), (".zstd", "zstd")):
        if lower.endswith(suffix):
            return lower[: -len(suffix)], kind
    return lower, None


def detect_format(path: str) -> str:
    """Guess ``jsonl | parquet | csv | text`` from the name (ignoring .gz/.zst); folders are text."""
    if os.path.isdir(path):
        return "text"
    inner, _ = _strip_compression(os.path.basename(path))
    ext = os.path.splitext(inner)[1]
    if ext in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if ext in (".parquet", ".pq"):
        return "parquet"
    if ext in (".csv", ".tsv"):
        return "csv"
    if ext in TEXT_SUFFIXES:
        return "text"
    raise InvalidInput(
        f"cannot tell the format of {path!r} from its extension {ext or '(none)'!r}",
        hint="rename it to .jsonl/.parquet/.csv/.txt (optionally .gz or .zst), or pass the format explicitly",
    )


def _chunks(path: str) -> Iterator[bytes]:
    """Decompressed bytes of ``path`` in bounded chunks; compression is sniffed from magic bytes."""
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head.startswith(_GZIP_MAGIC):
            yield from _gzip_chunks(f)
        elif head == _ZSTD_MAGIC:
            yield from _zstd_chunks(f)
        else:
            while chunk := f.read(CHUNK):
                yield chunk


def _gzip_chunks(f: BinaryIO) -> Iterator[bytes]:
    """gzip members one chunk at a time; a cut or damaged file becomes ``_Broken``."""
    with gzip.GzipFile(fileobj=f, mode="rb") as gz:
        while True:
            try:
                chunk = gz.read(CHUNK)
            except EOFError as exc:
                raise _Broken(f"gzip stream truncated: {exc}") from exc
            except (OSError, zlib.error) as exc:
                raise _Broken(f"gzip stream corrupt: {exc}") from exc
            if not chunk:
                return
            yield chunk


def _zstd_chunks(f: BinaryIO) -> Iterator[bytes]:
    """zstd frames (several may be concatenated), detecting truncation the stream reader would hide."""
    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    fed = False  # has the current frame received any input?
    while True:
        data = f.read(ZSTD_IN_CHUNK)
        if not data:
            break
        while data:
            try:
                out = dobj.decompress(data)
            except zstandard.ZstdError as exc:
                raise _Broken(f"zstd stream corrupt: {exc}") from exc
            fed = True
            if out:
                yield out
            if dobj.eof:
                data = dobj.unused_data
                dobj = dctx.decompressobj()
                fed = False
            else:
                data = b""
    if fed:
        raise _Broken("zstd stream truncated: the last frame is incomplete")


def _lines(path: str, max_line_bytes: int) -> Iterator[tuple[int, bytes, str | None]]:
    """Yield ``(line_number, content, problem)`` per physical line, without its line ending.

    ``problem`` is None for an ordinary line. An over-long line is yielded once with its first
    ``RAW_KEEP`` bytes and a problem message; the rest of it is discarded as it streams past. A broken
    compressed stream is yielded last with the partial line reached and the decoder's complaint.
    """
    buf = bytearray()
    lineno = 0
    scan_from = 0  # bytes of buf already known to contain no newline
    skipping = False  # inside an over-long line, discarding until its end
    skipped_total = 0
    first = True
    chunks = _chunks(path)
    while True:
        try:
            chunk = next(chunks, None)
        except _Broken as exc:
            raw = bytes(buf[:RAW_KEEP])
            reached = lineno + 1
            where = "mid-line" if (buf or skipping) else "at a line boundary"
            yield reached, raw, f"{exc} (stopped {where} at line {reached}; lines before it were kept)"
            return
        if chunk is None:
            break
        if first and chunk.startswith(b"\xef\xbb\xbf"):
            chunk = chunk[3:]  # a UTF-8 byte-order mark is not content
        first = False
        if skipping:
            nl = chunk.find(b"\n")
            if nl < 0:
                skipped_total += len(chunk)
                continue
            skipped_total += nl + 1
            lineno += 1
            yield lineno, bytes(buf), _overlong(skipped_total, max_line_bytes)
            buf.clear()
            skipping = False
            chunk = chunk[nl + 1 :]
        buf += chunk
        start = 0
        while True:
            nl = buf.find(b"\n", max(start, scan_from))
            if nl < 0:
                break
            lineno += 1
            length = nl - start
            if length > max_line_bytes:
                yield (
                    lineno,
                    bytes(buf[start : min(nl, start + RAW_KEEP)]),
                    _overlong(length + 1, max_line_bytes),
                )
            else:
                end = nl - 1 if nl > start and buf[nl - 1] == 0x0D else nl
                yield lineno, bytes(buf[start:end]), None
            start = nl + 1
        del buf[:start]
        scan_from = len(buf)
        if len(buf) > max_line_bytes:
            skipping = True
            skipped_total = len(buf)
            del buf[RAW_KEEP:]
            scan_from = 0
    if skipping:
        lineno += 1
        yield lineno, bytes(buf), _overlong(skipped_total, max_line_bytes)
    elif buf:
        lineno += 1
        end = len(buf) - 1 if buf[-1] == 0x0D else len(buf)
        yield lineno, bytes(buf[:end]), None


def _overlong(size: int, limit: int) -> str:
    return (
        f"line too long: at least {size} bytes, limit is {limit}; "
        f"only the first {min(size, RAW_KEEP)} bytes are kept here"
    )


# --------------------------------------------------------------------------------------------------
# turning a parsed object into a record


def _split_path(field: str, obj: dict) -> list[str]:
    """A literal key wins; otherwise ``a.b`` walks nested objects."""
    if field in obj or "." not in field:
        return [field]
    return field.split(".")


def _take(obj: dict, field: str) -> tuple[bool, Any, dict]:
    """Find ``field`` (maybe dotted) in ``obj``; return (found, value, obj without that field)."""
    path = _split_path(field, obj)
    parents = [obj]
    for key in path[:-1]:
        nxt = parents[-1].get(key)
        if not isinstance(nxt, dict):
            return False, None, obj
        parents.append(nxt)
    if path[-1] not in parents[-1]:
        return False, None, obj
    value = parents[-1][path[-1]]
    # rebuild copies along the path without the taken key; drop containers left empty
    rest: dict = {k: v for k, v in parents[-1].items() if k != path[-1]}
    for depth in range(len(path) - 2, -1, -1):
        parent = {k: v for k, v in parents[depth].items() if k != path[depth]}
        if rest:
            parent[path[depth]] = rest
        rest = parent
    return True, value, rest


def _id_string(value: Any) -> str | None:
    """Ids are strings; objects get canonical JSON so the same id always reads the same."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _to_record(obj: Any, text_field: str, id_field: str | None) -> dict | str:
    """Build ``{"id", "text", "meta"}`` from one parsed object, or return why it cannot be one."""
    if not isinstance(obj, dict):
        return f"JSON value is {_json_kind(obj)}, not an object"
    found, text, rest = _take(obj, text_field)
    if not found:
        keys = ", ".join(sorted(map(str, obj))[:20]) or "none"
        return f"missing text field {text_field!r} (fields present: {keys})"
    if not isinstance(text, str):
        return f"text field {text_field!r} is {_json_kind(text)}, not a string"
    if not text.strip():
        return (
            f"text field {text_field!r} is empty"
            if not text
            else f"text field {text_field!r} is only whitespace"
        )
    rid = None
    if id_field is not None:
        found_id, id_value, rest = _take(rest, id_field)
        rid = _id_string(id_value) if found_id else None
    meta: dict = {}
    inner = rest.pop("meta", None)
    if isinstance(inner, dict):
        meta.update(inner)
    elif inner is not None:
        rest["meta"] = inner  # not an object: keep it as an ordinary field
    meta.update(rest)  # top-level fields win over the nested meta on a name clash
    return {"id": rid, "text": text, "meta": meta}


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


# --------------------------------------------------------------------------------------------------
# readers


def _read_jsonl(
    path: str, text_field: str, id_field: str | None, max_line_bytes: int
) -> Iterator[Good | Bad]:
    for lineno, raw, problem in _lines(path, max_line_bytes):
        if problem is not None:
            yield Bad(path, lineno, problem, raw)
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Bad(
                path, lineno, f"invalid UTF-8 at byte offset {exc.start} of the line: {exc.reason}", raw
            )
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            reason = f"malformed JSON: {exc.msg} at column {exc.colno} (char {exc.pos})"
            yield Bad(path, lineno, reason, raw)
            continue
        except ValueError as exc:  # NaN/Infinity, or integers too long to convert
            yield Bad(path, lineno, f"malformed JSON: {exc}", raw)
            continue
        rec = _to_record(obj, text_field, id_field)
        if isinstance(rec, str):
            yield Bad(path, lineno, rec, raw)
        else:
            yield Good(path, lineno, rec)


def _read_csv(path: str, text_field: str, id_field: str | None, max_line_bytes: int) -> Iterator[Good | Bad]:
    """CSV with a header row; a row spanning lines (quoted newlines) reports the line it started on."""
    delimiter = "\t" if _strip_compression(os.path.basename(path))[0].endswith(".tsv") else ","
    pending: list[Bad] = []  # line-level problems found while feeding csv, emitted in line order
    row_raw: list[bytes] = []
    state = {"line": 0}

    def feed() -> Iterator[str]:
        for lineno, raw, problem in _lines(path, max_line_bytes):
            state["line"] = lineno
            if problem is not None:
                pending.append(Bad(path, lineno, problem, raw))
                yield "\n"  # keep csv's line count aligned with the file's
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                pending.append(
                    Bad(path, lineno, f"invalid UTF-8 at byte offset {exc.start} of the line", raw)
                )
                yield "\n"
                continue
            row_raw.append(raw)
            yield text + "\n"

    old_limit = csv.field_size_limit()
    csv.field_size_limit(max_line_bytes)  # bounds a runaway quoted field too
    try:
        reader = csv.reader(feed(), delimiter=delimiter)
        header: list[str] | None = None
        start_line = 1
        while True:
            row_raw.clear()
            try:
                row = next(reader, None)
            except csv.Error as exc:
                yield from _flush(pending)
                yield Bad(path, start_line, f"CSV error: {exc}", b"\n".join(row_raw)[:RAW_KEEP])
                start_line = reader.line_num + 1
                continue
            yield from _flush(pending)
            if row is None:
                break
            line, start_line = start_line, reader.line_num + 1
            if not row:
                continue  # a blank line, or one already reported as bad
            if header is None:
                header = row
                if text_field not in header:
                    raise InvalidInput(
                        f"{path}: CSV header has no column {text_field!r} (columns: {', '.join(header)})",
                        hint="pass the name of the column holding the text as the text field",
                    )
                continue
            raw = b"\n".join(row_raw)
            if len(row) != len(header):
                yield Bad(path, line, f"row has {len(row)} fields, header has {len(header)}", raw)
                continue
            rec = _to_record(dict(zip(header, row, strict=True)), text_field, id_field)
            if isinstance(rec, str):
                yield Bad(path, line, rec, raw)
            else:
                yield Good(path, line, rec)
    finally:
        csv.field_size_limit(old_limit)


def _flush(pending: list[Bad]) -> Iterator[Bad]:
    yield from pending
    pending.clear()


def _jsonable(value: Any) -> Any:
    """Parquet cells may be dates, decimals or bytes; meta must survive canonical JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, _dt.datetime | _dt.date | _dt.time):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def _read_parquet(path: str, text_field: str, id_field: str | None) -> Iterator[Good | Bad]:
    """Rows in batches of ``PARQUET_BATCH``; ``line`` is the 1-based row number."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(
            f"{path}: not a readable Parquet file: {exc}", hint="check the file is complete"
        ) from exc
    names = pf.schema_arrow.names
    top = text_field if text_field in names else text_field.split(".")[0]
    if top not in names:
        raise InvalidInput(
            f"{path}: Parquet file has no column {text_field!r} (columns: {', '.join(names)})",
            hint="pass the name of the column holding the text as the text field",
        )
    row = 0
    batches = pf.iter_batches(batch_size=PARQUET_BATCH)
    while True:
        try:
            batch = next(batches, None)
        except (pa.ArrowException, OSError) as exc:
            yield Bad(path, row + 1, f"Parquet data unreadable from row {row + 1}: {exc}", b"")
            return
        if batch is None:
            return
        for obj in batch.to_pylist():
            row += 1
            obj = _jsonable(obj)
            rec = _to_record(obj, text_field, id_field)
            if isinstance(rec, str):
                raw = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")[:RAW_KEEP]
                yield Bad(path, row, rec, raw)
            else:
                yield Good(path, row, rec)


def _read_text(path: str, max_line_bytes: int) -> Iterator[Good | Bad]:
    """A folder of .txt/.md files (recursive, sorted, hidden entries skipped) or one such file."""
    if os.path.isdir(path):
        files: list[tuple[str, str]] = []
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in sorted(filenames):
                if name.startswith(".") or not name.lower().endswith(TEXT_SUFFIXES):
                    continue
                full = os.path.join(dirpath, name)
                files.append((full, os.path.relpath(full, path).replace(os.sep, "/")))
        files.sort(key=lambda pair: pair[1])
    else:
        files = [(path, os.path.basename(path))]
    for full, rel in files:
        size = os.path.getsize(full)
        with open(full, "rb") as f:
            data = f.read(min(size, max_line_bytes) + 1)
        if len(data) > max_line_bytes:
            reason = (
                f"file too large: {size} bytes, limit is {max_line_bytes}; "
                f"only the first {RAW_KEEP} bytes are kept here"
            )
            yield Bad(full, 0, reason, data[:RAW_KEEP])
            continue
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Bad(full, 0, f"invalid UTF-8 at byte offset {exc.start} of the file: {exc.reason}", data)
            continue
        if not text.strip():
            yield Bad(full, 0, "file is empty" if not text else "file is only whitespace", data)
            continue
        yield Good(full, 0, {"id": None, "text": text, "meta": {"path": rel}})


def read_source(
    path: str,
    *,
    fmt: str = "auto",
    text_field: str = "text",
    id_field: str | None = None,
    max_line_bytes: int = 8 * 1024 * 1024,
) -> Iterator[Good | Bad]:
    """Stream every item of ``path`` as a ``Good`` record or a ``Bad`` for quarantine, in input order.

    Problems with the whole source (missing file, unknown format, no text column) raise
    ``CiyuanError`` before the first item; problems with single items never raise.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise NotFound(f"input {path!r} does not exist", hint="check the path")
    if fmt == "auto":
        fmt = detect_format(path)
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown input format {fmt!r}", hint=f"use one of: auto, {', '.join(FORMATS)}")
    if max_line_bytes < 1:
        raise InvalidInput(f"max_line_bytes must be positive, got {max_line_bytes}")
    if fmt != "text" and os.path.isdir(path):
        raise InvalidInput(f"{path!r} is a folder; only the text format reads folders", hint="use fmt='text'")
    if fmt == "jsonl":
        return _read_jsonl(path, text_field, id_field, max_line_bytes)
    if fmt == "csv":
        return _guarded(_read_csv(path, text_field, id_field, max_line_bytes))
    if fmt == "parquet":
        return _guarded(_read_parquet(path, text_field, id_field))
    return _read_text(path, max_line_bytes)


def _guarded(items: Iterator[Good | Bad]) -> Iterator[Good | Bad]:
    """Run the generator up to its first item now, so source-level errors raise at the call."""
    first = next(items, None)

    def rest() -> Iterator[Good | Bad]:
        if first is not None:
            yield first
            yield from items

    return rest()


__all__ = ["Bad", "Good", "FORMATS", "detect_format", "read_source"]
