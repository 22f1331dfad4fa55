"""The graph curation steps and the knowledge-graph recipe, through the real curate run."""

from __future__ import annotations

from pathlib import Path

import pyoxigraph as ox
import pytest

from ciyuan.curate.steps.graph import canonical_iri, canonical_literal

XSD = "http://www.w3.org/2001/XMLSchema#"

DATA = """@prefix ex: <http://ex.org/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
ex:pump1 a ex:Pump ; rdfs:label "一号泵" ; ex:rated "+015"^^xsd:integer ; ex:feeds <HTTP://EX.ORG:80/%7Etank> ;
    ex:contact "call 13812345678 or mail li.wei@example.com" .
ex:pump2 a ex:Pump ; ex:rated 15 .
"""
DUP = '<http://ex.org/pump1> <http://ex.org/rated> "15"^^<http://www.w3.org/2001/XMLSchema#integer> .\n'
SHAPES = """@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix ex: <http://ex.org/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:PumpShape a sh:NodeShape ; sh:targetClass ex:Pump ; sh:property [ sh:path rdfs:label ; sh:minCount 1 ] .
"""


@pytest.mark.parametrize(("given", "want"), [
    ("HTTP://Ex.ORG:80/a%7eb%2fc?q#F", "http://ex.org/a~b%2Fc?q#F"),
    ("https://ex.org", "https://ex.org/"),
    ("https://ex.org:8443/A/", "https://ex.org:8443/A/"),
    ("URN:isbn:0451450523", "urn:isbn:0451450523"),
    ("http://user@EX.org:443/x", "http://user@ex.org:443/x"),
])
def test_canonical_iri_only_normalises_what_keeps_the_resource(given, want):
    assert canonical_iri(given) == want


@pytest.mark.parametrize(("value", "dt", "want"), [
    ("+015", "integer", "15"), ("-0", "integer", "0"), ("01.50", "decimal", "1.5"), ("-0.0", "decimal", "0.0"),
    ("5", "decimal", "5.0"), ("1", "boolean", "true"), ("x1", "integer", "x1"), ("1e3", "double", "1e3"),
])
def test_canonical_literal(value, dt, want):
    assert canonical_literal(ox.Literal(value, datatype=ox.NamedNode(XSD + dt))).value == want


def _ingest(tmp: Path, *files: tuple[str, str]):
    from ciyuan.ingest.run import ingest
    from ciyuan.store import resolve

    paths = []
    for name, text in files:
        (tmp / name).write_text(text, encoding="utf-8")
        paths.append(str(tmp / name))
    ingest(paths, "kg")
    return resolve("kg")


def test_knowledge_graph_recipe_without_shapes_notes_the_skip(home, tmp_path):
    from ciyuan.curate.curate import curate
    from ciyuan.store import resolve

    parent = _ingest(tmp_path, ("a.ttl", DATA + DUP.replace("<http://ex.org/pump1>", "ex:pump1")))
    out = curate(parent.ref, "knowledge-graph", workers=1)
    steps = {s["step"]: s for s in out["steps"]}
    assert steps["shacl_filter"]["extra"]["skipped"] == "no shapes attached to the input version"
    assert steps["graph_dedup"]["counters"] == {"duplicate_triples": 1}
    assert steps["graph_pii"]["counters"].get("phone") == 1 and steps["graph_pii"]["counters"].get("email") == 1
    v = resolve(f"kg@{out['version']}")
    recs = {r["meta"]["subject"]: r for r in v.iter_records()}
    text = recs["<http://ex.org/pump1>"]["text"]
    assert "<http://ex.org/~tank>" in text and '"15"^^' in text and "+015" not in text
    assert text.count('<http://ex.org/rated> "15"') == 1 and recs["<http://ex.org/pump1>"]["meta"]["triples"] == 5
    assert "13812345678" not in text and "li.wei@example.com" not in text and "一号泵" in text
    assert out["rejected"] == 0
    from ciyuan.tokens import get_schedule

    r = recs["<http://ex.org/pump1>"]
    assert r["tokens"]["ntriples"] == get_schedule("ntriples").count_records([{"id": "x", "text": text}])[0]


def test_shacl_filter_rejects_the_violating_subject_with_its_shape(home, tmp_path):
    from ciyuan.curate.curate import curate
    from ciyuan.knowledge import shapes
    from ciyuan.store import resolve

    parent = _ingest(tmp_path, ("a.ttl", DATA))
    (tmp_path / "shapes.ttl").write_text(SHAPES)
    shapes.attach(parent, shapes=str(tmp_path / "shapes.ttl"))
    out = curate(parent.ref, "knowledge-graph", workers=1)
    assert out["rejected"] == 1
    v = resolve(f"kg@{out['version']}")
    (rej,) = list(v.iter_records(partition="rejected"))
    assert rej["meta"]["subject"] == "<http://ex.org/pump2>"
    assert rej["meta"]["curation"]["rejected_code"] == "shacl_filter.shacl_violation"
    assert "http://ex.org/PumpShape" in str(rej)
    assert shapes.attached(v)[0].id == parent.id  # the child sees its parent's shapes
    assert shapes.validate(v)["conforms"]


def test_steps_leave_text_records_alone(home):
    from ciyuan.curate.pipeline import run_steps
    from ciyuan.curate.steps import make_step

    steps = [make_step(n) for n in ("graph_canonical", "graph_dedup", "graph_pii")]
    recs = run_steps([{"id": "t", "modality": "text", "text": "a\na\n", "meta": {}}], steps)
    assert recs[0]["text"] == "a\na\n" and all(s.stats.not_applicable["text"] == 1 for s in steps)
