"""Ontologies and shapes attached to a graph version, SHACL validation, quality indicators."""

from __future__ import annotations

from pathlib import Path

import pytest
from clihelp import cli

from ciyuan.errors import InvalidInput, NotFound
from ciyuan.knowledge import quality, shapes

DATA = """@prefix ex: <http://ex.org/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
@prefix xsd: <http://www.w3.org/2001/XMLSchema#> .
ex:pump1 a ex:Pump ; rdfs:label "一号泵"@zh ; ex:rated 15 ; ex:installed "2024-02-30"^^xsd:date ; ex:feeds ex:tank9 .
ex:pump2 a ex:Pump ; ex:rated "fast"^^xsd:integer ; ex:feeds ex:pump1 .
ex:pump3 a ex:Pump ; rdfs:label "pump three" ; ex:rated 7 ; ex:part [ ex:material "nitrile" ] ;
    ex:installed "2025-06-01"^^xsd:date .
"""
SHAPES = """@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix ex: <http://ex.org/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:PumpShape a sh:NodeShape ; sh:targetClass ex:Pump ; sh:property [ sh:path rdfs:label ; sh:minCount 1 ] .
ex:DeviceShape a sh:NodeShape ; sh:targetClass ex:Device ; sh:property [ sh:path ex:rated ; sh:minCount 1 ] .
"""
ONTOLOGY = """@prefix ex: <http://ex.org/> .
@prefix owl: <http://www.w3.org/2002/07/owl#> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:Pump a owl:Class ; rdfs:subClassOf ex:Device .
ex:Device a owl:Class .
ex:tank9 a ex:Device .
"""


@pytest.fixture
def pumps(home, tmp_path: Path):
    from ciyuan.ingest.run import ingest
    from ciyuan.store import resolve

    for name, text in (("data.ttl", DATA), ("shapes.ttl", SHAPES), ("onto.ttl", ONTOLOGY)):
        (tmp_path / name).write_text(text, encoding="utf-8")
    ingest([str(tmp_path / "data.ttl")], "pumps")
    return resolve("pumps"), tmp_path


def test_validate_needs_shapes_and_names_the_command(pumps):
    v, _ = pumps
    with pytest.raises(NotFound, match="no SHACL shapes") as exc:
        shapes.validate(v)
    assert "ciyuan graph attach" in exc.value.hint


def test_a_broken_shapes_file_is_refused_with_its_line(pumps):
    v, tmp = pumps
    (tmp / "bad.ttl").write_text("@prefix sh: <http://www.w3.org/ns/shacl#> .\nsh:x sh:y .\n")
    with pytest.raises(InvalidInput, match=r"bad.ttl line 2 column \d+"):
        shapes.attach(v, shapes=str(tmp / "bad.ttl"))


def test_inference_changes_what_the_shapes_see(pumps):
    v, tmp = pumps
    shapes.attach(v, ontology=str(tmp / "onto.ttl"), shapes=str(tmp / "shapes.ttl"))
    plain = shapes.validate(v, "none")
    assert plain["subjects"] == 4 and plain["failing"].keys() == {"<http://ex.org/pump2>"}
    assert plain["conformance_rate"] == 0.75 and not plain["conforms"]
    assert list(plain["violations_by_shape"]) == ["http://ex.org/PumpShape / http://www.w3.org/2000/01/rdf-schema#label"]
    inferred = shapes.validate(v, "rdfs")  # pumps become devices; the ontology's tank9 is not data
    assert inferred["failing"].keys() == {"<http://ex.org/pump2>"}
    assert inferred["results"] == plain["results"]
    stored = shapes.stored_validation(v)
    assert stored["inference"] == "rdfs"


def test_quality_indicators_and_their_gbt_36344_mapping(pumps):
    v, tmp = pumps
    shapes.attach(v, ontology=str(tmp / "onto.ttl"), shapes=str(tmp / "shapes.ttl"))
    shapes.validate(v)
    q = quality.version_quality(v)
    ind = q["indicators"]
    assert ind["literals_checked"] == 5 and ind["literals_invalid"] == 2
    assert ind["invalid_by_datatype"] == {"http://www.w3.org/2001/XMLSchema#date": 1,
                                          "http://www.w3.org/2001/XMLSchema#integer": 1}
    assert ind["dangling_iris"] == 0  # ex:tank9 is an ontology term; ex:pump1 is described
    assert ind["label_coverage"]["http://ex.org/Pump"] == {"instances": 3, "labelled": 2, "coverage": 0.666667}
    assert ind["blank_nodes"] == 1 and ind["newest_date"] == "2025-06-01"
    g = q["gbt_36344"]
    assert list(g) == ["规范性", "完整性", "准确性", "一致性", "时效性", "可访问性"]
    assert g["规范性"]["score"] == 0.75 and g["准确性"]["score"] == 0.6 and g["时效性"]["score"] is None


def test_quality_counts_duplicates_across_files_and_dangling_without_ontology(home, tmp_path):
    from ciyuan.ingest.run import ingest
    from ciyuan.store import resolve

    line = "<http://ex.org/a> <http://ex.org/p> <http://ex.org/b> .\n"
    (tmp_path / "x.nt").write_text(line * 2)
    (tmp_path / "y.nt").write_text(line)
    ingest([str(tmp_path / "x.nt"), str(tmp_path / "y.nt")], "dup")
    ind = quality.version_quality(resolve("dup"))["indicators"]
    assert (ind["triples"], ind["duplicate_triples"], ind["dangling_iris"]) == (3, 2, 1)
    assert ind["dangling_examples"] == ["<http://ex.org/b>"]


def test_cli_attach_validate_quality_json(pumps):
    _, tmp = pumps
    assert cli("graph", "attach", "pumps", "--shapes", str(tmp / "shapes.ttl"))["shapes"]["triples"] > 0
    out = cli("graph", "validate", "pumps", "--inference", "owlrl")
    assert out["inference"] == "owlrl" and out["subjects"] == 4
    assert cli("graph", "validate", "pumps", "--inference", "magic", code=2)["error"]["code"] == "invalid_input"
    out = cli("graph", "quality", "pumps")
    assert out["gbt_36344"]["规范性"]["score"] == out["indicators"]["shacl"]["conformance_rate"]
