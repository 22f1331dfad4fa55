"""One bad item never stops an ingest (issue 10, defect 5), driven through ``ciyuan ingest --json``.

Each case: the bad item is quarantined with a reason a person can act on, and every good record
before and after it is kept.
"""

from __future__ import annotations

import gzip
import json
import os
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clihelp import cli
from typer.testing import CliRunner

from ciyuan.config import settings
from ciyuan.store.manifest import reason_kind

runner = CliRunner()


def quarantine(ref: str) -> list[dict]:
    return cli("show", ref, "--quarantine", "--limit", "100000")["items"]


def exported(tmp_path: Path, dataset: str) -> list[dict]:
    out = tmp_path / f"{dataset}.export.jsonl"
    cli("export", dataset, "--format", "jsonl", "--out", str(out))

    def strict(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return [json.loads(line, parse_constant=strict) for line in out.read_text(encoding="utf-8").splitlines()]


def jsonl(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_deeply_nested_json_is_quarantined(home: Path, tmp_path: Path) -> None:
    deep = '{"text": "deep", "m": ' + "[" * 100_000 + "]" * 100_000 + "}"  # was a RecursionError
    src = jsonl(tmp_path / "deep.jsonl", ['{"text": "before"}', deep, '{"text": "after"}'])
    out = cli("ingest", src, "--dataset", "deep")
    assert (out["records"], out["quarantined"]) == (2, 1)
    (bad,) = quarantine("deep")
    assert bad["line"] == 2 and reason_kind(bad["reason"]) == "nested too deeply"
    assert [r["text"] for r in exported(tmp_path, "deep")] == ["before", "after"]


def test_lone_surrogates_are_quarantined(home: Path, tmp_path: Path) -> None:
    src = jsonl(tmp_path / "sur.jsonl", [
        '{"text": "before"}',
        '{"text": "lone \\ud800 high"}',  # was a UnicodeEncodeError when the shard was written
        '{"text": "fine", "note": "lone \\udfff low"}',
        '{"text": "fine", "\\ud83d": "in a key"}',
        '{"text": "a real pair \\ud83d\\ude00 is kept"}',
        '{"text": "after"}',
    ])
    out = cli("ingest", src, "--dataset", "sur")
    assert (out["records"], out["quarantined"]) == (3, 3)
    bad = quarantine("sur")
    assert [b["line"] for b in bad] == [2, 3, 4]
    assert all(reason_kind(b["reason"]) == "unpaired surrogate" for b in bad)
    assert "\\ud800" in bad[0]["reason"] and "'text'" in bad[0]["reason"]
    assert "'note'" in bad[1]["reason"]
    assert [r["text"] for r in exported(tmp_path, "sur")] == ["before", "a real pair 😀 is kept", "after"]


def test_a_number_past_float_range_is_quarantined_not_made_infinity(home: Path, tmp_path: Path) -> None:
    """The rule: a JSON number that does not fit a 64-bit float is refused (quarantined with a hint to
    quote it); before, ``1e400`` became Infinity in meta and was streamed as invalid JSON."""
    src = jsonl(tmp_path / "big.jsonl", [
        '{"text": "huge", "v": 1e400}',
        '{"text": "negative", "v": -1e400}',
        '{"text": "largest float", "v": 1.7976931348623157e308}',
        '{"text": "tiny underflows to zero", "v": 1e-400}',
        '{"text": "as text", "v": "1e400"}',
        '{"text": "a long integer is exact", "v": 100000000000000000000000000000000000000000}',
    ])
    out = cli("ingest", src, "--dataset", "big")
    assert (out["records"], out["quarantined"]) == (4, 2)
    bad = quarantine("big")
    assert [b["line"] for b in bad] == [1, 2]
    assert all(reason_kind(b["reason"]) == "number out of range" for b in bad)
    assert "1e400" in bad[0]["reason"] and "string" in bad[0]["reason"]
    rows = exported(tmp_path, "big")  # parsed strictly: Infinity would fail here
    assert [r["meta"]["v"] for r in rows] == [1.7976931348623157e308, 0.0, "1e400", 10**41]


def test_folder_with_dangling_and_looping_symlinks(home: Path, tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("first file", encoding="utf-8")
    os.symlink("missing.txt", root / "b_dangling.txt")  # was FileNotFoundError
    os.symlink("c_loop2.txt", root / "c_loop1.txt")  # was OSError: too many levels of symbolic links
    os.symlink("c_loop1.txt", root / "c_loop2.txt")
    os.symlink("..", root / "sub" / "up")  # a link to a folder: not followed, so no walk loop
    (root / "sub" / "d.txt").write_text("last file", encoding="utf-8")
    out = cli("ingest", str(root), "--dataset", "links")
    assert (out["records"], out["quarantined"]) == (2, 3)
    bad = {Path(b["source"]).name: b["reason"] for b in quarantine("links")}
    assert set(bad) == {"b_dangling.txt", "c_loop1.txt", "c_loop2.txt"}
    assert all(reason_kind(r) == "unreadable file" for r in bad.values())
    assert "dangling" in bad["b_dangling.txt"] and "a loop" in bad["c_loop1.txt"]
    assert sorted(r["text"] for r in exported(tmp_path, "links")) == ["first file", "last file"]


def test_truncated_gzip_keeps_every_complete_line_and_names_the_offset(home: Path, tmp_path: Path) -> None:
    lines = [json.dumps({"text": f"line {i} " + "x" * (i % 97)}) for i in range(6000)]
    packed = gzip.compress("".join(line + "\n" for line in lines).encode())
    cut = packed[: len(packed) * 2 // 3]
    src = tmp_path / "cut.jsonl.gz"
    src.write_bytes(cut)
    readable = zlib.decompressobj(31).decompress(cut)  # all that can be decoded from the cut file
    complete = readable.count(b"\n")
    assert 0 < complete < len(lines)
    out = cli("ingest", str(src), "--dataset", "cut")
    assert (out["records"], out["quarantined"]) == (complete, 1)  # before: up to 64 KiB of lines fewer
    (bad,) = quarantine("cut")
    assert bad["line"] == complete + 1
    assert "truncated" in bad["reason"] and f"ends at byte {len(cut)}" in bad["reason"]
    assert [r["text"] for r in exported(tmp_path, "cut")] == [json.loads(x)["text"] for x in lines[:complete]]


def _parquet_with_a_corrupt_row_group(path: Path) -> tuple[int, int]:
    """Three row groups of 1000 rows; the middle one's pages are damaged. Returns its byte offset and size."""
    table = pa.table({"text": [f"row {i} " + "y" * (i % 40) for i in range(3000)], "k": list(range(3000))})
    pq.write_table(table, path, row_group_size=1000, compression="zstd")
    group = pq.ParquetFile(path).metadata.row_group(1)
    col = group.column(0)
    start = col.dictionary_page_offset or col.data_page_offset
    data = bytearray(path.read_bytes())
    for j in range(start + 30, start + col.total_compressed_size - 10):
        data[j] ^= 0x5A
    path.write_bytes(bytes(data))
    return start, col.total_compressed_size


def test_a_corrupt_parquet_row_group_loses_only_that_group(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "rg.parquet"
    at, _ = _parquet_with_a_corrupt_row_group(src)
    out = cli("ingest", str(src), "--dataset", "rg")
    assert (out["records"], out["quarantined"]) == (2000, 1)  # before: the rows after the damage were lost
    (bad,) = quarantine("rg")
    assert bad["line"] == 1001 and reason_kind(bad["reason"]) == "unreadable Parquet row group"
    assert "rows 1001-2000" in bad["reason"] and f"offset {at}" in bad["reason"]
    rows = exported(tmp_path, "rg")
    assert [r["meta"]["k"] for r in rows] == list(range(1000)) + list(range(2000, 3000))


@pytest.fixture
def small_limits(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CIYUAN_INGEST_MAX_RECORD_BYTES", "4096")
    monkeypatch.setenv("CIYUAN_INGEST_QUARANTINE_CAP", "5")
    settings.cache_clear()
    return home


def test_runaway_csv_quote_is_cut_at_the_record_limit_and_reading_resumes(small_limits: Path, tmp_path: Path) -> None:
    src = tmp_path / "runaway.csv"
    rows = [f"{i},maintenance log {i}" for i in range(1, 2001)]
    src.write_text("id,text\n0,before\n-1,\"this quote never closes\n" + "\n".join(rows) + "\n", encoding="utf-8")
    out = cli("ingest", str(src), "--dataset", "runaway", "--id-field", "id")
    # before: the open quote swallowed every following row into one 40 kB field of one record
    assert (out["records"], out["quarantined"]) == (2001, 1)
    (bad,) = quarantine("runaway")
    assert bad["line"] == 3 and reason_kind(bad["reason"]) == "record too large"
    assert "4096 bytes" in bad["reason"]
    assert [r["id"] for r in exported(tmp_path, "runaway")] == ["0"] + [str(i) for i in range(1, 2001)]


def test_csv_quote_left_open_at_the_end_of_the_file(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "open.csv"
    src.write_text('id,text\n1,before\n2,"opened here\n3,after one\n4,after two\n', encoding="utf-8")
    out = cli("ingest", str(src), "--dataset", "open", "--id-field", "id")
    assert (out["records"], out["quarantined"]) == (3, 1)  # before: rows 3 and 4 became part of row 2's text
    (bad,) = quarantine("open")
    assert bad["line"] == 3 and reason_kind(bad["reason"]) == "unclosed quote"
    assert [r["text"] for r in exported(tmp_path, "open")] == ["before", "after one", "after two"]


def test_quarantine_is_capped_per_file_and_counts_the_rest(small_limits: Path, tmp_path: Path) -> None:
    many = jsonl(tmp_path / "many.jsonl", ['{"text": "good 1"}'] + ["{broken"] * 12 + ['{"x": 1}'] * 8
                 + ['{"text": "good 2"}'])
    few = jsonl(tmp_path / "few.jsonl", ["{broken", '{"text": "good 3"}'])
    out = cli("ingest", many, few, "--dataset", "capped")
    assert out["records"] == 3
    assert out["quarantined"] == 21  # every bad item is counted ...
    assert out["quarantined_by_reason"] == {"malformed JSON": 13, "missing text field": 8}
    items = quarantine("capped")
    listed = [b for b in items if b["source"].endswith("many.jsonl")]
    assert [b["line"] for b in listed] == [2, 3, 4, 5, 6, 7]  # ... but only 5 listed, then one summary row
    summary = listed[-1]["reason"]
    assert summary.startswith("quarantine cap reached: 15 more bad item(s) from line 7 on")
    assert "malformed JSON: 7" in summary and "missing text field: 8" in summary
    assert [b["line"] for b in items if b["source"].endswith("few.jsonl")] == [1]


def test_a_reader_failing_on_one_file_costs_only_the_rest_of_that_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unit test of the last line of defence in ``ingest``: the readers are made to fail here on purpose
    (no known input does any more), after one good record of the first file."""
    import ciyuan.ingest.run as ing
    from ciyuan.ingest.readers import Good

    first = jsonl(tmp_path / "first.jsonl", ['{"text": "kept"}', '{"text": "never reached"}'])
    second = jsonl(tmp_path / "second.jsonl", ['{"text": "second file"}'])
    real = ing.read_source

    def failing(path: str, **kw):  # type: ignore[no-untyped-def]
        if path != first:
            yield from real(path, **kw)
            return
        yield Good(path, 1, {"id": None, "text": "kept", "meta": {}})
        raise ValueError("a reader bug")

    monkeypatch.setattr(ing, "read_source", failing)
    out = ing.ingest([first, second], "defence")
    assert (out["records"], out["quarantined"]) == (2, 1)
    (bad,) = quarantine("defence")
    assert bad["line"] == 2 and bad["reason"].startswith("reader failed: ValueError: a reader bug")
