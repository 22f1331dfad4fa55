"""Plumbing every reader shares: decompressed chunks, bounded line splitting, records from parsed objects.

Readers stream with bounded memory: lines are cut from fixed-size chunks, never from a whole file,
so a 50 GB dump or a single 2 GB line cannot exhaust the machine. Compression (gzip, zstd) is
sniffed from magic bytes, so any line-based reader reads ``.gz``/``.zst`` for free.
"""

from __future__ import annotations

import base64
import datetime as _dt
import decimal
import json
import math
import zlib
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar

import zstandard

RAW_KEEP = 64 * 1024  # bytes of an over-long line kept in quarantine: enough to see what it was
CHUNK = 64 * 1024  # decompressed bytes read per step
ZSTD_IN_CHUNK = 64  # compressed bytes fed at first; then sized by the ratio seen, to bound the output
MAX_DEPTH = 64  # nesting levels of a JSON value; deeper ones are quarantined (later stages recurse)

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

Meter = Callable[[int], None]  # told how many more bytes of the file were read
T = TypeVar("T")


def no_meter(_: int) -> None:
    """The meter used when nobody listens."""
    return None


class Broken(Exception):
    """The compressed stream stopped decoding; carries the reason for the quarantine entry."""


# --------------------------------------------------------------------------------------------------
# compression and chunks


def strip_compression(name: str) -> tuple[str, str | None]:
    """Split ``x.jsonl.zst`` into (``x.jsonl``, ``zst``) so the inner extension decides the format."""
    lower = name.lower()
    for suffix, kind in ((".gz", "gzip"), (".gzip", "gzip"), (".zst", "zstd"), (".zstd", "zstd")):
        if lower.endswith(suffix):
            return lower[: -len(suffix)], kind
    return lower, None


def chunks(path: str, meter: Meter = no_meter) -> Iterator[bytes]:
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


def _gzip_chunks(f: BinaryIO, meter: Meter = no_meter) -> Iterator[bytes]:
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
                        raise Broken(
                            f"gzip stream corrupt at compressed byte {pos + i} "
                            f"(after {produced} decompressed bytes): {exc}"
                        ) from exc
                    if out:
                        produced += len(out)
                        yield out
                    if d.eof:
                        break
                raise Broken(f"gzip stream corrupt at compressed byte {pos + len(data)}") from None
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
        raise Broken(
            f"gzip stream truncated: the file ends at byte {pos} inside a compressed member "
            f"(after {produced} decompressed bytes)"
        )


def _zstd_chunks(f: BinaryIO, meter: Meter = no_meter) -> Iterator[bytes]:
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
                raise Broken(f"zstd stream corrupt in compressed bytes {pos}-{pos + size}: {exc}") from exc
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
        raise Broken(f"zstd stream truncated: the file ends at byte {pos} inside an incomplete frame")


def lines(path: str, max_line_bytes: int, meter: Meter = no_meter) -> Iterator[tuple[int, bytes, str | None]]:
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
    source = chunks(path, meter)
    while True:
        try:
            chunk = next(source, None)
        except Broken as exc:
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


def head(path: str, size: int = 4096) -> bytes:
    """The first ``size`` decompressed bytes of ``path`` (fewer if the file is shorter or broken), for
    readers that sniff content; b"" for anything that cannot be opened."""
    out = bytearray()
    try:
        for chunk in chunks(path):
            out += chunk
            if len(out) >= size:
                break
    except (Broken, OSError):
        pass
    return bytes(out[:size])


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


def to_record(obj: Any, text_field: str, id_field: str | None) -> dict | str:
    """Build ``{"id", "text", "meta"}`` from one parsed object, or return why it cannot be one."""
    if not isinstance(obj, dict):
        return f"JSON value is {json_kind(obj)}, not an object"
    found, text, rest = _take(obj, text_field)
    if not found:
        keys = ", ".join(sorted(map(str, obj))[:20]) or "none"
        return f"missing text field {text_field!r} (fields present: {keys})"
    if not isinstance(text, str):
        return f"text field {text_field!r} is {json_kind(text)}, not a string"
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


def json_kind(value: Any) -> str:
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


# --------------------------------------------------------------------------------------------------
# checks on parsed values


def check_tree(obj: Any, depth_limit: bool, surrogates: bool) -> str | None:
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


def jsonable(value: Any) -> Any:
    """Parquet cells may be dates, decimals or bytes; meta must survive canonical JSON."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
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


def guarded(items: Iterator[T]) -> Iterator[T]:
    """Run the generator up to its first item now, so source-level errors raise at the call."""
    first = next(items, None)

    def rest() -> Iterator[T]:
        if first is not None:
            yield first
            yield from items

    return rest()
