"""Export of a graph version: sorted N-Triples, ontology and shapes beside it, a Croissant card of all three."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from clihelp import cli

from ciyuan.knowledge import export as kexport
from ciyuan.knowledge import shapes

EXE = Path(sys.executable).with_name("mlcroissant")
DATA = """@prefix ex: <http://ex.org/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:b a ex:Pump ; rdfs:label "二号泵"@zh ; ex:rated 2 .
ex:a a ex:Pump ; ex:rated 1 ; ex:feeds ex:b .
"""
SHAPES = """@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix ex: <http://ex.org/> .
ex:S a sh:NodeShape ; sh:targetClass ex:Pump ; sh:property [ sh:path ex:rated ; sh:minCount 1 ] .
"""
ONTO = "@prefix ex: <http://ex.org/> .\n@prefix owl: <http://www.w3.org/2002/07/owl#> .\nex:Pump a owl:Class .\n"


def _graph(home, tmp_path):
    from ciyuan.ingest.run import ingest
    from ciyuan.store import resolve

    for name, text in (("d.ttl", DATA), ("s.ttl", SHAPES), ("o.ttl", ONTO)):
        (tmp_path / name).write_text(text, encoding="utf-8")
    ingest([str(tmp_path / "d.ttl")], "pumps")
    v = resolve("pumps")
    shapes.attach(v, ontology=str(tmp_path / "o.ttl"), shapes=str(tmp_path / "s.ttl"))
    return v


def test_export_writes_sorted_lines_and_a_card_mlcroissant_validates_and_loads(home, tmp_path):
    import mlcroissant as mlc

    v = _graph(home, tmp_path)
    shapes.validate(v)
    out = cli("export", "pumps", "--format", "ntriples", "--out", str(tmp_path / "x"))
    folder = tmp_path / "x"
    assert sorted(p.name for p in folder.iterdir()) == ["croissant.json", "graph.nt", "ontology.nt", "shapes.nt"]
    raw = (folder / "graph.nt").read_bytes()
    lines = raw.splitlines(keepends=True)
    assert lines == sorted(lines) and len(lines) == 6 == out["files"]["graph"]["lines"]
    assert sorted(raw.decode().splitlines()) == sorted(
        line for r in v.iter_records() for line in r["text"].splitlines())
    res = subprocess.run([str(EXE), "validate", "--jsonld", str(folder / "croissant.json")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    ds = mlc.Dataset(str(folder / "croissant.json"))
    got = [r["graph-statements/statement"].decode() for r in ds.records("graph-statements")]
    assert got == raw.decode().splitlines()
    onto = [r["ontology-statements/statement"].decode() for r in ds.records("ontology-statements")]
    assert onto == (folder / "ontology.nt").read_text().splitlines()
    assert len(list(ds.records("shapes-statements"))) == out["files"]["shapes"]["lines"]
    card = json.loads((folder / "croissant.json").read_text())
    assert card["ciyuan:validation"]["conforms"] is True
    assert {d["@id"]: d["sha256"] for d in card["distribution"]} == {k: f["sha256"] for k, f in out["files"].items()}


def test_export_sorts_past_memory_and_names_nquads(home, tmp_path):
    from ciyuan.ingest.run import ingest
    from ciyuan.store import resolve

    quads = "".join(f'<http://ex.org/s{i % 13}> <http://ex.org/p> "{i}" <http://ex.org/g{i % 2}> .\n'
                    for i in range(200))
    (tmp_path / "q.nq").write_text(quads)
    ingest([str(tmp_path / "q.nq")], "q")
    files = kexport.write_graph(resolve("q"), tmp_path / "out", max_in_memory=17)
    assert files["graph"]["file"] == "graph.nq" and files["graph"]["lines"] == 200
    data = (tmp_path / "out" / "graph.nq").read_bytes()
    assert data.splitlines() == sorted(quads.encode().splitlines())
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith("ciyuan-nt-")]
