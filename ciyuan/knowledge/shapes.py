"""Ontologies and SHACL shapes attached to a graph version, and SHACL validation with pyshacl.

Versions are immutable and content addressed, so what is attached later sits beside the version,
not in its manifest: ``graph/ontology.nt`` and ``graph/shapes.nt`` (canonical, sorted N-Triples),
``graph/attached.json`` (where each came from, its sha256 and size) and, after ``validate``,
``graph/validation.json``. A curated child version sees its parent's attachments until it gets
its own (:func:`attached` walks up the lineage), so curation never loses them.

pyshacl works on an in-memory rdflib graph: validation holds the version's triples in RAM (about
1 KB per triple in rdflib); the quality indicators (``quality.py``) stream instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pyoxigraph as ox
import rdflib

from ciyuan.clock import utc_now
from ciyuan.errors import InvalidInput, NotFound
from ciyuan.knowledge import rdf

KINDS = ("ontology", "shapes")
INFERENCE = ("none", "rdfs", "owlrl")
FOLDER = "graph"
SH = rdflib.Namespace("http://www.w3.org/ns/shacl#")


def _path(version: Any, name: str) -> str:
    return version.path(f"{FOLDER}/{name}")


def _read_json(version: Any, name: str) -> dict | None:
    fs, path = version.fs(), _path(version, name)
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as fh:
        return json.load(fh)


def _write(version: Any, name: str, text: str) -> None:
    fs = version.fs()
    fs.makedirs(version.path(FOLDER), exist_ok=True)
    with fs.open(_path(version, name), "w") as fh:
        fh.write(text)


def canonical_file(path: str, fmt: str | None = None) -> tuple[str, int]:
    """The sorted canonical N-Triples of an RDF file and its triple count; any syntax error is an
    error naming file, line and column (an ontology or shapes file is taken whole or not at all)."""
    lines: list[str] = []
    for item in rdf.parse_file(path, fmt):
        if isinstance(item, rdf.ParseError):
            raise InvalidInput(item.reason.replace("; the line was skipped", ""),
                               hint="fix the file and attach it again")
        if item.graph is not None:
            raise InvalidInput(f"{path} line {item.line}: statements in a named graph; an ontology or shapes "
                               "file is one graph", hint="give it as Turtle, N-Triples or RDF/XML")
        lines.append(f"{item.nt} .\n")
    if not lines:
        raise InvalidInput(f"{path}: no triples read", hint="check the file and its --format")
    return "".join(sorted(set(lines))), len(set(lines))


def attach(version: Any, *, ontology: str | None = None, shapes: str | None = None,
           fmt: str | None = None) -> dict:
    """Attach an ontology and/or SHACL shapes to ``version``; returns what is attached now."""
    if not ontology and not shapes:
        raise InvalidInput("nothing to attach", hint="give --ontology FILE and/or --shapes FILE")
    info = dict(_read_json(version, "attached.json") or {})
    for kind, path in (("ontology", ontology), ("shapes", shapes)):
        if not path:
            continue
        if not os.path.isfile(path):
            raise NotFound(f"{kind} file {path!r} does not exist", hint="check the path")
        text, n = canonical_file(path, fmt)
        _write(version, f"{kind}.nt", text)
        info[kind] = {"source": os.path.basename(path), "sha256": hashlib.sha256(text.encode()).hexdigest(),
                      "triples": n, "file": f"{FOLDER}/{kind}.nt", "attached_at": utc_now().isoformat()}
    _write(version, "attached.json", json.dumps(info, ensure_ascii=False, indent=1, sort_keys=True))
    return {"version": version.ref, **info}


def attached(version: Any) -> tuple[Any, dict]:
    """The version whose attachments apply to ``version`` (itself or its nearest ancestor that has
    any) and what they are; ``(version, {})`` when there are none."""
    from ciyuan.store import resolve

    v = version
    for _ in range(64):
        info = _read_json(v, "attached.json")
        if info:
            return v, info
        if not v.parent:
            break
        try:
            v = resolve(f"{v.dataset}@{v.parent}", v.s)
        except NotFound:
            break
    return version, {}


def attached_text(version: Any, kind: str) -> str | None:
    """The canonical N-Triples of the attached ontology or shapes, or None."""
    owner, info = attached(version)
    if kind not in info:
        return None
    with owner.fs().open(_path(owner, f"{kind}.nt"), "r") as fh:
        return fh.read()


# --------------------------------------------------------------------------- rdflib bridge


def _term(t: Any) -> rdflib.term.Node:
    if isinstance(t, ox.NamedNode):
        return rdflib.URIRef(t.value)
    if isinstance(t, ox.BlankNode):
        return rdflib.BNode(t.value)
    if isinstance(t, ox.Literal):
        if t.language:
            return rdflib.Literal(t.value, lang=t.language)
        dt = t.datatype.value
        if dt == "http://www.w3.org/2001/XMLSchema#string":
            return rdflib.Literal(t.value)
        return rdflib.Literal(t.value, datatype=rdflib.URIRef(dt))
    raise InvalidInput(f"unsupported RDF term {t!r}", hint="RDF-star triples are not supported")


def rdflib_graph(texts: Iterable[str], graph: rdflib.Graph | None = None) -> rdflib.Graph:
    """An rdflib graph of the triples in N-Triples/N-Quads ``texts`` (graph names dropped: shapes
    see the union), built term by term so blank-node labels stay the records' own."""
    g = graph if graph is not None else rdflib.Graph()
    log = logging.getLogger("rdflib.term")  # it logs a traceback per ill-typed literal; quality.py counts them
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        for text in texts:
            for q in rdf.quads_of_text(text):
                g.add((_term(q.subject), _term(q.predicate), _term(q.object)))
    finally:
        log.setLevel(level)
    return g


