"""Commands of knowledge graphs: attach an ontology and shapes, validate, show quality indicators."""

from __future__ import annotations

import typer
from rich.table import Table

from ciyuan.cli.output import JsonOpt, console, emit, errors

graph_app = typer.Typer(help="Knowledge graphs: ontologies, SHACL shapes, validation, quality.", no_args_is_help=True)


def attach_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION of a graph dataset."),
    ontology: str | None = typer.Option(None, "--ontology", help="OWL/RDFS ontology file (.ttl, .nt, .rdf, .owl...)."),
    shapes: str | None = typer.Option(None, "--shapes", help="SHACL shapes file."),
    fmt: str | None = typer.Option(None, "--format", help="RDF format of the files (default: from the extension)."),
    as_json: bool = JsonOpt,
) -> None:
    """Attach an ontology and/or SHACL shapes to a version (kept beside it; curated children inherit them)."""
    from ciyuan.knowledge import shapes as sh
    from ciyuan.store import resolve

    with errors(as_json):
        out = sh.attach(resolve(ref), ontology=ontology, shapes=shapes, fmt=fmt)

    def show(d: dict) -> None:
        for kind in sh.KINDS:
            if kind in d:
                console.print(f"{kind}: {d[kind]['source']} ({d[kind]['triples']} triples) attached to {d['version']}")

    emit(out, as_json, show)


def validate_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION of a graph dataset."),
    inference: str = typer.Option("none", "--inference", help="none | rdfs | owlrl (applied before validating)."),
    as_json: bool = JsonOpt,
) -> None:
    """Validate the graph against its attached SHACL shapes with pyshacl; the result is stored beside it."""
    from ciyuan.knowledge import shapes as sh
    from ciyuan.store import resolve

    with errors(as_json):
        out = sh.validate(resolve(ref), inference=inference)

    def show(d: dict) -> None:
        console.print(f"{'conforms' if d['conforms'] else 'does not conform'} (inference {d['inference']}): "
                      f"{d['conforming_subjects']} of {d['subjects']} subjects conform "
                      f"({d['conformance_rate']:.1%}); {d['results']} result(s)")
        t = Table("shape", "results")
        for shape, n in d["violations_by_shape"].items():
            t.add_row(shape, str(n))
        if d["violations_by_shape"]:
            console.print(t)

    emit(out, as_json, show)


def quality_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION of a graph dataset."),
    as_json: bool = JsonOpt,
) -> None:
    """Quality indicators of the graph and their mapping onto GB/T 36344's six indicators."""
    from ciyuan.knowledge import quality
    from ciyuan.store import resolve

    with errors(as_json):
        out = quality.version_quality(resolve(ref))

    def show(d: dict) -> None:
        ind = d["indicators"]
        console.print(f"{ind['triples']} triples, {ind['subjects']} subjects; duplicates {ind['duplicate_triples']}, "
                      f"dangling IRIs {ind['dangling_iris']}, invalid literals {ind['literals_invalid']} of "
                      f"{ind['literals_checked']}, blank-node ratio {ind['blank_node_ratio']:.3f}")
        t = Table("GB/T 36344", "indicator", "score", "measured by")
        for zh, v in d["gbt_36344"].items():
            score = "n/a" if v["score"] is None else f"{v['score']:.3f}"
            t.add_row(zh, v["en"], score, v.get("note") or v["measured_by"])
        console.print(t)

    emit(out, as_json, show)


def register(app: typer.Typer) -> None:
    graph_app.command("attach")(attach_cmd)
    graph_app.command("validate")(validate_cmd)
    graph_app.command("quality")(quality_cmd)
    app.add_typer(graph_app, name="graph")
