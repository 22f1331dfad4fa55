"""Ingest progress has a total (bytes of the input) and time left (issue 11, defect 10): was ``N/?``."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from rich.progress import DownloadColumn, TimeRemainingColumn

from ciyuan.cli.output import progress
from ciyuan.cli.store_cmds import ingest_ticker
from ciyuan.ingest.run import IngestProgress, ingest


def _sources(tmp_path: Path) -> tuple[list[str], int]:
    """A JSONL, a gzipped JSONL with a bad line, and a folder of text; their bytes on disk, counted here."""
    plain = tmp_path / "a.jsonl"
    plain.write_text("".join(json.dumps({"text": f"plain record {i} " * 4}) + "\n" for i in range(5000)),
                     encoding="utf-8")
    packed = tmp_path / "b.jsonl.gz"
    packed.write_bytes(gzip.compress(b'{"text": "zipped"}\n{broken\n' * 300))
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "x.txt").write_text("first text file", encoding="utf-8")
    (docs / "sub" / "y.md").write_text("# second\n\nbody", encoding="utf-8")
    (docs / "ignored.bin").write_bytes(b"\0" * 999)  # not read, so not in the total
    size = plain.stat().st_size + packed.stat().st_size + (docs / "x.txt").stat().st_size
    size += (docs / "sub" / "y.md").stat().st_size
    return [str(plain), str(packed), str(docs)], size


def test_ingest_reports_bytes_read_of_a_known_total(home: Path, tmp_path: Path) -> None:
    sources, size = _sources(tmp_path)
    seen: list[IngestProgress] = []
    out = ingest(sources, "progress", on_progress=seen.append)
    assert len(seen) >= 3
    assert {p.bytes_total for p in seen} == {size}  # the total is known from the first report on
    done = [p.bytes_read for p in seen]
    assert done == sorted(done) and any(0 < d < size for d in done)
    last = seen[-1]
    assert (last.bytes_read, last.records, last.quarantined) == (size, out["records"], out["quarantined"])
    assert (out["records"], out["quarantined"]) == (5000 + 300 + 2, 300)


def test_cli_bar_shows_bytes_of_the_total_and_time_left() -> None:
    bar = progress(enabled=False, unit="bytes")
    tick = ingest_ticker(bar)
    tick(IngestProgress(records=1200, quarantined=3, bytes_read=4096, bytes_total=10_000))
    (task,) = bar.tasks
    assert (task.total, task.completed) == (10_000, 4096)
    assert task.fields["extra"] == "1,200 records, 3 quarantined"
    assert any(isinstance(c, TimeRemainingColumn) for c in bar.columns)
    assert any(isinstance(c, DownloadColumn) for c in bar.columns)
