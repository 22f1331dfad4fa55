"""The dataset page of a knowledge-graph listing: classes, predicates and their counts, the SHACL
validation summary, and a picture of a sample neighbourhood.

The counts are of the listed version (one pass over its records, cached under
``$CIYUAN_HOME/cache/graph/<version>.json``: versions never change); the validation is the one the
provider stored beside the version (``ciyuan graph validate``); the neighbourhood is drawn only from
the listing's free sample, so nothing the provider did not choose to show is drawn. The picture is
inline SVG made here (a radial layout around the sample's first subject), no script, no download.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pyoxigraph as ox
from markupsafe import Markup, escape

from ciyuan.config import Settings

RDF_TYPE = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
LABELS = ("http://www.w3.org/2000/01/rdf-schema#label", "http://www.w3.org/2004/02/skos/core#prefLabel")
TOP = 25  # classes and predicates listed
EDGES = 12  # links drawn around the sample subject
W, H = 640, 420


def is_graph(detail: dict) -> bool:
    return "graph" in (detail.get("modalities") or []) or any(
        r.get("modality") == "graph" for r in detail.get("sample") or [])


def _quads(text: str) -> list[ox.Quad]:
    """Quads of a (possibly truncated) sample text, line by line: a cut last line is skipped."""
    out = []
    for line in (text or "").splitlines():
        try:
            out.extend(ox.parse(line.encode("utf-8"), ox.RdfFormat.N_QUADS))
        except SyntaxError:
            continue
    return out


def summary(s: Settings, dataset: str, version_id: str) -> dict:
    """Triples, subjects, and the commonest classes (by instances) and predicates (by triples)."""
    cache = Path(s.home) / "cache" / "graph" / f"{version_id}.json"
    if cache.exists():
        return json.loads(cache.read_text(encoding="utf-8"))
    from ciyuan.knowledge.rdf import quads_of_text
    from ciyuan.store import resolve

    v = resolve(f"{dataset}@{version_id}", s)
    classes: Counter[str] = Counter()
    predicates: Counter[str] = Counter()
    triples = subjects = 0
    for rec in v.iter_records(columns=["id", "modality", "text"]):
        if rec.get("modality") != "graph":
            continue
        subjects += 1
        for q in quads_of_text(rec.get("text") or ""):
            triples += 1
            predicates[q.predicate.value] += 1
            if q.predicate.value == RDF_TYPE and isinstance(q.object, ox.NamedNode):
                classes[q.object.value] += 1
    out = {"triples": triples, "subjects": subjects, "n_classes": len(classes), "n_predicates": len(predicates),
           "classes": classes.most_common(TOP), "predicates": predicates.most_common(TOP)}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out, ensure_ascii=False), encoding="utf-8")
    return out


def short(term: str) -> str:
    """A readable name of an IRI or node: the part after the last ``#`` or ``/``."""
    t = term.strip("<>")
    for sep in ("#", "/", ":"):
        if sep in t.rstrip(sep):
            t = t.rstrip(sep).rsplit(sep, 1)[-1]
            break
    return t[:28] + ("…" if len(t) > 28 else "")


def neighbourhood(sample: list[dict], label: str) -> tuple[Markup, str, int] | None:
    """SVG of the first sample subject and up to ``EDGES`` links from and to it, and its name."""
    quads = [q for r in sample if r.get("modality") == "graph" for q in _quads(r.get("text") or "")]
    if not quads:
        return None
    centre = str(quads[0].subject)
    names: dict[str, str] = {}
    for q in quads:
        if q.predicate.value in LABELS and isinstance(q.object, ox.Literal):
            names.setdefault(str(q.subject), q.object.value[:28])
    edges: list[tuple[str, str, str, bool]] = []  # (other node, predicate, shown text, outgoing)
    for q in quads:
        s, o = str(q.subject), q.object
        if s == centre and q.predicate.value not in LABELS:
            shown = (o.value[:28] if isinstance(o, ox.Literal) else names.get(str(o), short(str(o))))
            edges.append((str(o), short(q.predicate.value), shown, True))
        elif isinstance(o, ox.NamedNode | ox.BlankNode) and str(o) == centre:
            edges.append((s, short(q.predicate.value), names.get(s, short(s)), False))
    edges = edges[:EDGES]
    cx, cy, rad = W / 2, H / 2, min(W, H) / 2 - 60
    body = ['<defs><marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" '
            'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="#667"/></marker></defs>']
    for i, (_, pred, shown, out) in enumerate(edges):
        a = 2 * math.pi * i / max(1, len(edges)) - math.pi / 2
        x, y = cx + rad * math.cos(a), cy + rad * math.sin(a)
        x1, y1, x2, y2 = (cx, cy, x, y) if out else (x, y, cx, cy)
        body.append(f'<line class="edge" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#667" '
                    f'stroke-width="1.2" marker-end="url(#arr)"/>')
        mx, my = (cx + x) / 2, (cy + y) / 2
        body.append(f'<text x="{mx:.1f}" y="{my - 3:.1f}" font-size="10" fill="#446" text-anchor="middle">'
                    f'{escape(pred)}</text>')
        body.append(f'<circle class="node" cx="{x:.1f}" cy="{y:.1f}" r="6" fill="#8ab"/>'
                    f'<text x="{x:.1f}" y="{y + 18:.1f}" font-size="11" text-anchor="middle">{escape(shown)}</text>')
    title = names.get(centre, short(centre))
    body.append(f'<circle class="node centre" cx="{cx}" cy="{cy}" r="10" fill="#c63"/>'
                f'<text x="{cx}" y="{cy - 16}" font-size="13" font-weight="bold" text-anchor="middle">'
                f"{escape(title)}</text>")
    lab = escape(label.format(subject=title, edges=len(edges)))
    svg = Markup(f'<svg class="chart graph" viewBox="0 0 {W} {H}" role="img" aria-label="{lab}" '
                 f'xmlns="http://www.w3.org/2000/svg"><title>{lab}</title>{"".join(body)}</svg>')
    return svg, centre, len(edges)


def page(s: Settings, listing_id: str, detail: dict, t: Any) -> dict | None:
    """Everything the listing page shows of a graph listing, or None for other listings."""
    if not is_graph(detail):
        return None
    from ciyuan.errors import NotFound
    from ciyuan.knowledge.shapes import stored_validation
    from ciyuan.store import resolve

    try:
        v = resolve(f"{detail['dataset']}@{detail['version']}", s)
    except NotFound:
        return None
    pic = neighbourhood(detail.get("sample") or [], t("gp_neighbourhood_alt"))
    val = stored_validation(v)
    return {
        "summary": summary(s, detail["dataset"], detail["version"]),
        "validation": None if val is None else {
            "conforms": val["conforms"], "rate": f"{val['conformance_rate']:.1%}", "ok": val["conforming_subjects"],
            "n": val["subjects"], "inference": val["inference"],
            "shapes": list(val["violations_by_shape"].items())[:TOP]},
        "picture": None if pic is None else {"svg": pic[0], "subject": pic[1], "edges": pic[2]},
        "short": short,
    }
