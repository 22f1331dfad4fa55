"""The export of a graph version: the N-Triples file, the ontology and shapes beside it, and a
Croissant card that points to all three (each a FileObject with its sha256, each read by a
RecordSet of its lines, so ``mlcroissant`` loads them).

Here, above the knowledge layer, because the card reuses the value layer's Croissant vocabulary,
RAI fields and stored appraisal (and its link-prediction result, when there is one).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ciyuan.appraise.card import CROISSANT_CONTEXT, _agent, _rai, write_card

MIME = {"ntriples": ["application/n-triples", "text/plain"], "nquads": ["application/n-quads", "text/plain"]}
WHAT = {"graph": "The graph: canonical N-Triples (N-Quads with named graphs), one statement a line, sorted.",
        "ontology": "The ontology attached to the version (OWL/RDFS), canonical N-Triples, sorted.",
        "shapes": "The SHACL shapes attached to the version, canonical N-Triples, sorted."}


def graph_card(version_dict: dict, files: dict[str, dict], info: dict | None = None,
               appraisal: dict | None = None, validation: dict | None = None) -> dict:
    """A Croissant 1.0 card of an exported graph; ``files`` as :func:`ciyuan.knowledge.export.write_graph` gives."""
    info = dict(info or {})
    name, vid = version_dict["dataset"], version_dict["version"]
    dist, sets = [], []
    for kind, f in files.items():
        dist.append({"@type": "cr:FileObject", "@id": kind, "name": kind, "description": WHAT[kind],
                     "contentUrl": f["file"], "encodingFormat": MIME[f["format"]], "sha256": f["sha256"],
                     "contentSize": f"{f['bytes']} B"})
        sets.append({"@type": "cr:RecordSet", "@id": f"{kind}-statements", "name": f"{kind}-statements",
                     "description": f"One statement per line of {f['file']} ({f['lines']} lines).",
                     "field": [{"@type": "cr:Field", "@id": f"{kind}-statements/statement", "name": "statement",
                                "dataType": "sc:Text",
                                "source": {"fileObject": {"@id": kind}, "extract": {"fileProperty": "lines"}}}]})
    card: dict[str, Any] = {
        "@context": CROISSANT_CONTEXT, "@type": "sc:Dataset", "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": name,
        "description": info.get("description") or f"Knowledge graph {name}, version {vid[:12]}, made with ciyuan.",
        "version": info.get("version") or f"0.0.0+{vid[:12]}",
        "url": info.get("url") or f"ciyuan:{name}@{vid}",
        "datePublished": info.get("datePublished") or str(version_dict.get("created_at") or "")[:10] or "1970-01-01",
        "license": info.get("license") or "https://ciyuan.dev/licenses/unspecified",
        "creator": _agent(info.get("creator") or info.get("provider") or "unknown"),
        "citeAs": info.get("citeAs") or f"{name}, version {vid[:12]}, ciyuan dataset.",
        "keywords": info.get("keywords") or ["ciyuan", "knowledge graph", name],
        **_rai(version_dict, appraisal, info),
        "distribution": dist, "recordSet": sets,
        "ciyuan:version": vid, "ciyuan:records": version_dict.get("records"),
        "ciyuan:tokens": version_dict.get("tokens", {}),
        "ciyuan:graph": {k: {"file": f["file"], "lines": f["lines"]} for k, f in files.items()},
    }
    if validation:  # shapes as a list: IRIs as JSON-LD keys would expand, and an empty {} trips mlcroissant
        card["ciyuan:validation"] = {
            **{k: validation.get(k) for k in ("conforms", "inference", "conformance_rate", "validated_at")},
            "violations": [{"shape": k, "results": n}
                           for k, n in (validation.get("violations_by_shape") or {}).items()],
        }
    graph_ap = (appraisal or {}).get("graph") or {}
    if graph_ap:
        card["ciyuan:graphAppraisal"] = {k: graph_ap.get(k) for k in ("link_prediction", "gbt_36344") if k in graph_ap}
    return card


def export_graph(ref: str, out_dir: str, s: Any = None) -> dict:
    """Export ``ref`` as N-Triples with its ontology and shapes, and write ``croissant.json`` beside them."""
    from ciyuan.appraise import results
    from ciyuan.appraise.engine import _card_info
    from ciyuan.errors import NotFound
    from ciyuan.knowledge import shapes
    from ciyuan.knowledge.export import write_graph
    from ciyuan.store import resolve

    v = resolve(ref, s)
    files = write_graph(v, out_dir)
    try:
        ap = results.load(ref, s)
    except NotFound:
        ap = None
    card = graph_card(v.to_dict(), files, _card_info(v), ap, shapes.stored_validation(v))
    path = write_card(card, Path(out_dir) / "croissant.json")
    return {"dataset": v.dataset, "version": v.id, "format": "ntriples", "out": str(out_dir),
            "files": files, "card": str(path), "records": v.records,
            "tokens": json.loads(json.dumps(v.to_dict().get("tokens", {})))}
