"""A graph version out as files: one sorted N-Triples file (line-diffable) and the attached
ontology and shapes beside it.

The lines are every record's lines, sorted as a whole (a byte-order sort of UTF-8, so ``sort -c``
and ``diff`` agree), with an external sort past ``max_in_memory`` lines; duplicates are kept (the
``graph_dedup`` step removes them inside a subject). A version with named graphs writes
``graph.nq`` (N-Quads) instead, since N-Triples cannot name a graph.
"""

from __future__ import annotations

import hashlib
import heapq
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ciyuan.errors import InvalidInput
from ciyuan.knowledge import shapes

MAX_IN_MEMORY = 500_000


def _runs(lines: Iterator[str], folder: str, limit: int) -> list[str]:
    runs: list[str] = []
    buf: list[bytes] = []
    for line in lines:
        buf.append(line.encode("utf-8"))
        if len(buf) >= limit:
            runs.append(_spill(buf, folder))
            buf = []
    if buf or not runs:
        runs.append(_spill(buf, folder))
    return runs


def _spill(buf: list[bytes], folder: str) -> str:
    buf.sort()
    fd, name = tempfile.mkstemp(prefix="nt-", dir=folder)
    with os.fdopen(fd, "wb") as f:
        f.writelines(buf)
    return name


def _lines(version: Any, named: list[bool]) -> Iterator[str]:
    for rec in version.iter_records(columns=["modality", "text", "meta"]):
        if rec.get("modality") != "graph":
            continue
        if (rec.get("meta") or {}).get("graph"):
            named[0] = True
        yield from (rec.get("text") or "").splitlines(keepends=True)


def write_graph(version: Any, out_dir: str | Path, *, max_in_memory: int = MAX_IN_MEMORY) -> dict:
    """Write ``graph.nt`` (or ``graph.nq``), ``ontology.nt`` and ``shapes.nt`` (when attached) into
    ``out_dir``; returns each file's name, sha256, bytes and line count."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    named = [False]
    files: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="ciyuan-nt-", dir=out) as tmp:
        runs = _runs(_lines(version, named), tmp, max(1, max_in_memory))
        name = "graph.nq" if named[0] else "graph.nt"
        h, size, n = hashlib.sha256(), 0, 0
        handles = [open(r, "rb") for r in runs]  # noqa: SIM115 - closed below
        try:
            with open(out / name, "wb") as f:
                for line in heapq.merge(*handles):
                    f.write(line)
                    h.update(line)
                    size += len(line)
                    n += 1
        finally:
            for fh in handles:
                fh.close()
    if n == 0:
        (out / name).unlink()
        raise InvalidInput(f"{version.ref} holds no graph records", hint="export it with --format jsonl or parquet")
    files["graph"] = {"file": name, "sha256": h.hexdigest(), "bytes": size, "lines": n,
                      "format": "nquads" if named[0] else "ntriples"}
    for kind in shapes.KINDS:
        text = shapes.attached_text(version, kind)
        if text is None:
            continue
        data = text.encode("utf-8")
        (out / f"{kind}.nt").write_bytes(data)
        files[kind] = {"file": f"{kind}.nt", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                       "lines": text.count("\n"), "format": "ntriples"}
    return files
