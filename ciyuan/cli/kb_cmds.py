"""Knowledge-base commands: build (or reuse) a version's retrieval index, and search it locally.

``ciyuan kb search`` reads the store directly and bills nothing: it is the provider's own check of
what a buyer's (billed) retrieve call would return.
"""

from __future__ import annotations

import typer
from rich.table import Table

from ciyuan.cli.output import JsonOpt, console, emit, errors, progress

kb_app = typer.Typer(help="Knowledge bases: the retrieval index beside a version (chunks, BM25, vectors).",
                     no_args_is_help=True)

_STAGES = {"chunk": "chunk records", "bm25": "BM25 index", "vectors": "embed chunks (MiniLM)"}


def _params(chunk_tokens: int | None, overlap: int | None):
    from ciyuan.config import settings
    from ciyuan.knowledge.chunker import ChunkerParams
    from ciyuan.knowledge.retrieval import default_params

    base = default_params(settings())
    return ChunkerParams(max_tokens=base.max_tokens if chunk_tokens is None else chunk_tokens,
                         overlap=base.overlap if overlap is None else overlap)


@kb_app.command("index")
def index_cmd(
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or a full version id."),
    chunk_tokens: int | None = typer.Option(None, "--chunk-tokens", help="Tokens per chunk (default 256)."),
    overlap: int | None = typer.Option(None, "--overlap", help="Tokens shared by neighbouring chunks (default 32)."),
    vectors: str | None = typer.Option(None, "--vectors", help="auto (MiniLM when installed) or off (BM25 only)."),
    as_json: bool = JsonOpt,
) -> None:
    """Build the version's retrieval index, or reuse it when the version and chunker are unchanged."""
    from ciyuan.knowledge.retrieval import ensure_index

    with errors(as_json), progress(not as_json) as bar:
        tasks: dict[str, int] = {}

        def tick(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(_STAGES.get(stage, stage), total=total, extra="")
            bar.update(tasks[stage], completed=done, total=total)

        manifest = ensure_index(None, ref, params=_params(chunk_tokens, overlap), vectors_mode=vectors,
                                progress=tick)

    def render(m: dict) -> None:
        what = "reused" if m["reused"] else "built"
        ch = m["chunker"]
        console.print(f"[bold]{m['dataset']}@{m['version'][:12]}[/]: index {m['key'][:12]} {what}")
        console.print(f"{m['chunks']:,} chunks of {m['records_chunked']:,} records, {m['tokens']:,} tokens; chunker "
                      f"{ch['name']} v{ch['version']} ({ch['params']['max_tokens']} tokens, overlap "
                      f"{ch['params']['overlap']})")
        console.print(f"modes: {', '.join(m['modes'])}" + (f"  [yellow]({m['vectors_note']})[/]"
                                                          if m["vectors_note"] else ""))
        console.print(f"stored at {m['location']}")

    emit(manifest, as_json, render)


@kb_app.command("search")
def search_cmd(
    ref: str = typer.Argument(..., help="NAME, NAME@VERSION or a full version id."),
    query: str = typer.Argument(..., help="What to look for, in any language."),
    top_k: int = typer.Option(5, "--top-k", help="How many chunks (1 to 100)."),
    mode: str = typer.Option("hybrid", "--mode", help="hybrid | bm25 | vector."),
    as_json: bool = JsonOpt,
) -> None:
    """Search a version's index locally (unbilled): the chunks a retrieve call would return."""
    from ciyuan.knowledge.retrieval import retrieve

    with errors(as_json):
        out = retrieve(None, ref, query, top_k, mode)

    def render(o: dict) -> None:
        note = f"  [yellow]({o['fallback']})[/]" if o["fallback"] else ""
        console.print(f"mode: {o['mode_used']}{note}")
        t = Table("score", "record", "span", "tokens", "text")
        for r in o["results"]:
            t.add_row(f"{r['score']:.4f}", r["record_id"][:16], f"{r['start']}-{r['end']}", str(r["tokens"]),
                      r["text"][:120].replace("\n", " "))
        console.print(t)

    emit(out, as_json, render)


def register(app: typer.Typer) -> None:
    app.add_typer(kb_app, name="kb")
