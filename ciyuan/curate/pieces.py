"""Pieces of source shards: runs of Parquet row groups, so that every worker gets a part of a big shard.

Why: a version's shards hold up to 100,000 records, so a corpus of a few hundred megabytes is one
shard, and one shard was one shard job: the other workers of a curation sat idle through every
stage. A piece is a run of consecutive row groups of one shard; cut in order and read back in
order, the pieces give the records in the same order as the whole shards, so every decision that
follows the record order (the first of a duplicate group is kept) is the same.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq


@dataclass(frozen=True)
class Piece:
    """Row groups ``start`` to ``stop - 1`` of the Parquet file ``path``."""

    path: str
    start: int
    stop: int

    def to_dict(self) -> dict:
        return {"path": self.path, "start": self.start, "stop": self.stop}


Input = str | Piece  # a whole file (an intermediate shard) or a piece of a source shard


def _metadata(path: str) -> pq.FileMetaData:
    with open(path, "rb") as fh:
        return pq.ParquetFile(fh).metadata


def cut(sources: list[str], jobs: int) -> list[Input]:
    """The sources cut into about ``jobs`` pieces of similar row-group counts, in order.

    ``jobs`` <= 1, or no more jobs than sources, leaves every source whole.
    """
    if jobs <= 1 or jobs <= len(sources):
        return list(sources)
    groups = [_metadata(p).num_row_groups for p in sources]
    per = max(1, math.ceil(sum(groups) / jobs))
    out: list[Input] = []
    for path, n in zip(sources, groups, strict=True):
        if n <= per:
            out.append(path)
            continue
        out.extend(Piece(path, lo, min(lo + per, n)) for lo in range(0, n, per))
    return out


def path_and_groups(inp: Input) -> tuple[str, list[int] | None]:
    """The file to open and the row groups to read (None: all)."""
    if isinstance(inp, Piece):
        return inp.path, list(range(inp.start, inp.stop))
    return inp, None


def rows(inp: Input) -> int:
    """Records in a file or piece, from the Parquet footer."""
    path, groups = path_and_groups(inp)
    meta = _metadata(path)
    if groups is None:
        return meta.num_rows
    return sum(meta.row_group(i).num_rows for i in groups)


STAGED_PREFIX = "input-"  # children of a work folder the caller staged before the run (not cut by piece)


def keep_layout(work: Path, inputs: list[Input]) -> None:
    """Start ``work`` afresh when it was made for another cut of the sources (a resume with another
    worker count): its shard files are numbered by piece, so they would not fit. What the caller
    staged there before the run (names starting with :data:`STAGED_PREFIX`, such as a graph
    version's attached shapes) is an input of the run, not a product of the cut, and stays."""
    layout = json.dumps([i.to_dict() if isinstance(i, Piece) else i for i in inputs])
    marker = work / "layout.json"
    same = marker.exists() and marker.read_text(encoding="utf-8") == layout
    if not same and work.exists():  # no marker: made by code that did not cut, or nothing yet
        for child in work.iterdir():
            if child.name.startswith(STAGED_PREFIX):
                continue
            if child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text(layout, encoding="utf-8")
