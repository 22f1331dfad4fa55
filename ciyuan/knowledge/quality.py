"""Quality indicators of a graph, and their mapping onto the six indicators of GB/T 36344-2018.

Measured by streaming the graph records once (memory: one 8-byte hash per distinct triple, for the
duplicate count, and the sets of described subjects and referenced IRIs, for dangling IRIs):

* SHACL conformance rate and violations by shape (from the stored validation, ``shapes.py``);
* dangling IRIs: objects that are IRIs never described as a subject, not counting the ontology's
  terms, the standard vocabularies (RDF, RDFS, OWL, XSD, SHACL, SKOS) nor the classes named by
  ``rdf:type`` (a class belongs to the ontology, attached or not);
* literals that do not parse as their datatype (xsd:integer and its subtypes, decimal, double,
  float, boolean, date, dateTime, time, gYear);
* label coverage per class: instances with an ``rdfs:label`` or ``skos:prefLabel``;
* duplicate triples (the same statement twice, in one record or across files);
* blank-node ratio: distinct subject and object nodes that are blank nodes.

GB/T 36344 names six indicators of data quality; :data:`GBT_36344` says which measurement feeds
which, and :func:`gbt_36344` scores them in [0, 1] (timeliness is reported, not scored: a graph
does not say how old its facts are unless it carries dates, and those are shown).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

import pyoxigraph as ox

from ciyuan.knowledge import rdf

XSD = "http://www.w3.org/2001/XMLSchema#"
RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
LABELS = ("http://www.w3.org/2000/01/rdf-schema#label", "http://www.w3.org/2004/02/skos/core#prefLabel")
STANDARD = ("http://www.w3.org/1999/02/22-rdf-syntax-ns#", "http://www.w3.org/2000/01/rdf-schema#",
            "http://www.w3.org/2002/07/owl#", XSD, "http://www.w3.org/ns/shacl#",
            "http://www.w3.org/2004/02/skos/core#")
_INT = re.compile(r"[+-]?\d+\Z")
_DEC = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)\Z")
_DBL = re.compile(r"([+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?|[+-]?INF|NaN)\Z")
_TZ = r"(Z|[+-]\d\d:\d\d)?"
_DATE = re.compile(r"-?\d{4,}-\d\d-\d\d" + _TZ + r"\Z")
_DATETIME = re.compile(r"-?\d{4,}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?" + _TZ + r"\Z")
_TIME = re.compile(r"\d\d:\d\d:\d\d(\.\d+)?" + _TZ + r"\Z")
_GYEAR = re.compile(r"-?\d{4,}" + _TZ + r"\Z")
_INT_RANGES = {
    "integer": (None, None), "nonNegativeInteger": (0, None), "positiveInteger": (1, None),
    "nonPositiveInteger": (None, 0), "negativeInteger": (None, -1), "long": (-(2**63), 2**63 - 1),
    "int": (-(2**31), 2**31 - 1), "short": (-(2**15), 2**15 - 1), "byte": (-128, 127),
    "unsignedLong": (0, 2**64 - 1), "unsignedInt": (0, 2**32 - 1), "unsignedShort": (0, 65535),
    "unsignedByte": (0, 255),
}


def _date_ok(value: str, with_time: bool) -> bool:
    m = (_DATETIME if with_time else _DATE).match(value)
    if not m:
        return False
    core = value.lstrip("-")
    try:
        dt.date(int(core[:4]) or 1, int(core[5:7]), int(core[8:10]))
        if with_time:
            hh, mm, ss = int(core[11:13]), int(core[14:16]), int(core[17:19])
            if not (hh < 24 and mm < 60 and ss < 60) and (hh, mm, ss) != (24, 0, 0):
                return False
    except ValueError:
        return False
    return True


def literal_ok(value: str, datatype: str) -> bool | None:
    """Whether ``value`` is a valid lexical form of ``datatype``; None for datatypes not checked."""
    if not datatype.startswith(XSD):
        return None
    local = datatype[len(XSD):]
    if local in _INT_RANGES:
        if not _INT.match(value):
            return False
        low, high = _INT_RANGES[local]
        n = int(value)
        return (low is None or n >= low) and (high is None or n <= high)
    if local == "decimal":
        if not _DEC.match(value):
            return False
        try:
            Decimal(value)
        except InvalidOperation:
            return False
        return True
    if local in ("double", "float"):
        return bool(_DBL.match(value))
    if local == "boolean":
        return value in ("true", "false", "1", "0")
    if local == "date":
        return _date_ok(value, False)
    if local == "dateTime":
        return _date_ok(value, True)
    if local == "time":
        return bool(_TIME.match(value))
    if local == "gYear":
        return bool(_GYEAR.match(value))
    return None


def ontology_terms(text: str | None) -> set[str]:
    """Every IRI an ontology's triples mention (in any position)."""
    out: set[str] = set()
    for q in rdf.quads_of_text(text or "", source="ontology"):
        for t in (q.subject, q.predicate, q.object):
            if isinstance(t, ox.NamedNode):
                out.add(t.value)
    return out


