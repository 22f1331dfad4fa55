"""JSON Lines (``.jsonl``, ``.ndjson``, ``.json``; ``.gz``/``.zst`` too): one JSON object per line.

Whitespace-only lines are not items (editors and ``cat`` add them) and are skipped, but they still
count toward line numbers so that ``line`` always points at the physical line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from ciyuan.ingest.readers import Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import MAX_DEPTH, Meter, check_tree, lines, to_record


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


class JsonlReader:
    """Each line is one record; a line that is not one is one quarantined item."""

    name = "jsonl"
    suffixes = (".jsonl", ".ndjson", ".json")
    modality = "text"

    def detect(self, path: str, head_bytes: bytes) -> bool:
        return False  # by suffix only: a JSON-looking head may still be one multi-line document

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        for lineno, raw, problem in lines(path, options.max_line_bytes, meter):
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
            if (deep or lone) and (why := check_tree(obj, deep, lone)):
                yield Bad(path, lineno, why, raw)
                continue
            rec = to_record(obj, options.text_field, options.id_field)
            if isinstance(rec, str):
                yield Bad(path, lineno, rec, raw)
            else:
                yield Good(path, lineno, rec)


register(JsonlReader())
