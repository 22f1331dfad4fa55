"""Readers must stream every input item out as Good or Bad, with the right line and a clear reason.

Over 500 lines because it is the spec of every bad-input case of all four built-in formats (one
section per format, shared helpers on top); a new format's tests belong in a file of their own.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import zlib
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ciyuan.errors import InvalidInput, NotFound
from ciyuan.ingest.readers import RAW_KEEP, Bad, Good, detect_format, read_source
from ciyuan.store.manifest import reason_kind


def _write(path: Path, lines: list[bytes]) -> str:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def _j(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _summary(items: list[Good | Bad]) -> list[tuple[str, int]]:
    return [("good" if isinstance(i, Good) else "bad", i.line) for i in items]


# ----------------------------------------------------------------------------------------------
# detect_format


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("a.jsonl", "jsonl"),
        ("a.JSONL.GZ", "jsonl"),
        ("a.jsonl.zst", "jsonl"),
        ("a.json.gz", "jsonl"),
        ("a.ndjson", "jsonl"),
        ("a.parquet", "parquet"),
        ("a.csv", "csv"),
        ("a.csv.gz", "csv"),
        ("a.tsv", "csv"),
        ("a.txt", "text"),
        ("a.md", "text"),
    ],
)
def test_detect_format_by_extension(tmp_path: Path, name: str, fmt: str) -> None:
    assert detect_format(str(tmp_path / name)) == fmt


def test_detect_format_folder_and_unknown(tmp_path: Path) -> None:
    assert detect_format(str(tmp_path)) == "text"
    with pytest.raises(InvalidInput, match="a.xyz"):
        detect_format(str(tmp_path / "a.xyz"))


def test_missing_path_and_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        read_source(str(tmp_path / "nope.jsonl"))
    p = _write(tmp_path / "a.jsonl", [_j({"text": "x"})])
    with pytest.raises(InvalidInput, match="xml"):
        read_source(p, fmt="xml")


# ----------------------------------------------------------------------------------------------
# JSONL: every bad kind, with goods around it kept in order


BAD_LINES: list[tuple[bytes, str]] = [
    (b'{"text": "unterminated', "malformed JSON"),
    (b'{"text": "a",}', "column"),
    (b"[1, 2, 3]", "not an object"),
    (b'"just a string"', "not an object"),
    (b'{"text": "caf\xc3\xa9 \xff\xfe broken"}', "invalid UTF-8 at byte offset 16"),
    (b'{"body": "no text here"}', "missing text field 'text'"),
    (b'{"text": ""}', "is empty"),
    (b'{"text": "   \\n\\t "}', "only whitespace"),
    (b'{"text": 42}', "is a number, not a string"),
    (b'{"text": null}', "is null, not a string"),
    (b'{"text": ["a"]}', "is an array, not a string"),
    (b'{"text": NaN}', "NaN"),
    (b'{"text": "x", "m": ' + b"[" * 65 + b"]" * 65 + b"}", "JSON nested too deeply: more than 64 levels"),
    (b'{"text": "x", "m": ' + b"{\"a\": " * 70 + b"1" + b"}" * 70 + b"}", "nested too deeply"),
    (b'{"text": "x", "m": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
    (b'{"text": "lone \\ud800"}', "unpaired surrogate \\ud800 in field 'text' at character 5"),
    (b'{"text": "x", "a": {"b": ["\\uDBFF"]}}', "in field 'a.b.0'"),
    (b'{"text": "x", "v": 1e400}', "number out of range: 1e400"),
    (b'{"text": "x", "v": [-2.5E+999]}', "number out of range: -2.5E+999"),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_LINES)
def test_each_bad_kind_is_reported_between_goods(tmp_path: Path, raw: bytes, reason: str) -> None:
    p = _write(tmp_path / "a.jsonl", [_j({"text": "first"}), raw, _j({"text": "third"})])
    items = list(read_source(p))
    assert _summary(items) == [("good", 1), ("bad", 2), ("good", 3)]
    bad = items[1]
    assert isinstance(bad, Bad)
    assert reason in bad.reason
    assert bad.raw == raw
    assert bad.source == p
    assert [i.record["text"] for i in items if isinstance(i, Good)] == ["first", "third"]


def test_malformed_json_reason_has_position(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.jsonl", [b'{"text": "ok", "n": 1 2}'])
    (bad,) = read_source(p)
    assert isinstance(bad, Bad)
    assert "column 23" in bad.reason and "char 22" in bad.reason


def test_record_shape_id_and_meta_merge(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "a.jsonl",
        [
            _j({"id": 7, "text": "hello", "lang": "en", "meta": {"site": "A", "lang": "zh"}}),
            _j({"text": "no id", "tags": ["x"], "score": 1.5}),
            _j({"text": "meta not an object", "meta": "plain"}),
        ],
    )
    a, b, c = (i.record for i in read_source(p, id_field="id"))
    assert a == {"id": "7", "text": "hello", "meta": {"site": "A", "lang": "en"}}
    assert b == {"id": None, "text": "no id", "meta": {"tags": ["x"], "score": 1.5}}
    assert c["meta"] == {"meta": "plain"}
    # without id_field the id stays in meta
    first = next(read_source(p))
    assert first.record["id"] is None and first.record["meta"]["id"] == 7


def test_custom_and_nested_text_field(tmp_path: Path) -> None:
    p = _write(
        tmp_path / "a.jsonl",
        [
            _j({"doc": {"body": "nested text", "title": "T"}, "k": 1}),
            _j({"doc.body": "literal key wins"}),
            _j({"doc": {"title": "no body"}}),
        ],
    )
    a, b, c = read_source(p, text_field="doc.body")
    assert a.record == {"id": None, "text": "nested text", "meta": {"doc": {"title": "T"}, "k": 1}}
    assert b.record["text"] == "literal key wins"
    assert isinstance(c, Bad) and "missing text field 'doc.body'" in c.reason


def test_blank_lines_crlf_and_bom(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"text": "one"}\r\n\r\n   \n{"text": "two"}')  # no final newline
    items = list(read_source(str(p)))
    assert _summary(items) == [("good", 1), ("good", 4)]
    assert [i.record["text"] for i in items] == ["one", "two"]


def test_overlong_line_is_cut_and_reading_continues(tmp_path: Path) -> None:
    long_text = "x" * 5000
    p = _write(tmp_path / "a.jsonl", [_j({"text": "a"}), _j({"text": long_text}), _j({"text": "c"})])
    items = list(read_source(p, max_line_bytes=1000))
    assert _summary(items) == [("good", 1), ("bad", 2), ("good", 3)]
    bad = items[1]
    assert "line too long" in bad.reason and "limit is 1000" in bad.reason
    assert bad.raw.startswith(b'{"text": "xxx')


def test_overlong_line_across_many_chunks_keeps_only_prefix(tmp_path: Path) -> None:
    huge = b'{"text": "' + b"y" * (RAW_KEEP * 4) + b'"}'  # spans several 64 KiB read chunks
    p = _write(tmp_path / "a.jsonl", [huge, _j({"text": "after"}), huge])
    items = list(read_source(p, max_line_bytes=RAW_KEEP))
    assert _summary(items) == [("bad", 1), ("good", 2), ("bad", 3)]
    for bad in (items[0], items[2]):
        assert len(bad.raw) == RAW_KEEP
        assert f"only the first {RAW_KEEP} bytes" in bad.reason


# ----------------------------------------------------------------------------------------------
# compressed JSONL


def _jsonl_bytes(n: int) -> bytes:
    return b"".join(_j({"id": i, "text": f"record number {i} " * 3}) + b"\n" for i in range(n))


def test_gzip_and_zstd_read_like_plain(tmp_path: Path) -> None:
    data = _jsonl_bytes(3000)
    (tmp_path / "a.jsonl").write_bytes(data)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(data[:1000]) + gzip.compress(data[1000:]))
    cctx = zstandard.ZstdCompressor()
    (tmp_path / "a.jsonl.zst").write_bytes(cctx.compress(data))
    (tmp_path / "b.jsonl.zst").write_bytes(cctx.compress(data[:777]) + cctx.compress(data[777:]))
    expected = [i.record for i in read_source(str(tmp_path / "a.jsonl"), id_field="id")]
    assert len(expected) == 3000
    for name in ("a.jsonl.gz", "a.json.gz", "a.jsonl.zst", "b.jsonl.zst"):
        got = [i.record for i in read_source(str(tmp_path / name), id_field="id")]
        assert got == expected, name


def test_truncated_gzip_keeps_goods_and_reports_break(tmp_path: Path) -> None:
    data = _jsonl_bytes(5000)
    packed = gzip.compress(data)
    p = tmp_path / "cut.jsonl.gz"
    p.write_bytes(packed[: len(packed) // 2])
    items = list(read_source(str(p)))
    goods = [i for i in items if isinstance(i, Good)]
    assert isinstance(items[-1], Bad) and all(isinstance(i, Good) for i in items[:-1])
    assert 0 < len(goods) < 5000
    assert [g.line for g in goods] == list(range(1, len(goods) + 1))
    bad = items[-1]
    assert bad.line == len(goods) + 1
    assert "gzip stream truncated" in bad.reason and f"line {bad.line}" in bad.reason
    assert data.splitlines()[len(goods)].startswith(bad.raw)  # the partial line reached


def test_corrupt_gzip_is_reported(tmp_path: Path) -> None:
    packed = bytearray(gzip.compress(_jsonl_bytes(50)))
    packed[-8] ^= 0xFF  # break the CRC in the trailer
    p = tmp_path / "bad.jsonl.gz"
    p.write_bytes(bytes(packed))
    items = list(read_source(str(p)))
    assert isinstance(items[-1], Bad) and "gzip stream corrupt" in items[-1].reason


def test_truncated_and_corrupt_zstd(tmp_path: Path) -> None:
    data = _jsonl_bytes(5000)
    packed = zstandard.ZstdCompressor().compress(data)
    cut = tmp_path / "cut.jsonl.zst"
    cut.write_bytes(packed[: len(packed) // 2])
    items = list(read_source(str(cut)))
    goods = [i for i in items if isinstance(i, Good)]
    assert isinstance(items[-1], Bad) and "zstd stream truncated" in items[-1].reason
    assert items[-1].line == len(goods) + 1 and len(goods) < 5000
    broken = bytearray(packed)
    broken[20:60] = b"\x00" * 40
    bad = tmp_path / "bad.jsonl.zst"
    bad.write_bytes(bytes(broken))
    items = list(read_source(str(bad)))
    assert isinstance(items[-1], Bad) and "zstd" in items[-1].reason


# ----------------------------------------------------------------------------------------------
# Parquet


def test_parquet_rows_in_batches(tmp_path: Path) -> None:
    import datetime as dt

    n = 2500  # more than one read batch and several row groups
    table = pa.table(
        {
            "uid": list(range(n)),
            "body": [f"row {i}" if i % 1000 != 5 else "  " for i in range(n)],
            "when": [dt.date(2024, 1, 1)] * n,
        }
    )
    p = tmp_path / "a.parquet"
    pq.write_table(table, p, row_group_size=700)
    items = list(read_source(str(p), text_field="body", id_field="uid"))
    assert len(items) == n
    bads = [i for i in items if isinstance(i, Bad)]
    assert [b.line for b in bads] == [6, 1006, 2006]
    assert all("whitespace" in b.reason for b in bads)
    first = items[0]
    assert first.line == 1
    assert first.record == {"id": "0", "text": "row 0", "meta": {"when": "2024-01-01"}}


def test_parquet_without_text_column_raises(tmp_path: Path) -> None:
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"title": ["a"], "body": ["b"]}), p)
    with pytest.raises(InvalidInput) as err:
        read_source(str(p))
    assert "a.parquet" in err.value.message and "title, body" in err.value.message


def test_not_parquet_raises(tmp_path: Path) -> None:
    p = tmp_path / "a.parquet"
    p.write_bytes(b"definitely not parquet")
    with pytest.raises(InvalidInput, match="not a readable Parquet"):
        read_source(str(p))


# ----------------------------------------------------------------------------------------------
# CSV


def test_csv_rows_and_physical_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "site"])
        w.writerow(["1", "plain row", "A"])  # line 2
        w.writerow(["2", "two\nline\nrow", "B"])  # lines 3-5
        w.writerow(["3", "", "C"])  # line 6: empty text
        w.writerow(["4", "too", "many", "fields"])  # line 7
        w.writerow(["5", "last", "E"])  # line 8
    items = list(read_source(str(p), id_field="id"))
    assert _summary(items) == [("good", 2), ("good", 3), ("bad", 6), ("bad", 7), ("good", 8)]
    assert items[1].record == {"id": "2", "text": "two\nline\nrow", "meta": {"site": "B"}}
    assert "is empty" in items[2].reason
    assert "row has 4 fields, header has 3" in items[3].reason
    assert items[3].raw == b"4,too,many,fields"


def test_csv_invalid_utf8_and_overlong_lines(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_bytes(b"text,n\nok,1\nbad \xff byte,2\n" + b"z" * 500 + b",3\nfine,4\n")
    items = list(read_source(str(p), max_line_bytes=100))
    assert _summary(items) == [("good", 2), ("bad", 3), ("bad", 4), ("good", 5)]
    assert "invalid UTF-8 at byte offset 4" in items[1].reason
    assert "line too long" in items[2].reason


def test_csv_runaway_quote_is_cut_and_the_swallowed_rows_are_read_again(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text('text,n\nok,1\n"never closed,2\n' + "".join(f"row {i},{i}\n" for i in range(100)), encoding="utf-8")
    items = list(read_source(str(p), max_line_bytes=500))
    assert _summary(items) == [("good", 2), ("bad", 3)] + [("good", 4 + i) for i in range(100)]
    bad = items[1]
    assert bad.reason.startswith("CSV record too large: the record starting on line 3 passes the limit of 500")
    assert bad.raw.startswith(b'"never closed,2\nrow 0,0\n')
    assert [i.record["meta"]["n"] for i in items[2:]] == [str(i) for i in range(100)]


def test_csv_quote_open_at_end_of_file_is_quarantined_and_the_rest_read_again(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text('text,n\nok,1\n"opened,2\nafter,3\nlast,4\n', encoding="utf-8")
    items = list(read_source(str(p)))
    assert _summary(items) == [("good", 2), ("bad", 3), ("good", 4), ("good", 5)]
    assert items[1].reason.startswith("unclosed quote: the quoted field of the record starting on line 3")


def test_csv_legitimate_multiline_fields_are_untouched(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    body = "para one\n\npara \"two\", with a comma\n"
    with open(p, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "n"])
        for i in range(50):
            w.writerow([f"{i}: {body}", str(i)])
    items = list(read_source(str(p), max_line_bytes=200))
    assert all(isinstance(i, Good) for i in items) and len(items) == 50
    assert [i.line for i in items[:3]] == [2, 6, 10]
    assert items[7].record["text"] == f"7: {body}"


def test_csv_runaway_memory_is_bounded_by_the_record_limit(tmp_path: Path) -> None:
    """A quote opened once, then lines that are each bad on their own (not UTF-8, as in a Latin-1
    export): before, every one of them waited in memory until the open field closed or the file
    ended, 20 MB here. Now they count toward the record's limit, so the reader holds a few times
    the limit (64 KiB)."""
    import tracemalloc

    p = tmp_path / "latin1.csv"
    with p.open("wb") as f:
        f.write(b'text,n\nok,1\n"opened here,2\n')
        f.write((b"caf\xe9 " * 128 + b",3\n") * 20_000)
        f.write(b"fine,4\n")
    tracemalloc.start()
    try:
        kinds = Counter()
        for item in read_source(str(p), max_line_bytes=64 * 1024):
            kinds[reason_kind(item.reason) if isinstance(item, Bad) else "good"] += 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert kinds == {"good": 2, "record too large": 1, "invalid UTF-8": 20_000}
    assert peak < 4 * (1 << 20), peak


def test_csv_gz_and_tsv(tmp_path: Path) -> None:
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress("text,k\n甲,1\n乙,2\n".encode()))
    (tmp_path / "a.tsv").write_text("k\ttext\n1\thello, world\n", encoding="utf-8")
    assert [i.record["text"] for i in read_source(str(tmp_path / "a.csv.gz"))] == ["甲", "乙"]
    (row,) = read_source(str(tmp_path / "a.tsv"))
    assert row.record == {"id": None, "text": "hello, world", "meta": {"k": "1"}}


def test_csv_without_text_column_raises(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("title,body\na,b\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="title, body"):
        read_source(str(p))


# ----------------------------------------------------------------------------------------------
# folders of text


def test_text_folder_recursive_sorted(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "b" / "deep").mkdir(parents=True)
    (root / "z.txt").write_text("zeta", encoding="utf-8")
    (root / "a.md").write_text("# alpha\n\nbody", encoding="utf-8")
    (root / "b" / "deep" / "c.txt").write_text("风机巡检记录", encoding="utf-8")
    (root / "b" / "empty.txt").write_text("  \n", encoding="utf-8")
    (root / "b" / "broken.txt").write_bytes(b"ok \xc3 bad")
    (root / "b" / "skip.bin").write_bytes(b"\x00\x01")
    (root / ".hidden.txt").write_text("hidden", encoding="utf-8")
    items = list(read_source(str(root)))
    paths = [(i.record["meta"]["path"] if isinstance(i, Good) else Path(i.source).name) for i in items]
    assert paths == ["a.md", "broken.txt", "b/deep/c.txt", "empty.txt", "z.txt"]
    assert all(i.line == 0 for i in items)
    assert items[0].record == {"id": None, "text": "# alpha\n\nbody", "meta": {"path": "a.md"}}
    assert "invalid UTF-8 at byte offset 3" in items[1].reason
    assert items[2].record["text"] == "风机巡检记录"
    assert "only whitespace" in items[3].reason


def test_text_file_too_large(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_bytes(b"w" * 300)
    (bad,) = read_source(str(tmp_path), max_line_bytes=100)
    assert isinstance(bad, Bad) and "file too large: 300 bytes" in bad.reason


# ----------------------------------------------------------------------------------------------
# nothing is lost


_good_line = st.builds(
    lambda t, k: _j({"text": t, "k": k}),
    st.text(min_size=1, max_size=40).filter(lambda s: s.strip()),
    st.integers(),
)
_bad_line = st.sampled_from([raw for raw, _ in BAD_LINES]) | st.builds(
    lambda n: b'{"text": "' + b"q" * n + b'"}', st.integers(min_value=300, max_value=3000)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.tuples(st.booleans(), _good_line, _bad_line), max_size=60), zipped=st.booleans())
def test_goods_plus_bads_equal_lines(
    tmp_path: Path, lines: list[tuple[bool, bytes, bytes]], zipped: bool
) -> None:
    chosen = [good if is_good else bad for is_good, good, bad in lines]
    data = b"".join(line + b"\n" for line in chosen)
    p = tmp_path / ("h.jsonl.gz" if zipped else "h.jsonl")
    p.write_bytes(gzip.compress(data) if zipped else data)
    items = list(read_source(str(p), max_line_bytes=256))
    assert len(items) == len(chosen)
    assert [i.line for i in items] == list(range(1, len(chosen) + 1))
    assert [isinstance(i, Good) for i in items] == [is_good for is_good, _, _ in lines]
    for item, raw in zip(items, chosen, strict=True):
        if isinstance(item, Good):
            assert item.record["text"] == json.loads(raw)["text"]
        else:
            assert raw.startswith(item.raw) and item.reason


# ----------------------------------------------------------------------------------------------
# a broken compressed file keeps every line before the break, and names where it broke


def test_gzip_cut_anywhere_keeps_every_complete_line(tmp_path: Path) -> None:
    data = _jsonl_bytes(4000)
    packed = gzip.compress(data)
    p = tmp_path / "cut.jsonl.gz"
    for cut in (len(packed) // 7, len(packed) // 2, len(packed) - 9):
        p.write_bytes(packed[:cut])
        complete = zlib.decompressobj(31).decompress(packed[:cut]).count(b"\n")
        items = list(read_source(str(p)))
        assert [i.line for i in items if isinstance(i, Good)] == list(range(1, complete + 1)), cut
        bad = items[-1]
        assert isinstance(bad, Bad) and bad.line == complete + 1
        assert f"the file ends at byte {cut}" in bad.reason and "every line before it was kept" in bad.reason


def test_gzip_damaged_in_the_middle_names_the_byte_and_keeps_what_decodes(tmp_path: Path) -> None:
    data = _jsonl_bytes(4000)
    packed = bytearray(gzip.compress(data, compresslevel=1))
    hit = len(packed) // 2
    packed[hit : hit + 64] = b"\xff" * 64
    p = tmp_path / "bad.jsonl.gz"
    p.write_bytes(bytes(packed))
    items = list(read_source(str(p)))
    bad = items[-1]
    assert isinstance(bad, Bad) and "gzip stream corrupt at compressed byte" in bad.reason
    at = int(bad.reason.split("compressed byte ")[1].split()[0])
    assert hit <= at < len(packed)  # deflate notices damage where a code becomes impossible, maybe later
    before = zlib.decompressobj(31).decompress(bytes(packed[:at]))  # what decodes up to the named byte
    assert len(items) - 1 == before.count(b"\n")  # every line decoded before the break is an item
    assert [i.record["text"] for i in items[:100]] == [json.loads(x)["text"] for x in data.splitlines()[:100]]


def test_gzip_zero_padding_is_accepted_and_garbage_after_a_member_is_named(tmp_path: Path) -> None:
    data = _jsonl_bytes(50)
    (tmp_path / "pad.jsonl.gz").write_bytes(gzip.compress(data) + b"\0" * 700)
    assert len(list(read_source(str(tmp_path / "pad.jsonl.gz")))) == 50
    member = gzip.compress(data)
    (tmp_path / "junk.jsonl.gz").write_bytes(member + b"junk after the member")
    items = list(read_source(str(tmp_path / "junk.jsonl.gz")))
    assert sum(isinstance(i, Good) for i in items) == 50
    assert isinstance(items[-1], Bad) and "gzip stream corrupt at compressed byte" in items[-1].reason
    at = int(items[-1].reason.split("compressed byte ")[1].split()[0])
    assert len(member) <= at <= len(member) + 2  # zlib rejects the next header on its second byte


def test_gzip_bomb_stays_bounded(tmp_path: Path) -> None:
    import tracemalloc

    p = tmp_path / "bomb.jsonl.gz"
    p.write_bytes(gzip.compress(b"a" * (64 << 20)))  # 64 MiB of one line from ~64 KiB
    tracemalloc.start()
    try:
        (bad,) = read_source(str(p), max_line_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "line too long" in bad.reason
    assert peak < 4 << 20, peak


def test_zstd_bomb_stays_bounded(tmp_path: Path) -> None:
    """64 MiB of one byte packs into about 2 KB of zstd; fed 2 KiB at a time, it came out in one piece
    (127 MiB traced). The input per step now follows the ratio seen."""
    import tracemalloc

    p = tmp_path / "bomb.jsonl.zst"
    p.write_bytes(zstandard.ZstdCompressor().compress(b"a" * (64 << 20)))
    assert p.stat().st_size < 4096
    tracemalloc.start()
    try:
        (bad,) = read_source(str(p), max_line_bytes=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "line too long: at least 67108864 bytes" in bad.reason
    assert peak < 8 << 20, peak


# ----------------------------------------------------------------------------------------------
# Parquet: one damaged row group, or one cell that does not convert


def test_parquet_damaged_row_group_is_one_bad_item(tmp_path: Path) -> None:
    table = pa.table({"text": [f"row {i} " + "z" * (i % 30) for i in range(3000)], "k": list(range(3000))})
    p = tmp_path / "a.parquet"
    pq.write_table(table, p, row_group_size=1000, compression="zstd")
    col = pq.ParquetFile(p).metadata.row_group(2).column(0)
    start = col.dictionary_page_offset or col.data_page_offset
    data = bytearray(p.read_bytes())
    for j in range(start + 30, start + col.total_compressed_size - 10):
        data[j] ^= 0x33
    p.write_bytes(bytes(data))
    items = list(read_source(str(p)))
    assert _summary(items) == [("good", i) for i in range(1, 2001)] + [("bad", 2001)]
    assert items[-1].reason.startswith("Parquet row group 2 unreadable (rows 2001-3000, ")
    assert f"at file byte offset {start}" in items[-1].reason


def test_parquet_invalid_utf8_cell_is_one_bad_row(tmp_path: Path) -> None:
    offsets = pa.py_buffer(bytes([0, 0, 0, 0, 2, 0, 0, 0, 6, 0, 0, 0, 10, 0, 0, 0]))
    text = pa.Array.from_buffers(pa.string(), 3, [None, offsets, pa.py_buffer(b"okb\xff\xfe!last")])
    p = tmp_path / "u.parquet"
    pq.write_table(pa.table({"text": text, "k": [1, 2, 3]}), p)
    items = list(read_source(str(p)))
    assert _summary(items) == [("good", 1), ("bad", 2), ("good", 3)]
    assert items[1].reason.startswith("Parquet cell unreadable in column 'text'")
    assert items[2].record["text"] == "last"


# ----------------------------------------------------------------------------------------------
# folders: a file that cannot be opened is one bad item


def test_text_folder_bad_links_and_a_pipe_are_quarantined(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "a.txt").write_text("alpha", encoding="utf-8")
    os.symlink("gone.txt", root / "b.txt")
    os.symlink("c.txt", root / "c.txt")  # a link to itself
    os.mkfifo(root / "d.txt")  # opening it would wait for a writer forever
    os.symlink(str(root), root / "e_self")  # a folder link: not followed
    (root / "z.txt").write_text("zeta", encoding="utf-8")
    items = list(read_source(str(root)))
    assert [(type(i).__name__, Path(i.source).name) for i in items] == [
        ("Good", "a.txt"), ("Bad", "b.txt"), ("Bad", "c.txt"), ("Bad", "d.txt"), ("Good", "z.txt")
    ]
    assert "No such file or directory (a symbolic link to 'gone.txt': dangling)" in items[1].reason
    assert "(a symbolic link to 'c.txt': a loop)" in items[2].reason
    assert "not a regular file" in items[3].reason


# ----------------------------------------------------------------------------------------------
# progress: bytes heard add up to the size of what is read


def test_bytes_read_add_up_to_the_source_size(tmp_path: Path) -> None:
    from ciyuan.ingest.readers import source_size

    data = _jsonl_bytes(3000)
    (tmp_path / "a.jsonl").write_bytes(data)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    (tmp_path / "a.csv").write_text("text\n" + "".join(f"row {i}\n" for i in range(3000)), encoding="utf-8")
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "x.txt").write_text("x" * 1234, encoding="utf-8")
    (docs / "sub" / "y.md").write_text("y" * 99, encoding="utf-8")
    (docs / "skip.bin").write_bytes(b"\0" * 5000)
    for name in ("a.jsonl", "a.jsonl.gz", "a.jsonl.zst", "a.csv", "docs"):
        heard: list[int] = []
        list(read_source(str(tmp_path / name), on_bytes=heard.append))
        assert sum(heard) == source_size(str(tmp_path / name)), name
    assert source_size(str(docs)) == 1234 + 99
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": [f"r{i}" for i in range(5000)]}), p, row_group_size=1000)
    heard = []
    list(read_source(str(p), on_bytes=heard.append))
    assert len(heard) == 5 and 0 < sum(heard) <= source_size(str(p))  # per row group; the footer is not read as rows


def test_json_at_the_depth_limit_and_brackets_in_text_are_kept(tmp_path: Path) -> None:
    at_limit = b'{"text": "x", "m": ' + b"[" * 63 + b"]" * 63 + b"}"  # 64 levels with the record itself
    brackets = _j({"text": "[" * 500 + " not structure " + "{" * 500})
    pair = b'{"text": "smile \\ud83d\\ude00", "k\\u00e9": "caf\\u00e9"}'
    items = list(read_source(_write(tmp_path / "a.jsonl", [at_limit, brackets, pair])))
    assert all(isinstance(i, Good) for i in items), [getattr(i, "reason", "") for i in items]
    assert items[2].record == {"id": None, "text": "smile 😀", "meta": {"ké": "café"}}
