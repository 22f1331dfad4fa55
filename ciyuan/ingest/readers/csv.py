"""CSV and TSV with a header row (``.csv``, ``.tsv``; ``.gz``/``.zst`` too); one column holds the text."""

from __future__ import annotations

import csv
import os
from array import array
from collections import deque
from collections.abc import Iterator
from typing import Any

from ciyuan.errors import InvalidInput
from ciyuan.ingest.readers import Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import RAW_KEEP, Meter, guarded, lines, no_meter, strip_compression, to_record


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
    path: str, text_field: str, id_field: str | None, max_record_bytes: int, meter: Meter = no_meter
) -> Iterator[Good | Bad]:
    """CSV with a header row; a row spanning lines (quoted newlines) reports the line it started on.

    A record (all its lines, quoted newlines included) is at most ``max_record_bytes``; a quote that
    never closes would otherwise swallow the rest of the file into one field. Such a record is
    quarantined once, from the line that opened it, and parsing starts again on the next line, so
    the rows it swallowed are kept; memory stays within a few times the limit.
    """
    delimiter = "\t" if strip_compression(os.path.basename(path))[0].endswith(".tsv") else ","
    source = lines(path, max_record_bytes, meter)
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
            rec = to_record(dict(zip(header, row, strict=True)), text_field, id_field)
            if isinstance(rec, str):
                yield Bad(path, line, rec, span.raw())
            else:
                yield Good(path, line, rec)
    finally:
        csv.field_size_limit(old_limit)


def _flush(pending: list[Bad]) -> Iterator[Bad]:
    yield from pending
    pending.clear()


class CsvReader:
    """Rows of a delimited file (tab for ``.tsv``); the other columns become ``meta``."""

    name = "csv"
    suffixes = (".csv", ".tsv")
    modality = "text"

    def detect(self, path: str, head_bytes: bytes) -> bool:
        return False  # by suffix only: almost any text "looks like" CSV

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        return guarded(_read_csv(path, options.text_field, options.id_field, options.max_line_bytes, meter))


register(CsvReader())
