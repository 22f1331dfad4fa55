"""RDF parsing, canonical form and graph records (ciyuan/knowledge/rdf.py) and their ingest."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import rdflib
from rdflib.compare import isomorphic

from ciyuan.knowledge import rdf

EX = "http://ex.org/"

GOOD = {
    "ttl": f"""@prefix ex: <{EX}> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:pump1 a ex:Pump ; rdfs:label "一号泵"@zh , "pump one"@en ; ex:rated 15 ;
    ex:part [ a ex:Seal ; ex:material "nitrile" ] .
ex:pump2 a ex:Pump ; ex:feeds ex:pump1 .
""",
    "nt": f"""<{EX}pump1> <http://www.w3.org/1999/02/22-rdf-syntax-ns#type> <{EX}Pump> .
<{EX}pump1> <{EX}rated> "15"^^<http://www.w3.org/2001/XMLSchema#integer> .
# a comment line
_:s <{EX}material> "nitrile" .
<{EX}pump1> <{EX}part> _:s .
""",
    "nq": f"""<{EX}pump1> <{EX}rated> "15" <{EX}g1> .
<{EX}pump1> <{EX}rated> "16" .
<{EX}pump2> <{EX}feeds> <{EX}pump1> <{EX}g1> .
""",
    "trig": f"""@prefix ex: <{EX}> .
ex:g1 {{ ex:pump1 ex:rated 15 . ex:pump2 ex:feeds ex:pump1 . }}
ex:pump3 ex:rated 3 .
""",
    "rdf": f"""<?xml version="1.0"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns:ex="{EX}">
  <rdf:Description rdf:about="{EX}pump1"><ex:rated>15</ex:rated></rdf:Description>
  <rdf:Description rdf:about="{EX}pump2"><ex:feeds rdf:resource="{EX}pump1"/></rdf:Description>
</rdf:RDF>
""",
    "jsonld": f"""{{"@context": {{"ex": "{EX}"}},
 "@graph": [{{"@id": "ex:pump1", "ex:rated": 15}}, {{"@id": "ex:pump2", "ex:feeds": {{"@id": "ex:pump1"}}}}]}}
