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
import errno
import json
import math
import os
import re
import stat
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import zstandard

from ciyuan.errors import InvalidInput, NotFound

FORMATS = ("jsonl", "parquet", "csv", "text")
RAW_KEEP = 64 * 1024  # bytes of an over-long line kept in quarantine: enough to see what it was
CHUNK = 64 * 1024  # decompressed bytes read per step
ZSTD_IN_CHUNK = 64  # compressed bytes fed at first; then sized by the ratio seen, to bound the output
PARQUET_BATCH = 1024
TEXT_SUFFIXES = (".txt", ".md", ".markdown")
MAX_DEPTH = 64  # nesting levels of a JSON value; deeper ones are quarantined (later stages recurse)

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


Meter = Callable[[int], None]  # told how many more bytes of the file were read


def _no_meter(_: int) -> None:
    return None


def _chunks(path: str, meter: Meter = _no_meter) -> Iterator[bytes]:
    """Decompressed bytes of ``path`` in bounded chunks; compression is sniffed from magic bytes.

    ``meter`` hears the bytes read from the file itself (compressed bytes for .gz/.zst), so progress
    can be shown against the file's size.
    """
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        if head.startswith(_GZIP_MAGIC):
            yield from _gzip_chunks(f, meter)
        elif head == _ZSTD_MAGIC:
            yield from _zstd_chunks(f, meter)
        else:
            while chunk := f.read(CHUNK):
                meter(len(chunk))
                yield chunk


def _gzip_chunks(f: BinaryIO, meter: Meter = _no_meter) -> Iterator[bytes]:
    """gzip members one chunk at a time, yielding every byte that decodes before a break.

    ``gzip.GzipFile.read`` throws away what it decoded in the call that hits a cut or damaged
    stream (up to a whole chunk of good lines); decoding with zlib directly keeps it, and names the
    compressed byte offset of the break. Output per call is capped at ``CHUNK`` (zip bombs stay
    bounded). Zero bytes after the last member are padding, as ``gzip`` accepts.
    """
    pos = 0  # compressed bytes of the file fully accounted for (start of ``data``)
    produced = 0  # decompressed bytes yielded
    d: Any = None  # the current member's decompressor; None between members
    started = False
    while True:
        data = f.read(CHUNK)
        if not data:
            break
        meter(len(data))
        while data:
            if d is None:
                if started:
                    stripped = data.lstrip(b"\0")
                    pos += len(data) - len(stripped)
                    data = stripped
                    if not data:
                        break
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                started = True
            saved = d.copy()
            try:
                out = d.decompress(data, CHUNK)
            except zlib.error:
                # redo this step a byte at a time from the saved state: keep what decodes, find the byte
                d = saved
                for i in range(len(data)):
                    try:
                        out = d.decompress(data[i : i + 1])
                    except zlib.error as exc:
                        raise _Broken(
                            f"gzip stream corrupt at compressed byte {pos + i} "
                            f"(after {produced} decompressed bytes): {exc}"
                        ) from exc
                    if out:
                        produced += len(out)
                        yield out
                    if d.eof:
                        break
                raise _Broken(f"gzip stream corrupt at compressed byte {pos + len(data)}") from None
            if out:
                produced += len(out)
                yield out
            while len(out) == CHUNK and not d.unconsumed_tail and not d.eof:  # capped: drain what is pending
                out = d.decompress(b"", CHUNK)
                if out:
                    produced += len(out)
                    yield out
            if d.eof:
                rest = d.unused_data
                pos += len(data) - len(rest)
                data, d = rest, None
            else:
                tail = d.unconsumed_tail
                pos += len(data) - len(tail)
                data = tail
    if d is not None and not d.eof:
        raise _Broken(
            f"gzip stream truncated: the file ends at byte {pos} inside a compressed member "
            f"(after {produced} decompressed bytes)"
        )


