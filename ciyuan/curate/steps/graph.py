"""Curation steps of graph records (one subject with its triples; docs/knowledge.md, "Graphs").

* ``graph_canonical``: IRIs and literals to canonical form, in the ways that never change what a
  term denotes (RFC 3986 syntax normalisation of IRIs; XSD canonical lexical forms of valid
  integers, decimals and booleans; NFC of strings);
* ``graph_dedup``: the same triple twice in one record is kept once;
* ``graph_pii``: PII inside string literals redacted with the ``pii`` step's own detectors;
* ``shacl_filter``: subjects that violate the SHACL shapes (the version's attached ones, or a file)
  are rejected with the shapes and messages; validation sees the whole graph, so it is a global step.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyoxigraph as ox

from ciyuan.curate.steps.base import GlobalStep, Param, Step
from ciyuan.curate.steps.pii import Pii, redact
from ciyuan.errors import InvalidInput
from ciyuan.knowledge import rdf

GRAPH: frozenset[str] = frozenset({"graph"})
XSD = "http://www.w3.org/2001/XMLSchema#"
STRING_TYPES = (XSD + "string", "http://www.w3.org/1999/02/22-rdf-syntax-ns#langString")
ATTACHED_DIR = "input-graph-attached"  # in a curation's work folder: the input version's ontology and shapes
# (the "input-" prefix keeps it through pieces.keep_layout, which empties a folder cut another way)
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_AUTH = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)(.*)\Z", re.S)
_DEFAULT_PORT = {"http": "80", "https": "443"}
_INTEGER = frozenset({"integer", "long", "int", "short", "byte", "nonNegativeInteger", "positiveInteger",
                      "nonPositiveInteger", "negativeInteger", "unsignedLong", "unsignedInt", "unsignedShort",
                      "unsignedByte"})
_INT_RE = re.compile(r"[+-]?\d+\Z")
_DEC_RE = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)\Z")


def _pct(m: re.Match) -> str:
    ch = chr(int(m.group(1), 16))
    return ch if ch in _UNRESERVED else "%" + m.group(1).upper()


def canonical_iri(iri: str) -> str:
    """RFC 3986 syntax-based normalisation that keeps the resource: lower-case scheme and host,
    upper-case percent-encoding, unreserved characters decoded, the scheme's default port dropped,
    an empty http(s) path made ``/``. Path case, trailing slashes and queries are left alone."""
    iri = _PCT.sub(_pct, iri)
    m = _AUTH.match(iri)
    if not m:
        scheme, sep, rest = iri.partition(":")
        return f"{scheme.lower()}:{rest}" if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else iri
    scheme, authority, rest = m.group(1).lower(), m.group(2), m.group(3)
    userinfo, at, hostport = authority.rpartition("@")
    host, colon, port = hostport.rpartition(":") if not hostport.endswith("]") else (hostport, "", "")
    if not colon or not port.isdigit():
        host, colon, port = hostport, "", ""
    if port and _DEFAULT_PORT.get(scheme) == port:
        colon, port = "", ""
    authority = f"{userinfo}{at}{host.lower()}{colon}{port}"
    if scheme in _DEFAULT_PORT and rest[:1] in ("", "?", "#"):
        rest = "/" + rest
    return f"{scheme}://{authority}{rest}"


def canonical_literal(lit: ox.Literal, nfc: bool = True) -> ox.Literal:
    """XSD canonical lexical form of a valid integer, decimal or boolean; NFC of string values."""
    value, dt = lit.value, lit.datatype.value
    if lit.language:
        return ox.Literal(unicodedata.normalize("NFC", value), language=lit.language) if nfc else lit
    local = dt[len(XSD):] if dt.startswith(XSD) else None
    new = value
    if local in _INTEGER and _INT_RE.match(value):
        new = str(int(value))
    elif local == "decimal" and _DEC_RE.match(value):
        sign = "-" if value.startswith("-") else ""
        whole, _, frac = value.lstrip("+-").partition(".")
        whole, frac = whole.lstrip("0") or "0", frac.rstrip("0") or "0"
        new = ("" if whole == "0" and frac == "0" else sign) + f"{whole}.{frac}"
    elif local == "boolean" and value in ("1", "0"):
        new = "true" if value == "1" else "false"
    elif dt == XSD + "string" and nfc:
        new = unicodedata.normalize("NFC", value)
    if new == value:
        return lit
    return ox.Literal(new, datatype=lit.datatype)


def _rewrite(record: dict, fn) -> bool:
    """Apply ``fn`` to each quad of the record; rewrite text (sorted) and meta.subject if any changed."""
    quads = rdf.quads_of_text(record.get("text") or "", source=f"record {record.get('id')}")
    new = [fn(q) for q in quads]
    if all(a == b for a, b in zip(quads, new, strict=True)):
        return False
    record["text"] = rdf.canonical_ntriples(new)
    if new:
        record.setdefault("meta", {})["subject"] = str(new[0].subject)
    return True


class GraphCanonical(Step):
    name = "graph_canonical"
    modalities = GRAPH
    description = ("IRIs to RFC 3986 normal form (case of scheme/host, percent-encoding, default port) and "
                   "literals to XSD canonical form (integers, decimals, booleans), strings to NFC.")
    params = (
        Param("iris", "bool", True, "Normalise IRIs (subject, predicate, object, graph)."),
        Param("literals", "bool", True, "Canonical lexical forms of valid integer, decimal and boolean literals."),
        Param("nfc", "bool", True, "Unicode NFC of string and language-tagged literals."),
    )

    def _term(self, t: Any) -> Any:
        if isinstance(t, ox.NamedNode) and self.iris:
            iri = canonical_iri(t.value)
            return t if iri == t.value else ox.NamedNode(iri)
        if isinstance(t, ox.Literal) and (self.literals or self.nfc):
            if not self.literals and not (t.language or t.datatype.value == XSD + "string"):
                return t
            return canonical_literal(t, self.nfc)
        return t

    def _quad(self, q: ox.Quad) -> ox.Quad:
        g = q.graph_name
        return ox.Quad(self._term(q.subject), self._term(q.predicate), self._term(q.object),
                       g if isinstance(g, ox.DefaultGraph) else self._term(g))

    def process(self, record: dict) -> None:
        old = record.get("text") or ""
        if _rewrite(record, self._quad):
            meta = record["meta"]
            if meta.get("graph"):
                meta["graph"] = canonical_iri(meta["graph"]) if self.iris else meta["graph"]
            self.mark_changed(record, old)


class GraphDedup(Step):
    name = "graph_dedup"
    modalities = GRAPH
    description = "Keep each triple of a subject once (duplicates within one record)."

    def process(self, record: dict) -> None:
        old = record.get("text") or ""
        lines = old.splitlines(keepends=True)
        unique = sorted(set(lines))
        if len(unique) == len(lines):
            return
        record["text"] = "".join(unique)
        record.setdefault("meta", {})["triples"] = len(unique)
        self.stats.counters["duplicate_triples"] += len(lines) - len(unique)
        self.mark_changed(record, old)


class GraphPii(Pii):
    """The ``pii`` step (same detectors, parameters and accounting) over the literals of a subject."""

    name = "graph_pii"
    modalities = GRAPH
    description = "Redact PII inside string literals with the pii step's detectors (IRIs are left alone)."

    def process(self, record: dict) -> None:
        found: dict[str, int] = {}

        def fix(q: ox.Quad) -> ox.Quad:
            o = q.object
            if not isinstance(o, ox.Literal) or o.datatype.value not in STRING_TYPES:
                return q
            new, counts = redact(o.value, self._types)
            if not counts:
                return q
            for k, v in counts.items():
                found[k] = found.get(k, 0) + v
            lit = ox.Literal(new, language=o.language) if o.language else ox.Literal(new)
            return ox.Quad(q.subject, q.predicate, lit, q.graph_name)

        old = record.get("text") or ""
        if _rewrite(record, fix):
            self.account(record, found, old)


class ShaclFilter(GlobalStep):
    name = "shacl_filter"
    kind = "dedup"  # a global step: validation needs the whole graph
    modalities = GRAPH
    description = ("Reject subjects with a SHACL violation (severity Violation) of the version's attached "
                   "shapes, or of a shapes file; the reason names the shapes and messages.")
    params = (
        Param("shapes", "str", "attached", "'attached' (the input version's shapes) or a shapes file."),
        Param("ontology", "str", "attached", "'attached', 'none', or an ontology file (used by inference)."),
        Param("inference", "str", "none", "Inference before validating.", ("none", "rdfs", "owlrl")),
    )

    def begin(self, scratch: str, rows: int) -> dict:
        Path(scratch).mkdir(parents=True, exist_ok=True)
        return {"scratch": scratch}

    def scan(self, round_: int, records: Iterable[dict], shard: int, context: Any) -> dict:
        folder = Path(context["scratch"])
        folder.mkdir(parents=True, exist_ok=True)
        n = 0
        with open(folder / f"shard-{shard:05d}.nq", "w", encoding="utf-8") as data, \
                open(folder / f"shard-{shard:05d}.ids", "w", encoding="utf-8") as ids:
            for r in records:
                data.write(r.get("text") or "")
                ids.write(json.dumps([r["id"], (r.get("meta") or {}).get("subject")]) + "\n")
                n += 1
        return {"rows": n}

    def _source(self, which: str, value: str, scratch: str) -> str | None:
        if value == "none":
            return None
        if value == "attached":
            p = Path(scratch).parent / ATTACHED_DIR / f"{which}.nt"
            return p.read_text(encoding="utf-8") if p.exists() else None
        from ciyuan.knowledge.shapes import canonical_file

        if not Path(value).is_file():
            raise InvalidInput(f"shacl_filter: {which} file {value!r} does not exist", hint="check the path")
        return canonical_file(value)[0]

    def reduce(self, round_: int, parts: list, context: Any) -> tuple[bool, dict]:
        from ciyuan.knowledge import shapes as sh

        folder = Path(context["scratch"])
        by_shard: list[dict] = [{"drop": {}} for _ in parts]
        shapes_text = self._source("shapes", self.shapes, context["scratch"])
        if shapes_text is None:
            return True, {"by_shard": by_shard, "skipped": "no shapes attached to the input version"}
        onto = self._source("ontology", self.ontology, context["scratch"])
        data = sh.rdflib_graph((folder / f"shard-{i:05d}.nq").read_text(encoding="utf-8") for i in range(len(parts)))
        subjects = sum(p["rows"] for p in parts)
        report = sh.shacl_report(data, sh.rdflib_graph([shapes_text]), sh.rdflib_graph([onto]) if onto else None,
                                 self.inference, subjects=subjects, sample=0)
        failing = report["failing"]
        for i in range(len(parts)):
            with open(folder / f"shard-{i:05d}.ids", encoding="utf-8") as fh:
                for line in fh:
                    rid, subject = json.loads(line)
                    if subject in failing:
                        msgs = failing[subject]
                        by_shard[i]["drop"][rid] = "; ".join(msgs[:3]) + (f" (+{len(msgs) - 3} more)" if len(msgs) > 3
                                                                          else "")
        summary = {k: report[k] for k in ("conformance_rate", "results", "violations_by_shape", "inference")}
        return True, {"by_shard": by_shard, "summary": summary}

    def bind(self, plan: dict) -> None:
        super().bind(plan)
        if plan.get("skipped"):
            self.stats.extra["skipped"] = plan["skipped"]
        if plan.get("summary"):
            self.stats.extra["validation"] = plan["summary"]

    def apply_plan(self, record: dict) -> None:
        reason = self.plan["drop"].get(record["id"])
        if reason is not None:
            self.reject(record, "shacl_violation", f"shacl_filter: {reason}")
