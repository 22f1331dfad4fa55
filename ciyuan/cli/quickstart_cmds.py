"""``ciyuan quickstart``: the main job of ``make run`` on the embedded defaults.

It ingests the bundled sample into the home and prints its token report; later steps of the
exchange (curate, appraise, publish, serve) are added here as they land.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ciyuan.cli.output import JsonOpt, console, emit, errors

SAMPLE_DATASET = "sample-maintenance"


def build_demo(on_step=None) -> dict:
    """Ingest the bundled sample (idempotent: the same files give the same version)."""
    from ciyuan.data import sample_files
    from ciyuan.store import resolve
    from ciyuan.store.ingest import ingest
    from ciyuan.store.token_cache import token_report

    sources = [str(p) for p in sample_files()]
    if on_step:
        on_step("ingest the bundled sample")
    ing = ingest(sources, SAMPLE_DATASET, license="CC-BY-4.0", domain="wind-power-maintenance")
    v = resolve(f"{SAMPLE_DATASET}@{ing['version']}")
    report = token_report(v, "cl100k_base")
    return {"ingest": ing, "tokens": report}


def quickstart_cmd(
    home: Path | None = typer.Option(None, "--home", help="Exchange home (default: $CIYUAN_HOME or ~/.ciyuan)."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port"),
    as_json: bool = JsonOpt,
) -> None:
    """Build a demo from the bundled sample data and print its token report."""
    import os

    if home is not None:
        os.environ["CIYUAN_HOME"] = str(home)
        from ciyuan.config import settings

        settings.cache_clear()
    with errors(as_json):
        out = build_demo(on_step=None if as_json else lambda s: console.print(f"[bold cyan]>[/] {s}"))

    def render(o: dict) -> None:
        ing, rep = o["ingest"], o["tokens"]
        console.print(f"dataset [bold]{ing['dataset']}@{ing['version'][:12]}[/]: {ing['records']:,} records, "
                      f"{ing['quarantined']} quarantined {ing['quarantined_by_reason']}")
        from ciyuan.cli.store_cmds import tokens_cmd  # noqa: F401 - same rendering as `ciyuan tokens`

        console.print(f"[bold]token report[/] ({rep['tokenizer']} {rep['tokenizer_version']}): "
                      f"[bold]{rep['tokens']:,}[/] tokens, mean {rep['mean_tokens']} per record")
        for k, n in rep["distribution"]["by_language"].items():
            console.print(f"  language {k:10s} {n:>10,} tokens")
        for k, d in rep["distribution"]["by_length"].items():
            console.print(f"  {k:>12s} tokens/record: {d['records']:>6,} records")

    emit(out, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart_cmd)