def _zstd_chunks(f: BinaryIO, meter: Meter = _no_meter) -> Iterator[bytes]:
    """zstd frames (several may be concatenated), detecting truncation the stream reader would hide.

    zstd has no output cap per call, so the input fed per step follows the ratio seen so far: about
    ``CHUNK`` of output per step, whether the ratio is 3 (text) or 30,000 (a bomb of zeros).
    """
    dctx = zstandard.ZstdDecompressor()
    dobj = dctx.decompressobj()
    fed = False  # has the current frame received any input?
    pos = 0  # compressed bytes of the file read before ``data``
    step = ZSTD_IN_CHUNK
    while True:
        data = f.read(step)
        if not data:
            break
        meter(len(data))
        size, produced = len(data), 0
        while data:
            try:
                out = dobj.decompress(data)
            except zstandard.ZstdError as exc:
                raise _Broken(f"zstd stream corrupt in compressed bytes {pos}-{pos + size}: {exc}") from exc
            fed = True
            if out:
                produced += len(out)
                yield out
            if dobj.eof:
                data = dobj.unused_data
                dobj = dctx.decompressobj()
                fed = False
            else:
                data = b""
        pos += size
        step = max(16, min(CHUNK, CHUNK * size // produced)) if produced else min(CHUNK, step * 2)
    if fed:
        raise _Broken(f"zstd stream truncated: the file ends at byte {pos} inside an incomplete frame")


def _lines(path: str, max_line_bytes: int, meter: Meter = _no_meter) -> Iterator[tuple[int, bytes, str | None]]:
    """Yield ``(line_number, content, problem)`` per physical line, without its line ending.

    ``problem`` is None for an ordinary line. An over-long line is yielded once with its first
    ``RAW_KEEP`` bytes and a problem message; the rest of it is discarded as it streams past. A broken
    compressed stream is yielded last with the partial line reached and the decoder's complaint;
    every complete line before the break has been yielded by then.
    """
    buf = bytearray()
    lineno = 0
    scan_from = 0  # bytes of buf already known to contain no newline
    skipping = False  # inside an over-long line, discarding until its end
    skipped_total = 0
    first = True
    chunks = _chunks(path, meter)
    while True:
        try:
            chunk = next(chunks, None)
        except _Broken as exc:
            raw = bytes(buf[:RAW_KEEP])
            reached = lineno + 1
            where = "mid-line" if (buf or skipping) else "at a line boundary"
            yield reached, raw, f"{exc} (stopped {where} at line {reached}; every line before it was kept)"
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


class _OutOfRange(ValueError):
    """A JSON number too large for a 64-bit float."""


def _finite_float(text: str) -> float:
    """JSON numbers with a fraction or exponent; ``1e400`` would silently become Infinity, which is
    not JSON and breaks every reader downstream, so the item is quarantined instead."""
    value = float(text)
    if math.isinf(value):
        raise _OutOfRange(text)
    return value


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _check_tree(obj: Any, depth_limit: bool, surrogates: bool) -> str | None:
    """Why a parsed value cannot be kept (nested too deeply, or an unpaired surrogate), else None.

    Iterative, so a deep value cannot exhaust the stack here; later stages (canonical JSON, curation,
    delivery) recurse, hence the limit of ``MAX_DEPTH`` levels. A lone ``\\ud800`` parses into a str
    that cannot be encoded as UTF-8, so writing the shard would fail.
    """
    stack: list[tuple[Any, int, str]] = [(obj, 1, "")]
    while stack:
        value, depth, where = stack.pop()
        if isinstance(value, dict | list):
            if depth_limit and depth > MAX_DEPTH:
                return f"JSON nested too deeply: more than {MAX_DEPTH} levels (at {where or 'the top'})"
            pairs = value.items() if isinstance(value, dict) else enumerate(value)
            for key, child in pairs:
                path = f"{where}.{key}" if where else str(key)
                if surrogates and isinstance(key, str) and (bad := _surrogate(key, f"the name of field {path!r}")):
                    return bad
                stack.append((child, depth + 1, path))
        elif surrogates and isinstance(value, str) and (bad := _surrogate(value, f"field {where!r}")):
            return bad
    return None


def _surrogate(text: str, where: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return (
            f"unpaired surrogate \\u{ord(text[exc.start]):04x} in {where} at character {exc.start}: "
            "not valid Unicode, so it cannot be stored as UTF-8"
        )
    return None


# --------------------------------------------------------------------------------------------------
# readers


def _read_jsonl(
    path: str, text_field: str, id_field: str | None, max_line_bytes: int, meter: Meter = _no_meter
) -> Iterator[Good | Bad]:
    for lineno, raw, problem in _lines(path, max_line_bytes, meter):
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
            obj = json.loads(line, parse_constant=_reject_constant, parse_float=_finite_float)
        except json.JSONDecodeError as exc:
            reason = f"malformed JSON: {exc.msg} at column {exc.colno} (char {exc.pos})"
            yield Bad(path, lineno, reason, raw)
            continue
        except _OutOfRange as exc:
            reason = (
                f"number out of range: {str(exc)[:40]} does not fit a 64-bit float (it would become "
                "Infinity, which JSON cannot carry); write it as a string to keep its digits"
            )
            yield Bad(path, lineno, reason, raw)
            continue
        except RecursionError:
            yield Bad(path, lineno, f"JSON nested too deeply: more than {MAX_DEPTH} levels", raw)
            continue
        except ValueError as exc:  # NaN/Infinity, or integers too long to convert
            yield Bad(path, lineno, f"malformed JSON: {exc}", raw)
            continue
        deep = raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
        lone = _SURROGATE_ESCAPE.search(raw) is not None
        if (deep or lone) and (why := _check_tree(obj, deep, lone)):
            yield Bad(path, lineno, why, raw)
            continue
        rec = _to_record(obj, text_field, id_field)
        if isinstance(rec, str):
            yield Bad(path, lineno, rec, raw)
        else:
            yield Good(path, lineno, rec)


class _Span:
    """The physical lines of one CSV record in one buffer (no object per line), with their numbers.

    Its size is what ``max_record_bytes`` bounds; a cut record's lines after the first are read
    again from here, so parsing resumes right after the line that opened a runaway quote.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self.ends = array("q")
        self.nums = array("q")
        self.skipped = 0  # bytes of bad lines met inside the record (reported, not kept here)

    def add(self, lineno: int, raw: bytes) -> None:
        self.buf += raw
        self.buf += b"\n"
        self.ends.append(len(self.buf))
        self.nums.append(lineno)

    def __len__(self) -> int:
        return len(self.nums)

    @property
    def size(self) -> int:
        return len(self.buf) + self.skipped

    def line(self, i: int) -> tuple[int, bytes]:
        start = self.ends[i - 1] if i else 0
        return self.nums[i], bytes(self.buf[start : self.ends[i] - 1])

    def raw(self) -> bytes:
        """The record's bytes (lines joined by newlines), cut to ``RAW_KEEP``."""
        return bytes(self.buf[: min(len(self.buf) - 1, RAW_KEEP)]) if self.buf else b""

    def last(self) -> int:
        return self.nums[-1] if self.nums else 0


class _Cut(Exception):
    """The record being parsed cannot be finished; reading resumes on the line after its first."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _read_csv(
    path: str, text_field: str, id_field: str | None, max_record_bytes: int, meter: Meter = _no_meter
) -> Iterator[Good | Bad]:
    """CSV with a header row; a row spanning lines (quoted newlines) reports the line it started on.

    A record (all its lines, quoted newlines included) is at most ``max_record_bytes``; a quote that
    never closes would otherwise swallow the rest of the file into one field. Such a record is
    quarantined once, from the line that opened it, and parsing starts again on the next line, so
    the rows it swallowed are kept; memory stays within a few times the limit.
    """
    delimiter = "\t" if _strip_compression(os.path.basename(path))[0].endswith(".tsv") else ","
    source = _lines(path, max_record_bytes, meter)
    pending: list[Bad] = []  # line-level problems found while feeding csv, emitted in line order
    replay: deque[list[Any]] = deque()  # [span, next index]: lines to read again before the source
    span = _Span()  # lines of the record being parsed

    def next_line() -> tuple[int, bytes, str | None] | None:
        while replay:
            seg, i = replay[0]
            if i < len(seg):
                replay[0][1] = i + 1
                lineno, raw = seg.line(i)
                return lineno, raw, None
            replay.popleft()
        return next(source, None)

    def feed() -> Iterator[str]:
        while True:
            item = next_line()
            if item is None:
                if len(span):  # csv asked for more inside a record: a quoted field is still open
                    raise _Cut(
                        f"unclosed quote: the quoted field of the record starting on line {span.nums[0]} "
                        f"is still open at the end of the file, {len(span)} lines later; "
                        "the lines after it were read again as rows"
                    )
                return
            lineno, raw, problem = item
            text = None
            if problem is None:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    problem = f"invalid UTF-8 at byte offset {exc.start} of the line"
            if problem is not None or text is None:
                pending.append(Bad(path, lineno, problem or "", raw))
                if len(span):  # inside an open record: it counts toward the record's limit
                    span.skipped += len(raw) + 1
                    if span.size > max_record_bytes:
                        raise _too_large(span, lineno)
                yield "\n"  # keep csv's line count aligned with the file's
                continue
            span.add(lineno, raw)
            if span.size > max_record_bytes and len(span) > 1:
                raise _too_large(span, lineno)
            yield text + "\n"

    def _too_large(span: _Span, lineno: int) -> _Cut:
        return _Cut(
            f"CSV record too large: the record starting on line {span.nums[0]} passes the limit of "
            f"{max_record_bytes} bytes on line {lineno} (a quote that never closes?); only its first "
            f"{min(len(span.buf), RAW_KEEP)} bytes are kept here, and the lines after its first were "
            "read again as rows"
        )

    old_limit = csv.field_size_limit()
    csv.field_size_limit(max_record_bytes + 1)  # our own record limit applies first
    try:
        reader = csv.reader(feed(), delimiter=delimiter)
        header: list[str] | None = None
        while True:
            span = _Span()
            try:
                row = next(reader, None)
            except (_Cut, csv.Error) as exc:
                reason = exc.reason if isinstance(exc, _Cut) else f"CSV error: {exc}"
                start = span.nums[0] if len(span) else span.last() + 1
                yield Bad(path, start, reason, span.raw())
                yield from _flush(pending)  # bad lines met inside the record come after its start
                if len(span) > 1:
                    replay.appendleft([span, 1])
                reader = csv.reader(feed(), delimiter=delimiter)  # the old one is inside the broken record
                continue
            yield from _flush(pending)
            if row is None:
                break
            if not row or not len(span):
                continue  # a blank line, or one already reported as bad
            line = span.nums[0]
            if header is None:
                header = row
                if text_field not in header:
                    raise InvalidInput(
                        f"{path}: CSV header has no column {text_field!r} (columns: {', '.join(header)})",
                        hint="pass the name of the column holding the text as the text field",
                    )
                continue
            if len(row) != len(header):
                yield Bad(path, line, f"row has {len(row)} fields, header has {len(header)}", span.raw())
                continue
            rec = _to_record(dict(zip(header, row, strict=True)), text_field, id_field)
            if isinstance(rec, str):
                yield Bad(path, line, rec, span.raw())
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


def _read_parquet(path: str, text_field: str, id_field: str | None, meter: Meter = _no_meter) -> Iterator[Good | Bad]:
    """Rows in batches of ``PARQUET_BATCH``, row group by row group; ``line`` is the 1-based row number.

    A row group that cannot be read (a damaged page) is quarantined as one item naming its rows and
    byte offset, and reading goes on with the next group: the other groups are kept. A batch whose
    cells do not convert (invalid UTF-8 in a string column) is taken apart row by row.
    """
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
    md = pf.metadata
    row = 0
    for g in range(md.num_row_groups):
        group = md.row_group(g)
        last = row + group.num_rows
        offsets = [
            o for c in range(group.num_columns)
            for o in (group.column(c).dictionary_page_offset, group.column(c).data_page_offset) if o
        ]
        at = min(offsets) if offsets else 0
        size = sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        batches = pf.iter_batches(batch_size=PARQUET_BATCH, row_groups=[g])
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as exc:
                reason = (
                    f"Parquet row group {g} unreadable (rows {row + 1}-{last}, {size} bytes at file byte offset "
                    f"{at}): {exc}; the other row groups were read"
                )
                yield Bad(path, row + 1, reason, b"")
                break
            if batch is None:
                break
            for obj in _batch_rows(batch, pa):
                row += 1
                if isinstance(obj, str):
                    yield Bad(path, row, obj, b"")
                    continue
                obj = _jsonable(obj)
                rec = _to_record(obj, text_field, id_field)
                if isinstance(rec, str):
                    raw = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")[:RAW_KEEP]
                    yield Bad(path, row, rec, raw)
                else:
                    yield Good(path, row, rec)
        row = last
        meter(size)


def _batch_rows(batch: Any, pa: Any) -> list[dict | str]:
    """The rows of ``batch`` as dicts; a row whose cells do not convert becomes the reason why."""
    try:
        return batch.to_pylist()
    except (UnicodeDecodeError, pa.ArrowException, ValueError, OverflowError):
        pass
    out: list[dict | str] = []
    for i in range(batch.num_rows):
        one = batch.slice(i, 1)
        try:
            out.append(one.to_pylist()[0])
            continue
        except (UnicodeDecodeError, pa.ArrowException, ValueError, OverflowError) as exc:
            bad = next((n for n, col in zip(one.schema.names, one.columns, strict=True) if _fails(col, pa)), "?")
            out.append(f"Parquet cell unreadable in column {bad!r}: {exc}")
    return out


def _fails(column: Any, pa: Any) -> bool:
    try:
        column.to_pylist()
    except (UnicodeDecodeError, pa.ArrowException, ValueError, OverflowError):
        return True
    return False


def _text_files(path: str) -> list[tuple[str, str, str | None]]:
    """``(full path, path inside the folder, problem)`` for each .txt/.md file the text reader takes,
    sorted; hidden entries are skipped and symbolic links to folders are not followed (no loops).
    A folder that cannot be listed is an entry too, with its problem, so it is quarantined."""
    if not os.path.isdir(path):
        return [(path, os.path.basename(path), None)]
    files: list[tuple[str, str, str | None]] = []

    def unlisted(exc: OSError) -> None:
        where = exc.filename or path
        rel = os.path.relpath(where, path).replace(os.sep, "/")
        files.append((where, rel, f"cannot read folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(path, onerror=unlisted):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(TEXT_SUFFIXES):
                continue
            full = os.path.join(dirpath, name)
            files.append((full, os.path.relpath(full, path).replace(os.sep, "/"), None))
    files.sort(key=lambda entry: entry[1])
    return files


def _open_problem(full: str) -> tuple[str | None, int]:
    """Why ``full`` cannot be read as one text file (dangling or looping link, not a regular file), and its size."""
    try:
        st = os.stat(full)
    except OSError as exc:
        link = ""
        if os.path.islink(full):
            kind = {errno.ENOENT: "dangling", errno.ELOOP: "a loop"}.get(exc.errno or 0, "unreadable")
            try:
                link = f" (a symbolic link to {os.readlink(full)!r}: {kind})"
            except OSError:
                link = f" (a symbolic link: {kind})"
        return f"cannot read file: {exc.strerror or exc}{link}", 0
    if not stat.S_ISREG(st.st_mode):
        return "cannot read file: not a regular file (a pipe, socket or device)", 0
    return None, st.st_size


def _read_text(path: str, max_line_bytes: int, meter: Meter = _no_meter) -> Iterator[Good | Bad]:
    """A folder of .txt/.md files (recursive, sorted, hidden entries skipped) or one such file.

    A file that cannot be opened (a dangling or looping symbolic link, a pipe, no permission) is
    quarantined with why, and the other files are read.
    """
    for full, rel, problem in _text_files(path):
        size = 0
        if problem is None:
            problem, size = _open_problem(full)
        if problem is None:
            try:
                with open(full, "rb") as f:
                    data = f.read(min(size, max_line_bytes) + 1)
            except OSError as exc:
                problem = f"cannot read file: {exc.strerror or exc}"
        meter(size)
        if problem is not None:
            yield Bad(full, 0, problem, b"")
            continue
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


def source_size(path: str, fmt: str = "auto") -> int:
    """Bytes :func:`read_source` will read from ``path`` (a folder: its text files), for progress totals."""
    path = os.fspath(path)
    if os.path.isdir(path) and fmt in ("auto", "text"):
        return sum(_open_problem(full)[1] for full, _, problem in _text_files(path) if problem is None)
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def read_source(
    path: str,
    *,
    fmt: str = "auto",
    text_field: str = "text",
    id_field: str | None = None,
    max_line_bytes: int = 8 * 1024 * 1024,
    on_bytes: Meter | None = None,
) -> Iterator[Good | Bad]:
    """Stream every item of ``path`` as a ``Good`` record or a ``Bad`` for quarantine, in input order.

    Problems with the whole source (missing file, unknown format, no text column) raise
    ``CiyuanError`` before the first item; problems with single items never raise.
    ``max_line_bytes`` bounds a line, a CSV record (quoted newlines included) and a text file.
    ``on_bytes`` hears how many more bytes of the input were read (compressed bytes for .gz/.zst),
    adding up to about :func:`source_size`.
    """
    path = os.fspath(path)
    meter = on_bytes or _no_meter
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
        return _read_jsonl(path, text_field, id_field, max_line_bytes, meter)
    if fmt == "csv":
        return _guarded(_read_csv(path, text_field, id_field, max_line_bytes, meter))
    if fmt == "parquet":
        return _guarded(_read_parquet(path, text_field, id_field, meter))
    return _read_text(path, max_line_bytes, meter)


def _guarded(items: Iterator[Good | Bad]) -> Iterator[Good | Bad]:
    """Run the generator up to its first item now, so source-level errors raise at the call."""
    first = next(items, None)

    def rest() -> Iterator[Good | Bad]:
        if first is not None:
            yield first
            yield from items

    return rest()


__all__ = ["Bad", "Good", "FORMATS", "detect_format", "read_source", "source_size"]