def indicators(records: Iterable[dict], *, ontology: str | None = None, validation: dict | None = None,
               examples: int = 10) -> dict:
    """The graph's quality indicators (see the module's docstring), from its records in one pass."""
    onto = ontology_terms(ontology)
    seen: set[bytes] = set()
    duplicates = 0
    triples = 0
    subjects: set[str] = set()
    referenced: Counter[str] = Counter()
    classes_of: dict[str, set[str]] = {}
    labelled: set[str] = set()
    blank: set[str] = set()
    named: set[str] = set()
    checked = bad = 0
    bad_examples: list[dict] = []
    by_datatype: Counter[str] = Counter()
    newest_date: str | None = None
    for rec in records:
        if rec.get("modality") != "graph":
            continue
        for q in rdf.quads_of_text(rec.get("text") or "", source=f"record {rec.get('id')}"):
            triples += 1
            h = hashlib.blake2b(str(q).encode(), digest_size=8).digest()
            if h in seen:
                duplicates += 1
            else:
                seen.add(h)
            s, p, o = q.subject, q.predicate.value, q.object
            skey = str(s)
            subjects.add(skey)
            (blank if isinstance(s, ox.BlankNode) else named).add(skey)
            if isinstance(o, ox.Literal):
                if p in LABELS:
                    labelled.add(skey)
                ok = literal_ok(o.value, o.datatype.value) if not o.language else None
                if ok is not None:
                    checked += 1
                    if not ok:
                        bad += 1
                        by_datatype[o.datatype.value] += 1
                        if len(bad_examples) < examples:
                            bad_examples.append({"record": rec.get("id"), "triple": f"{q.triple}"})
                    elif o.datatype.value in (XSD + "date", XSD + "dateTime") and (
                            newest_date is None or o.value > newest_date):
                        newest_date = o.value
                continue
            okey = str(o)
            (blank if isinstance(o, ox.BlankNode) else named).add(okey)
            if p == RDF_TYPE and isinstance(o, ox.NamedNode):
                classes_of.setdefault(o.value, set()).add(skey)
            elif isinstance(o, ox.NamedNode) and o.value not in onto and not o.value.startswith(STANDARD):
                referenced[okey] += 1
    dangling = {k: n for k, n in referenced.items() if k not in subjects}
    nodes = len(blank) + len(named)
    coverage = {c: {"instances": len(m), "labelled": len(m & labelled),
                    "coverage": round(len(m & labelled) / len(m), 6)} for c, m in sorted(classes_of.items())}
    instances = sum(v["instances"] for v in coverage.values())
    out: dict[str, Any] = {
        "triples": triples, "subjects": len(subjects),
        "duplicate_triples": duplicates, "duplicate_ratio": round(duplicates / triples, 6) if triples else 0.0,
        "dangling_iris": len(dangling), "referenced_iris": len(referenced),
        "dangling_ratio": round(len(dangling) / len(referenced), 6) if referenced else 0.0,
        "dangling_examples": sorted(dangling, key=lambda k: (-dangling[k], k))[:examples],
        "literals_checked": checked, "literals_invalid": bad,
        "literal_invalid_ratio": round(bad / checked, 6) if checked else 0.0,
        "invalid_by_datatype": dict(by_datatype.most_common()), "invalid_examples": bad_examples,
        "label_coverage": coverage,
        "label_coverage_overall": round(sum(v["labelled"] for v in coverage.values()) / instances, 6)
        if instances else None,
        "blank_nodes": len(blank), "nodes": nodes, "blank_node_ratio": round(len(blank) / nodes, 6) if nodes else 0.0,
        "newest_date": newest_date,
        "shacl": None,
    }
    if validation:
        out["shacl"] = {k: validation.get(k) for k in ("conforms", "inference", "conformance_rate", "subjects",
                                                       "conforming_subjects", "results", "violations_by_shape",
                                                       "by_severity", "validated_at")}
    return out


# indicator -> (English name, what feeds it); the order is the standard's
GBT_36344: dict[str, tuple[str, str]] = {
    "规范性": ("conformity", "SHACL conformance rate (subjects without a violation of the attached shapes)"),
    "完整性": ("completeness", "label coverage per class (rdfs:label / skos:prefLabel) and 1 - dangling IRI ratio"),
    "准确性": ("accuracy", "1 - share of typed literals that do not parse as their datatype"),
    "一致性": ("consistency", "1 - duplicate triple ratio"),
    "时效性": ("timeliness", "not scored: the newest xsd:date/dateTime value in the graph is shown"),
    "可访问性": ("accessibility", "1 - blank-node ratio (blank nodes cannot be named from outside the graph)"),
}


def gbt_36344(ind: dict) -> dict:
    """The six GB/T 36344 indicators scored from :func:`indicators` (None: not measurable here)."""
    shacl = ind.get("shacl") or {}
    coverage = ind.get("label_coverage_overall")
    complete = 1 - ind["dangling_ratio"]
    scores = {
        "规范性": shacl.get("conformance_rate"),
        "完整性": round((coverage + complete) / 2, 6) if coverage is not None else round(complete, 6),
        "准确性": round(1 - ind["literal_invalid_ratio"], 6),
        "一致性": round(1 - ind["duplicate_ratio"], 6),
        "时效性": None,
        "可访问性": round(1 - ind["blank_node_ratio"], 6),
    }
    notes = {"时效性": f"newest date in the graph: {ind.get('newest_date') or 'none'}",
             "规范性": None if shacl else "no validation yet: attach shapes and run ciyuan graph validate"}
    return {zh: {"en": en, "measured_by": how, "score": scores[zh], **({"note": notes[zh]} if notes.get(zh) else {})}
            for zh, (en, how) in GBT_36344.items()}


def version_quality(version: Any) -> dict:
    """Indicators and the GB/T 36344 mapping of ``version``, using what is attached and validated."""
    from ciyuan.knowledge import shapes

    ind = indicators(version.iter_records(columns=["id", "modality", "text"]),
                     ontology=shapes.attached_text(version, "ontology"),
                     validation=shapes.stored_validation(version))
    return {"indicators": ind, "gbt_36344": gbt_36344(ind)}
