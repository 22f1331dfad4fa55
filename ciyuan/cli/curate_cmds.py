"""``ciyuan curate``, ``ciyuan steps`` and ``ciyuan report``: refine a version and show what was done."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ciyuan.cli.output import JsonOpt, LangOpt, console, emit, err_console, errors, report_lang

if TYPE_CHECKING:
    from ciyuan.curate.executor import ProgressEvent


def _stage_bars(enabled: bool) -> Progress:
    """One bar per curation stage on stderr: records read of the stage's total, shards, time left."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records  {task.fields[extra]}"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
        console=err_console,
        disable=not enabled or not err_console.is_terminal,
        transient=False,
    )


def curate_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION to curate."),
    recipe: str | None = typer.Option(None, "--recipe", help="Recipe YAML file or built-in (text-pretrain, text-sft)."),
    steps: str | None = typer.Option(None, "--steps", help="Shorthand recipe: built-in steps with defaults, a,b,c."),
    executor: str = typer.Option("local", "--executor", help="local (processes) or ray (Ray Data)."),
    workers: int | None = typer.Option(None, "--workers", help="Parallel workers (default: all cores)."),
    resume: bool = typer.Option(False, "--resume", help="Continue a killed run from the shards already done."),
    as_json: bool = JsonOpt,
) -> None:
    """Run a recipe over a version and make a new version; rejected records keep step and reason."""
    from ciyuan.curate.curate import curate

    with errors(as_json), _stage_bars(not as_json) as bar:
        tasks: dict[str, int] = {}

        def tick(ev: ProgressEvent) -> None:
            extra = f"shards {ev.shards_done}/{ev.shards}"
            if ev.stage not in tasks:
                tasks[ev.stage] = bar.add_task(ev.stage, total=ev.records, extra=extra)
            bar.update(tasks[ev.stage], completed=ev.records_done, total=ev.records, extra=extra)

        res = curate(ref, recipe, steps=steps, executor=executor, workers=workers, resume=resume, on_progress=tick)

    def render(o: dict) -> None:
        t = Table("step", "seen", "kept", "rejected", "not applicable", "changed", "tokens removed",
                  "top rejection codes")
        for s in o["steps"]:
            top = sorted(s["rejected_by_code"].items(), key=lambda kv: -kv[1])[:3]
            t.add_row(
                s["step"],
                str(s["seen"]),
                str(s["kept"]),
                str(s["rejected"]),
                str(s.get("not_applicable", 0)),
                str(s["changed"]),
                str(s["tokens_removed"]),
                ", ".join(f"{k} {v}" for k, v in top),
            )
        console.print(t)
        console.print(
            f"[bold]{o['dataset']}@{o['version'][:12]}[/] from {o['parent'][:12]} by {o['recipe']}: "
            f"kept {o['kept']}, rejected {o['rejected']}, changed {o['changed']}; "
            f"tokens {o['tokens_before']} -> {o['tokens_after']} ({o['tokenizer']})"
        )
        console.print(f"report: ciyuan report {o['dataset']}@{o['version'][:12]}")
        if o["rejected"]:
            console.print(f"rejected records: ciyuan show {o['dataset']}@{o['version'][:12]} --rejected --reason CODE")

    emit(res, as_json, render)


def steps_cmd(as_json: bool = JsonOpt) -> None:
    """List the built-in curation steps and their parameters."""
    from ciyuan.curate.recipes import builtin_names
    from ciyuan.curate.steps import describe

    data = {"steps": describe(), "recipes": builtin_names()}

    def render(o: dict) -> None:
        for s in o["steps"]:
            console.print(f"[bold]{s['name']}[/] ({s['kind']}): {s['description']}")
            t = Table("parameter", "type", "default", "meaning", show_edge=False)
            for p in s["params"]:
                t.add_row(p["name"], p["type"], repr(p["default"]), p["help"])
            console.print(t)
        console.print(f"built-in recipes: {', '.join(o['recipes'])}")

    emit(data, as_json, render)


def report_cmd(
    ref: str = typer.Argument(..., help="NAME@VERSION made by ciyuan curate."),
    out: Path | None = typer.Option(None, "--out", help="HTML file to write (default: report-NAME-VERSION.html)."),
    lang: str | None = LangOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Write a self-contained HTML report of what curation did to a version, in Chinese or English."""
    from ciyuan.curate.report import build_report, render_html

    with errors(as_json):
        language = report_lang(lang)
        rep = build_report(ref)
        path = out or Path(f"report-{rep['dataset']}-{rep['version'][:12]}.html")
        path.write_text(render_html(rep, language), encoding="utf-8")
        rep["html"] = str(path)
    emit(rep, as_json, lambda o: console.print(f"wrote {o['html']}"))


def register(app: typer.Typer) -> None:
    app.command("curate")(curate_cmd)
    app.command("steps")(steps_cmd)
    app.command("report")(report_cmd)
