"""Selections: a safe JSON filter language over record fields and ``meta``, and a per-listing index.

A filter is a small JSON tree, validated into :class:`Node` objects before anything runs::

    {"and": [{"field": "meta.language", "op": "eq", "value": "zh"},
             {"field": "meta.score", "op": "ge", "value": 0.8},
             {"not": {"field": "meta.domain", "op": "in", "value": ["ads", "spam"]}}]}

Fields are ``modality``, ``tokens`` and ``meta.<key>`` (nested keys joined by dots, so the probed
media facts are fields too: ``meta.image.width``, ``meta.audio.duration_s``, ``meta.video.fps``;
a quote then counts the matching records under the listing's media schedule). Nothing
becomes SQL: filters turn into ``pyarrow.compute`` expressions over the listing's selection index,
a Parquet table made at publish time with one row per record in version order (the row number is
the record's ordinal), its token count under the listing's schedule, and typed meta columns.
Evaluating a filter over 1,000,000 rows is a few vectorised passes, well under the quote budget.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ciyuan.canonical import canonical_json
from ciyuan.errors import InvalidInput

OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "exists", "contains")
ORDERED = ("lt", "le", "gt", "ge")
MAX_NODES = 200
MAX_DEPTH = 12
MAX_IN = 1000
MAX_META_COLUMNS = 64
META = "m:"  # prefix of meta columns in the index


@dataclass(frozen=True)
class Node:
    kind: str  # and | or | not | cmp
    children: tuple[Node, ...] = ()
    field: str = ""
    op: str = ""
    value: Any = None

    def to_dict(self) -> dict:
        if self.kind in ("and", "or"):
            return {self.kind: [c.to_dict() for c in self.children]}
        if self.kind == "not":
            return {"not": self.children[0].to_dict()}
        out = {"field": self.field, "op": self.op}
        if self.op != "exists":
            out["value"] = self.value
        return out


def _scalar_ok(v: Any) -> bool:
    """A filter value: null, a boolean, a string or a finite number (NaN and infinities compare nothing)."""
    return v is None or isinstance(v, bool | int | float | str) and not (isinstance(v, float) and not math.isfinite(v))


def parse_filter(obj: Any) -> Node | None:
    """Validate a JSON filter into a :class:`Node` tree, or raise InvalidInput naming the bad part."""
    if obj is None:
        return None
    count = [0]

    def bad(path: str, why: str) -> InvalidInput:
        return InvalidInput(
            f"filter at {path}: {why}",
            hint=f'e.g. {{"and": [{{"field": "meta.language", "op": "eq", "value": "zh"}}]}}; ops: {", ".join(OPS)}',
            code="bad_filter",
        )

    def walk(o: Any, path: str, depth: int) -> Node:
        count[0] += 1
        if count[0] > MAX_NODES:
            raise bad(path, f"more than {MAX_NODES} nodes")
        if depth > MAX_DEPTH:
            raise bad(path, f"nested deeper than {MAX_DEPTH}")
        if not isinstance(o, dict):
            raise bad(path, f"expected an object, got {type(o).__name__}")
        keys = set(o)
        if keys in ({"and"}, {"or"}):
            (k,) = keys
            items = o[k]
            if not isinstance(items, list) or not items:
                raise bad(path, f"'{k}' needs a non-empty list")
            return Node(k, tuple(walk(c, f"{path}.{k}[{i}]", depth + 1) for i, c in enumerate(items)))
        if keys == {"not"}:
            return Node("not", (walk(o["not"], f"{path}.not", depth + 1),))
        if "field" not in o or "op" not in o or keys - {"field", "op", "value"}:
            raise bad(path, "a condition has exactly 'field', 'op' and (except for exists) 'value'")
        field, op = o["field"], o["op"]
        if not isinstance(field, str) or not (
            field in ("modality", "tokens") or (field.startswith("meta.") and 5 < len(field) <= 205)
        ):
            raise bad(path, f"field {field!r} is not modality, tokens or meta.<key>")
        if op not in OPS:
            raise bad(path, f"op {op!r} is unknown")
        value = o.get("value")
        if op == "exists":
            if "value" in o and not isinstance(value, bool):
                raise bad(path, "exists takes no value (or true/false)")
            return Node("cmp", field=field, op=op, value=True if value is None else value)
        if "value" not in o:
            raise bad(path, f"op {op} needs a value")
        if op in ("in", "not_in"):
            if (
                not isinstance(value, list)
                or not value
                or len(value) > MAX_IN
                or not all(_scalar_ok(v) and v is not None for v in value)
            ):
                raise bad(path, f"{op} needs a list of 1 to {MAX_IN} strings or numbers")
            if len({type(v) is str for v in value}) > 1:
                raise bad(path, f"{op} values must be all strings or all numbers")
            return Node("cmp", field=field, op=op, value=tuple(value))
        if not _scalar_ok(value) or value is None:
            raise bad(path, "value must be a string, number or boolean")
        if op in ORDERED and isinstance(value, bool | str) and not isinstance(value, str):
            raise bad(path, f"{op} compares numbers or strings, not booleans")
        if op == "contains" and not isinstance(value, str):
            raise bad(path, "contains needs a string value")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
            raise bad(path, "numbers must be within ±2^53")
        return Node("cmp", field=field, op=op, value=value)

    return walk(obj, "$", 0)


@dataclass(frozen=True)
class Selection:
    """What a buyer asks for: all records passing ``filter`` (all when None), then a token budget."""

    filter: Node | None = None
    token_budget: int | None = None

    @classmethod
    def parse(cls, obj: Any) -> Selection:
        if obj is None:
            return cls()
        if not isinstance(obj, dict) or set(obj) - {"filter", "token_budget"}:
            raise InvalidInput(
                "selection must be an object with optional 'filter' and 'token_budget'",
                hint='e.g. {"filter": {...}, "token_budget": 1000000}',
                code="bad_selection",
            )
        budget = obj.get("token_budget")
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or not 0 < budget <= 10**15):
            raise InvalidInput(
                f"token_budget {budget!r} must be a whole number from 1 to 10^15",
                hint="omit it to take every matching record",
                code="bad_selection",
            )
        return cls(parse_filter(obj.get("filter")), budget)

    def to_dict(self) -> dict:
        return {"filter": self.filter.to_dict() if self.filter else None, "token_budget": self.token_budget}

    def canonical(self) -> str:
        return canonical_json(self.to_dict())


# -- the index --------------------------------------------------------------------------------------


def _flatten(meta: dict, prefix: str = "", depth: int = 0) -> dict[str, Any]:
    """Dotted keys to three levels. A map of named objects (``meta.episode.cameras``: camera name ->
    its facts) is also the list of its names, so ``{"field": "meta.episode.cameras", "op": "eq",
    "value": "observation.images.top"}`` asks which records have that camera."""
    out: dict[str, Any] = {}
    for k, v in meta.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth < 2:
            if v and all(isinstance(x, dict) for x in v.values()):
                out[key] = sorted(map(str, v))
            out.update(_flatten(v, key + ".", depth + 1))
        else:
            out[key] = v
    return out


def _strings(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _typed(values: list[Any]) -> pa.Array | None:
    """One Arrow column for a meta key, or None when its values have no single scalar type."""
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return None
    if kinds == {list}:  # lists of names (tasks, cameras): a list<string> column, any element matches
        if all(v is None or _strings(v) for v in values):
            return pa.array(values, pa.list_(pa.string()))
        return None
    if kinds == {bool}:
        return pa.array(values, pa.bool_())
    if kinds == {int} and all(v is None or abs(v) < 2**63 for v in values):
        return pa.array(values, pa.int64())
    if kinds <= {int, float}:
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    if kinds == {str}:
        return pa.array(values, pa.string()).dictionary_encode()
    return None


def build_index(tokens: list[pa.Array], batches: Any, version_id: str, schedule: str) -> pa.Table:
    """The selection index of a version: ``tokens``, ``modality`` and typed ``m:<key>`` meta columns.

    ``tokens`` are the per-record counts in version order; ``batches`` yield ``modality`` and
    ``meta`` (JSON text) in the same order.
    """
    tok = pa.concat_arrays([a.cast(pa.int64()) for a in tokens]) if tokens else pa.array([], pa.int64())
    modality: list[Any] = []
    metas: dict[str, list[Any]] = {}
    n = 0
    for batch in batches:
        mods = batch.column("modality").to_pylist() if "modality" in batch.schema.names else [None] * batch.num_rows
        raw = batch.column("meta").to_pylist() if "meta" in batch.schema.names else [None] * batch.num_rows
        for mod, text in zip(mods, raw, strict=True):
            modality.append(mod)
            try:
                meta = json.loads(text) if text else {}
            except ValueError:
                meta = {}
            if isinstance(meta, dict):
                for k, v in _flatten(meta).items():
                    col = metas.get(k)
                    if col is None:
                        if len(metas) >= MAX_META_COLUMNS * 4:
                            continue
                        col = metas[k] = [None] * n
                    col.append(v)
            n += 1
            for col in metas.values():
                if len(col) < n:
                    col.append(None)
    if n != len(tok):
        raise InvalidInput(
            f"version {version_id} has {n} records but {len(tok)} token counts", hint="recount tokens for this version"
        )
    cols = {"tokens": tok, "modality": pa.array(modality, pa.string()).dictionary_encode()}
    for key in sorted(metas, key=lambda k: (-sum(v is not None for v in metas[k]), k)):
        if len(cols) - 2 >= MAX_META_COLUMNS:
            break
        arr = _typed(metas[key])
        if arr is not None:
            cols[META + key] = arr
    table = pa.table(cols)
    return table.replace_schema_metadata({"version_id": version_id, "schedule": schedule})


def write_index(table: pa.Table, url: str) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")


_cache: OrderedDict[str, pa.Table] = OrderedDict()
_cache_lock = threading.Lock()
CACHE_SIZE = 16


def load_index(url: str) -> pa.Table:
    """The index at ``url``, kept in memory (LRU) since listings never change once published."""
    with _cache_lock:
        if url in _cache:
            _cache.move_to_end(url)
            return _cache[url]
    fs, path = fsspec.core.url_to_fs(url)
    with fs.open(path, "rb") as fh:
        table = pq.read_table(fh)
    table = table.combine_chunks()
    with _cache_lock:
        _cache[url] = table
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return table


def fields(index: pa.Table) -> dict[str, str]:
    """Filterable fields of an index and their types (shown on the listing card)."""
    out = {}
    for name in index.column_names:
        t = index.schema.field(name).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        kind = (
            "strings"
            if pa.types.is_list(t)
            else "string"
            if pa.types.is_string(t)
            else "boolean"
            if pa.types.is_boolean(t)
            else "integer"
            if pa.types.is_integer(t)
            else "number"
        )
        out[("meta." + name[len(META) :]) if name.startswith(META) else name] = kind
    return out


def _column(index: pa.Table, field: str) -> tuple[pa.ChunkedArray | None, str | None]:
    name = META + field[5:] if field.startswith("meta.") else field
    if name not in index.column_names:
        return None, None
    return index.column(name), fields(index)[field]


def _expr_mask(index: pa.Table, node: Node) -> pa.ChunkedArray | pa.Array:
    n = index.num_rows
    if node.kind == "and":
        out = _expr_mask(index, node.children[0])
        for c in node.children[1:]:
            out = pc.and_(out, _expr_mask(index, c))
        return out
    if node.kind == "or":
        out = _expr_mask(index, node.children[0])
        for c in node.children[1:]:
            out = pc.or_(out, _expr_mask(index, c))
        return out
    if node.kind == "not":
        return pc.invert(_expr_mask(index, node.children[0]))
    col, kind = _column(index, node.field)
    if col is None:
        if node.op == "exists":
            return pa.array(np.full(n, not node.value))
        if node.field in ("modality", "tokens"):
            raise InvalidInput(f"field {node.field} is missing from the index", hint="republish the listing")
        # a field no record has is almost always a typo: name it and the fields there are, rather
        # than quietly selecting nothing (or, for ne / not_in, everything); `exists` may still ask
        import difflib

        known = sorted(fields(index))
        close = difflib.get_close_matches(node.field, known, n=3)
        raise InvalidInput(
            f"filter field {node.field!r} is not a field of this listing",
            hint=(f"did you mean {', '.join(close)}? " if close else "")
            + f"filterable fields: {', '.join(known[:30])}" + (" ..." if len(known) > 30 else ""),
            code="unknown_field",
        )
    if node.op == "exists":
        valid = pc.is_valid(col)
        return valid if node.value else pc.invert(valid)
    if kind == "strings":
        return _list_mask(col, node, n)
    v = node.value
    values = v if isinstance(v, tuple) else (v,)
    numeric = kind in ("integer", "number")
    for x in values:
        ok = (
            (isinstance(x, str) and kind == "string")
            or (isinstance(x, bool) and kind == "boolean")
            or (numeric and isinstance(x, int | float) and not isinstance(x, bool))
        )
        if not ok:
            raise InvalidInput(
                f"filter compares {node.field} ({kind}) with {x!r}",
                hint=f"give a {kind} value for {node.field}",
                code="bad_filter",
            )
    if node.op == "contains":
        if kind != "string":
            raise InvalidInput(
                f"contains needs a string field; {node.field} is {kind}", hint="use eq or in", code="bad_filter"
            )
        return pc.fill_null(pc.match_substring(col, v), False)
    if node.op in ("in", "not_in"):
        hit = pc.is_in(col, value_set=pa.array(list(values)))
        return pc.invert(hit) if node.op == "not_in" else hit
    fn = {
        "eq": pc.equal,
        "ne": pc.not_equal,
        "lt": pc.less,
        "le": pc.less_equal,
        "gt": pc.greater,
        "ge": pc.greater_equal,
    }[node.op]
    res = fn(col, pa.scalar(v))
    # null (key absent) never matches a comparison, except that "ne" treats it as different
    return pc.fill_null(res, node.op == "ne")


def _list_mask(col: pa.ChunkedArray, node: Node, n: int) -> pa.Array:
    """A condition on a list of names: ``eq``/``in``/``contains`` hold when any element matches,
    ``ne``/``not_in`` when none does (a record without the list matches ne, as for scalars)."""
    values = node.value if isinstance(node.value, tuple) else (node.value,)
    if node.op in ORDERED or not all(isinstance(x, str) for x in values):
        raise InvalidInput(
            f"{node.field} is a list of names: it takes eq, ne, in, not_in or contains with strings",
            hint=f'e.g. {{"field": "{node.field}", "op": "contains", "value": "pick"}}',
            code="bad_filter",
        )
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    flat = pc.list_flatten(arr)
    parents = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    if node.op == "contains":
        hit = pc.match_substring(flat, node.value)
    elif node.op in ("eq", "ne"):
        hit = pc.equal(flat, pa.scalar(node.value))
    else:
        hit = pc.is_in(flat, value_set=pa.array(list(values)))
    hit = pc.fill_null(hit, False).to_numpy(zero_copy_only=False).astype(bool)
    anyhit = np.bincount(parents[hit], minlength=n)[:n] > 0
    return pa.array(~anyhit if node.op in ("ne", "not_in") else anyhit)


@dataclass(frozen=True)
class SelectionResult:
    records: int
    tokens: int
    selection_id: str
    mask: np.ndarray  # one bool per record in version order

    def ordinals(self) -> np.ndarray:
        return np.flatnonzero(self.mask)


def evaluate(index: pa.Table, selection: Selection) -> SelectionResult:
    """Which records a selection covers, their exact token total, and a stable id of that set."""
    n = index.num_rows
    tok = index.column("tokens").to_numpy()
    if selection.filter is None:
        mask = np.ones(n, dtype=bool)
    else:
        m = _expr_mask(index, selection.filter)
        if isinstance(m, pa.ChunkedArray):
            m = m.combine_chunks() if m.num_chunks != 1 else m.chunk(0)
        mask = m.to_numpy(zero_copy_only=False).astype(bool, copy=False)
    if selection.token_budget is not None:
        running = np.cumsum(np.where(mask, tok, 0))
        mask = mask & (running <= selection.token_budget)
    total = int(tok[mask].sum()) if n else 0
    meta = index.schema.metadata or {}
    h = hashlib.sha256()
    h.update(meta.get(b"version_id", b"") + b"\0" + meta.get(b"schedule", b"") + b"\0")
    h.update(n.to_bytes(8, "big"))
    h.update(np.packbits(mask).tobytes())
    return SelectionResult(int(mask.sum()), total, h.hexdigest(), mask)


def facets(index: pa.Table, field: str, limit: int = 20) -> dict[str, int]:
    """Counts of the most common values of a string field (for cards and catalog search)."""
    col, kind = _column(index, field)
    if col is None or kind != "string":
        return {}
    counts = pc.value_counts(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    pairs = [(d["values"], d["counts"]) for d in counts.to_pylist() if d["values"] is not None]
    pairs.sort(key=lambda p: (-p[1], str(p[0])))
    return dict(pairs[:limit])


def numeric_stats(index: pa.Table) -> dict[str, dict[str, float]]:
    out = {}
    for f, kind in fields(index).items():
        if kind in ("integer", "number") and f.startswith("meta."):
            col = _column(index, f)[0]
            mm = pc.min_max(col).as_py()
            out[f] = {"min": mm["min"], "max": mm["max"]}
    return out