def node_key(node: rdflib.term.Node) -> str:
    """An rdflib node as a graph record's ``meta.subject`` spells it."""
    if isinstance(node, rdflib.BNode):
        return f"_:{node}"
    if isinstance(node, rdflib.URIRef):
        return f"<{node}>"
    return node.n3()


# --------------------------------------------------------------------------- validation


def _shape_name(shapes: rdflib.Graph, shape: rdflib.term.Node | None) -> str:
    """A readable name of a shape: its IRI, or for a nested property shape its node shape and path."""
    if shape is None:
        return "(unknown shape)"
    if isinstance(shape, rdflib.URIRef):
        return str(shape)
    parent = next(iter(shapes.subjects(SH.property, shape)), None)
    path = shapes.value(shape, SH.path)
    head = _shape_name(shapes, parent) if parent is not None else "(anonymous shape)"
    return f"{head} / {path}" if path is not None else head


def shacl_report(data: rdflib.Graph, shapes: rdflib.Graph, ontology: rdflib.Graph | None = None,
                 inference: str = "none", subjects: int | None = None, sample: int = 50) -> dict:
    """Validate ``data`` against ``shapes`` with pyshacl and summarise the results.

    ``failing`` lists the focus nodes with at least one result of severity Violation (what the
    curation filter drops); ``conformance_rate`` is the share of ``subjects`` (default: the data's
    distinct subjects) that have none.
    """
    import pyshacl

    if inference not in INFERENCE:
        raise InvalidInput(f"inference {inference!r} is not one of {', '.join(INFERENCE)}",
                           hint="use --inference none, rdfs or owlrl")
    conforms, results, _ = pyshacl.validate(
        data, shacl_graph=shapes, ont_graph=ontology, inference=None if inference == "none" else inference,
        abort_on_first=False, allow_warnings=True, advanced=True,
    )
    by_shape: Counter[str] = Counter()
    by_severity: Counter[str] = Counter()
    by_component: Counter[str] = Counter()
    failing: dict[str, list[str]] = {}
    rows = []
    for r in results.subjects(rdflib.RDF.type, SH.ValidationResult):
        focus = results.value(r, SH.focusNode)
        severity = str(results.value(r, SH.resultSeverity) or SH.Violation).rsplit("#", 1)[-1]
        shape = _shape_name(shapes, results.value(r, SH.sourceShape))
        component = str(results.value(r, SH.sourceConstraintComponent) or "").rsplit("#", 1)[-1]
        message = str(results.value(r, SH.resultMessage) or "")
        path = results.value(r, SH.resultPath)
        by_shape[shape] += 1
        by_severity[severity] += 1
        by_component[component] += 1
        key = node_key(focus) if focus is not None else "?"
        if severity == "Violation":
            failing.setdefault(key, []).append(f"{shape}: {message}"[:300])
        rows.append({"focus": key, "shape": shape, "severity": severity, "component": component,
                     "path": None if path is None else str(path), "message": message[:300]})
    rows.sort(key=lambda x: (x["focus"], x["shape"], x["message"]))
    total = subjects if subjects is not None else len(set(data.subjects()))
    rate = 1.0 if total == 0 else max(0.0, (total - len(failing)) / total)
    return {
        "conforms": bool(conforms), "inference": inference, "subjects": total,
        "conforming_subjects": total - len(failing), "conformance_rate": round(rate, 6),
        "results": len(rows), "by_severity": dict(sorted(by_severity.items())),
        "violations_by_shape": dict(by_shape.most_common()), "by_component": dict(by_component.most_common()),
        "failing": dict(sorted(failing.items())), "sample": rows[:sample],
    }


def validate(version: Any, inference: str = "none") -> dict:
    """Validate ``version``'s graph against its attached shapes (and ontology), store the summary
    as ``graph/validation.json`` beside it, and return it."""
    shapes_text = attached_text(version, "shapes")
    if shapes_text is None:
        raise NotFound(f"{version.ref} has no SHACL shapes attached",
                       hint=f"run: ciyuan graph attach {version.ref} --shapes shapes.ttl")
    onto_text = attached_text(version, "ontology")
    subjects = 0
    texts = []
    for rec in version.iter_records(columns=["id", "modality", "text", "meta"]):
        if rec.get("modality") != "graph":
            continue
        subjects += 1
        texts.append(rec["text"])
    if not subjects:
        raise InvalidInput(f"{version.ref} holds no graph records", hint="ingest an RDF file (.ttl, .nt, ...)")
    data = rdflib_graph(texts)
    del texts
    report = shacl_report(data, rdflib_graph([shapes_text]), rdflib_graph([onto_text]) if onto_text else None,
                          inference, subjects=subjects)
    report = {"version": version.id, "dataset": version.dataset, "validated_at": utc_now().isoformat(), **report}
    _write(version, "validation.json", json.dumps(report, ensure_ascii=False, indent=1))
    return report


def stored_validation(version: Any) -> dict | None:
    """The last validation stored beside ``version``, if any."""
    return _read_json(version, "validation.json")