""",
}

# Each malformed file: (suffix, text, line of the error, column of the error, statements read before it)
BAD = {
    "ttl": (f"@prefix ex: <{EX}> .\nex:a ex:p 1 .\nex:b ex:p .\nex:c ex:p 3 .\n", 3, 11),
    "nt": (f"<{EX}a> <{EX}p> \"1\" .\n<{EX}b> <{EX}p> \"2 .\n<{EX}c> <{EX}p> <{EX}d> .\n", 2, None),
    "nq": (f"<{EX}a> <{EX}p> \"1\" <{EX}g> .\n<{EX}b> <{EX}p> .\n<{EX}c> <{EX}p> <{EX}d> <{EX}g> .\n", 2, None),
    "trig": (f"@prefix ex: <{EX}> .\nex:g {{ ex:a ex:p 1 .\n ex:b ex:p ex:c ; ; ]\n}}\nex:d ex:p 2 .\n", 3, 21),
    "rdf": (f'<?xml version="1.0"?>\n<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
            f'xmlns:ex="{EX}">\n<rdf:Description rdf:about="{EX}a"><ex:p>1</ex:p></rdf:Description>\n'
            f'<rdf:Description rdf:about="{EX}b"><ex:p>2</ex:q></rdf:Description>\n</rdf:RDF>\n', 4, 53),
    "jsonld": (f'[{{"@id": "{EX}a", "{EX}p": 1}},\n {{"@id": "{EX}b", "{EX}p": 2,,}}]\n', 2, 50),
}


def _write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return str(p)


def _graphs(ds: rdflib.Dataset) -> dict[str, rdflib.Graph]:
    """The non-empty graphs of ``ds`` by name (rdflib compares graphs, not datasets)."""
    return {str(g.identifier): g for g in ds.graphs() if len(g)}


def _rdflib_format(suffix: str) -> str:
    return {"ttl": "turtle", "nt": "nt", "nq": "nquads", "trig": "trig", "rdf": "xml", "jsonld": "json-ld"}[suffix]


@pytest.mark.parametrize("suffix", sorted(GOOD))
def test_records_rebuild_the_same_graph_as_rdflib_reads(tmp_path, suffix):
    path = _write(tmp_path, f"g.{suffix}", GOOD[suffix])
    errors, records = rdf.file_records(path)
    records = list(records)
    assert errors == []
    assert all(r["modality"] == "graph" and r["text"].endswith(" .\n") for r in records)
    ours = rdflib.Dataset()
    ours.parse(data="".join(r["text"] for r in records), format="nquads")
    theirs = rdflib.Dataset()
    theirs.parse(path, format=_rdflib_format(suffix))
    assert _graphs(ours).keys() == _graphs(theirs).keys()
    for name, g in _graphs(ours).items():
        assert isomorphic(g, _graphs(theirs)[name]) and len(g) == len(_graphs(theirs)[name])
    for r in records:  # one subject (of one graph) per record, lines sorted, counted
        lines = r["text"].splitlines()
        assert lines == sorted(lines) and len(lines) == r["meta"]["triples"]
        assert all(line.startswith(r["meta"]["subject"] + " ") for line in lines)
        if r["meta"]["graph"]:
            assert all(line.endswith(f"<{r['meta']['graph']}> .") for line in lines)


def test_canonical_form_lowercases_language_tags_and_drops_xsd_string(tmp_path):
    path = _write(tmp_path, "g.ttl", f'<{EX}a> <{EX}p> "x"@EN-gb , "y"^^<http://www.w3.org/2001/XMLSchema#string> .\n')
    _, recs = rdf.file_records(path)
    assert list(recs)[0]["text"] == f'<{EX}a> <{EX}p> "x"@en-gb .\n<{EX}a> <{EX}p> "y" .\n'


def test_blank_nodes_get_the_same_labels_every_run(tmp_path):
    path = _write(tmp_path, "g.ttl", GOOD["ttl"])
    first = [r["text"] for r in rdf.file_records(path)[1]]
    second = [r["text"] for r in rdf.file_records(path)[1]]
    assert first == second
    assert any("_:b" in t for t in first)


def test_spilled_runs_group_exactly_like_memory(tmp_path):
    lines = [f"<{EX}s{i % 37}> <{EX}p{i % 5}> \"{i}\" .\n" for i in range(1000)]
    lines += lines[:10]  # duplicates stay (the duplicate indicator counts them)
    path = _write(tmp_path, "big.nt", "".join(lines))
    in_memory = list(rdf.file_records(path)[1])
    spilled = list(rdf.file_records(path, max_in_memory=7)[1])
    assert spilled == in_memory
    assert len(in_memory) == 37 and sum(r["meta"]["triples"] for r in in_memory) == 1010
    first = {r["meta"]["subject"]: r["meta"]["line"] for r in in_memory}
    assert first[f"<{EX}s3>"] == 4


@pytest.mark.parametrize("suffix", sorted(BAD))
def test_malformed_input_names_file_line_and_column(tmp_path, suffix):
    text, line, column = BAD[suffix]
    path = _write(tmp_path, f"bad.{suffix}", text)
    errors, records = rdf.file_records(path)
    records = list(records)
    assert len(errors) == 1, errors
    err = errors[0]
    assert err.line == line, err
    assert err.column > 0 and (column is None or err.column == column)
    assert f"bad.{suffix} line {line} column {err.column}" in err.reason
    subjects = {r["meta"]["subject"] for r in records}
    assert f"<{EX}a>" in subjects  # what was read before the error is kept
    if suffix in ("nt", "nq"):  # line formats go on after the bad line
        assert not err.fatal and f"<{EX}c>" in subjects and f"<{EX}b>" not in subjects
        assert err.raw == text.splitlines()[line - 1].encode()
    else:
        assert err.fatal and "cannot be read past this point" in err.reason
        assert f"{err.statements} statement(s) read before it" in err.reason


def test_json_ld_error_inside_one_top_level_object_loses_that_object_only_and_says_so(tmp_path):
    """pyoxigraph holds a top-level JSON-LD object's statements until the object closes."""
    text = f'{{"@context": {{"ex": "{EX}"}},\n "@graph": [{{"@id": "ex:a", "ex:p": 1}},\n {{"@id": "ex:b",,}}]}}\n'
    errors, records = rdf.file_records(_write(tmp_path, "bad.jsonld", text))
    assert list(records) == []
    (err,) = errors
    assert (err.line, err.column, err.statements) == (3, 17, 0)
    assert "0 statement(s) read before it" in err.reason


@pytest.mark.parametrize("suffix", sorted(BAD))
def test_ingest_quarantines_each_format_s_bad_statement(home, tmp_path, suffix):
    from ciyuan.ingest.run import ingest
    from ciyuan.store import resolve

    text, line, _ = BAD[suffix]
    path = _write(tmp_path, f"bad.{suffix}", text)
    out = ingest([path], "kg")
    v = resolve("kg")
    assert out["quarantined"] == 1 and v.manifest["tokenizers"].keys() == {"ntriples"}
    (q,) = list(v.iter_records(partition="quarantine"))
    assert q["meta"]["line"] == line if "line" in q.get("meta", {}) else True
    reason = str(q.get("reason") or q["meta"].get("reason"))
    assert f"bad.{suffix} line {line} column" in reason, q
    recs = list(v.iter_records())
    assert all(r["modality"] == "graph" and r["meta"]["source"] == f"bad.{suffix}" for r in recs)
    assert all(r["tokens"]["ntriples"] > 0 for r in recs)


def test_ingest_reads_gzip_and_gives_the_same_version_twice(home, tmp_path):
    from ciyuan.ingest.run import ingest

    p = tmp_path / "g.nt.gz"
    p.write_bytes(gzip.compress(GOOD["nt"].encode()))
    a = ingest([str(p)], "kg")
    b = ingest([str(p)], "kg")
    assert a["version"] == b["version"] and a["records"] == 2 and a["quarantined"] == 0


def test_ntriples_schedule_counts_the_canonical_text():
    from ciyuan.tokens import get_schedule
    from ciyuan.tokens.schedule import default_schedule
    from ciyuan.tokens.tokenizers import get_tokenizer

    s = default_schedule("graph")
    assert s.name == "ntriples" and s.modality == "graph" and len(s.version) == 16
    text = f'<{EX}a> <{EX}p> "风机" .\n'
    assert get_schedule("ntriples").count_records([{"id": "r", "text": text}]) == [
        get_tokenizer("cl100k_base").count_batch([text])[0]]
