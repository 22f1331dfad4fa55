"""Commands of the storage layer: ingest, datasets, show, export, verify, tokens, schedules."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from ciyuan.cli.output import JsonOpt, console, emit, errors, progress

if TYPE_CHECKING:
    from rich.progress import Progress

    from ciyuan.ingest.run import IngestProgress


def _fmt_tokens(tokens: dict) -> str:
    return ", ".join(f"{k}: {v:,}" for k, v in tokens.items()) or "-"


def ingest_ticker(bar: Progress) -> Callable[[IngestProgress], None]:
    """A progress callback for ingest: input bytes read of the total bytes (so Rich can show time
    left), with records kept and items quarantined beside the bar."""
    task = bar.add_task("ingest", total=None, extra="")

    def tick(p: IngestProgress) -> None:
        bar.update(task, total=max(p.bytes_total, 1), completed=p.bytes_read,
                   extra=f"{p.records:,} records, {p.quarantined:,} quarantined")

    return tick


def ingest_cmd(
    sources: list[str] = typer.Argument(..., help="Files or folders: JSONL (.gz/.zst), Parquet, CSV, .txt/.md, "
                                        "media folders, HF imagefolder/audiofolder, WebDataset .tar, "
                                        "RDF (.ttl .nt .nq .trig .rdf .jsonld)."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="Dataset name; a new version is added to it."),
    fmt: str = typer.Option("auto", "--format", help="auto|jsonl|parquet|csv|text, or a registered reader"),
    text_field: str = typer.Option("text", "--text-field", help="Field that holds the text."),
    id_field: str | None = typer.Option(None, "--id-field", help="Record id field (default: id, else a content hash)."),
    license: str | None = typer.Option(None, "--license", help="SPDX licence id of the data."),
    domain: str | None = typer.Option(None, "--domain", help="Domain recorded in each record's meta."),
    language: str | None = typer.Option(None, "--language", help="Language recorded in each record's meta."),
    strict: bool = typer.Option(False, "--strict", help="Refuse the whole input if any item is bad."),
    rename: list[str] = typer.Option([], "--rename", help="Rename a meta field, OLD=NEW (e.g. lang=language)."),
    card: str | None = typer.Option(None, "--card", help="YAML or JSON file of card fields: description, "
                                    "creator, keywords, rai:dataCollection, ... (see docs/appraisal.md)."),
    workers: int = typer.Option(1, "--workers", "-w", help="Processes for token counting."),
    modality: str | None = typer.Option(None, "--modality", help="image|audio|video: media of this modality "
                                        "only (others are quarantined wrong_modality); default: from the bytes."),
    repair_timestamps: bool = typer.Option(False, "--repair-timestamps", help="Robot episodes: rewrite timestamps "
                                           "that drift from frame_index/fps (noted in the version's lineage) "
                                           "instead of quarantining the episode."),
    timestamp_tolerance: float | None = typer.Option(None, "--timestamp-tolerance", help="Robot episodes: "
                                                     "seconds |timestamp - frame_index/fps| may be off (1e-4)."),
    as_json: bool = JsonOpt,
) -> None:
    """Read raw files into a new, immutable version; bad items go to its quarantine.

    Media layouts are detected too: a folder of media files with .txt/.json sidecars, a Hugging Face
    imagefolder/audiofolder (metadata.jsonl or .csv), WebDataset .tar shards, Parquet with Image/Audio
    columns, LeRobot v2.1/v3.0 folders and robomimic/ALOHA HDF5 demonstrations (docs/ingest.md); and
    RDF graphs (Turtle, N-Triples, N-Quads, TriG, RDF/XML, JSON-LD), one record a subject (docs/knowledge.md)."""
    from ciyuan.ingest.run import ingest, parse_renames

    with errors(as_json), progress(not as_json, unit="bytes") as bar:
        out = ingest(sources, dataset, fmt=fmt, text_field=text_field, id_field=id_field, license=license,
                     domain=domain, language=language, strict=strict, rename=parse_renames(rename), card=card,
                     workers=workers, on_progress=ingest_ticker(bar), modality=modality,
                     timestamp_tolerance_s=timestamp_tolerance, repair_timestamps=repair_timestamps)

    def render(o: dict) -> None:
        ref = f"{o['dataset']}@{o['version'][:12]}"
        console.print(f"[bold green]ingested[/] {o['records']:,} records into [bold]{ref}[/]")
        console.print(f"tokens: {_fmt_tokens(o['tokens'])}")
        if o["quarantined"]:
            console.print(f"[yellow]quarantined {o['quarantined']}[/]: {o['quarantined_by_reason']}"
                          f"  (see: ciyuan show {o['dataset']}@{o['version'][:12]} --quarantine)")
        if o["duplicate_ids"]:
            console.print(f"[yellow]{o['duplicate_ids']} duplicate id(s)[/]")
        if o.get("mismatches", {}).get("records"):
            console.print(f"[yellow]{o['mismatches']['records']} record(s) declare what the probe contradicts[/]: "
                          f"{o['mismatches']['by_field']}")

    emit(out, as_json, render)


def datasets_cmd(as_json: bool = JsonOpt) -> None:
    """List datasets with their latest version."""
    from ciyuan.store import list_datasets

    with errors(as_json):
        rows = list_datasets()

    def render(rows: list[dict]) -> None:
        if not rows:
            console.print("no datasets yet: try [bold]ciyuan ingest FILE --dataset NAME[/]")
            return
        t = Table("dataset", "latest", "versions", "records", "tokens")
        for r in rows:
            t.add_row(r["dataset"], r["latest"][:12], str(r["versions"]), f"{r['records']:,}", _fmt_tokens(r["tokens"]))
        console.print(t)

    emit(rows, as_json, render)


def _rejection_code(rec: dict) -> str:
    """A rejected record's stable code ``step.rule``; versions curated before codes give the step."""
    from ciyuan.curate.codes import rejection_code

    cur = (rec.get("meta") or {}).get("curation") or {}
    step = rec.get("_rejected", {}).get("step") or "?"
    return cur.get("rejected_code") or rejection_code(step, cur.get("rejected_rule"))


def show_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION"),
    rejected: bool = typer.Option(False, "--rejected", help="List the records curation rejected."),
    quarantine: bool = typer.Option(False, "--quarantine", help="List the input items that were quarantined."),
    reason: str | None = typer.Option(
        None, "--reason",
        help="Only rejections with this code, code prefix or rule (quality, quality.c4_curly_bracket, "
             "exact_dedup, low_score); other text is looked for in the reasons.",
    ),
    limit: int = typer.Option(50, "--limit", help="At most this many items."),
    as_json: bool = JsonOpt,
) -> None:
    """Summary of a version (counts, tokens, quarantine and rejections by reason), or its rejected items."""
    from ciyuan.curate.codes import code_matches, is_code_query
    from ciyuan.store import list_versions, resolve

    with errors(as_json):
        v = resolve(ref)
        if rejected or quarantine:
            part = "rejected" if rejected else "quarantine"
            items = []
            for rec in v.iter_records(partition=part):
                why = rec.get("_rejected", {}).get("reason") if rejected else rec.get("reason")
                step = rec.get("_rejected", {}).get("step") if rejected else None
                code = _rejection_code(rec) if rejected else None
                full = f"{step}: {why}" if step else (why or "")
                if reason and not (
                    code_matches(code, reason) if code and is_code_query(reason) else reason.lower() in full.lower()
                ):
                    continue
                if rejected:
                    items.append({"id": rec["id"], "step": step, "code": code, "reason": why,
                                  "text": rec.get("text"), "meta": rec.get("meta")})
                else:
                    raw = rec.get("raw") or b""
                    items.append({"source": rec["source"], "line": rec["line"], "reason": why,
                                  "raw": raw[:2000].decode("utf-8", "replace"),
                                  **({"member": rec["member"]} if rec.get("member") else {})})
                if len(items) >= limit:
                    break
            out = {"dataset": v.dataset, "version": v.id, "partition": part, "items": items,
                   "total": v.manifest["totals"]["rejected" if rejected else "quarantined"]}

            def render_items(o: dict) -> None:
                t = Table(*(["id", "code", "reason", "text"] if rejected else ["source", "line", "reason", "raw"]))
                for it in o["items"]:
                    if rejected:
                        t.add_row(it["id"][:16], it["code"], it["reason"], (it["text"] or "")[:60])
                    else:
                        where = f"{it['source']} ({it['member']})" if it.get("member") else it["source"]
                        t.add_row(where, str(it["line"]), it["reason"], it["raw"][:60])
                console.print(t)
                console.print(f"{len(o['items'])} shown of {o['total']}")

            emit(out, as_json, render_items)
            return
        out = v.to_dict()
        out["versions"] = list_versions(v.dataset)

    def render(o: dict) -> None:
        console.print(f"[bold]{o['dataset']}@{o['version'][:12]}[/]  parent: {(o['parent'] or '-')[:12]}"
                      f"  made by: {o['made_by'].get('command') or o['made_by'].get('recipe', {}).get('name', '-')}")
        console.print(f"records: {o['records']:,}   shards: {o['shards']}   bytes: {o['bytes']:,}")
        console.print(f"tokens: {_fmt_tokens(o['tokens'])}")
        console.print(f"quarantined: {o['quarantined']}  {o['quarantined_by_reason'] or ''}")
        console.print(f"rejected: {o['rejected']}  {o['rejected_by_reason'] or ''}")
        if o["duplicate_ids"]:
            console.print(f"duplicate ids: {o['duplicate_ids']}")
        t = Table("version", "parent", "created", "records", "rejected", "quarantined", title="versions")
        for r in o["versions"]:
            t.add_row(r["version"][:12], (r["parent"] or "-")[:12], str(r["created_at"])[:19], f"{r['records']:,}",
                      str(r["rejected"]), str(r["quarantined"]))
        console.print(t)

    emit(out, as_json, render)


def export_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION"),
    fmt: str = typer.Option("jsonl", "--format", help="jsonl|parquet|lerobot-v3.0|lerobot-v2.1 (robot episodes "
                            "as a LeRobot folder)|ntriples (a graph: a folder of graph.nt, ontology.nt, shapes.nt "
                            "and croissant.json)"),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (a new folder for lerobot-*)."),
    media_dir: Path | None = typer.Option(None, "--media-dir", help="Also write every media object there, "
                                          "as <ab>/<sha256> (JSONL records name theirs in media_file)."),
    as_json: bool = JsonOpt,
) -> None:
    """Write the records with ids, text, meta and token counts (and, with --media-dir, the media bytes)."""
    from ciyuan.store import resolve
    from ciyuan.store.export import export

    with errors(as_json):
        if fmt == "ntriples":
            from ciyuan.appraise.graph_card import export_graph

            res = export_graph(ref, str(out))
            emit(res, as_json, lambda o: console.print(
                f"wrote {o['files']['graph']['lines']:,} statements to {o['out']}/{o['files']['graph']['file']} "
                f"({', '.join(f['file'] for f in o['files'].values())}, croissant.json)"))
            return
        res = export(resolve(ref), fmt, str(out), media_dir=str(media_dir) if media_dir else None)
    emit(res, as_json, lambda o: console.print(f"wrote {o.get('records', o.get('episodes', 0)):,} "
                                               f"{'records' if 'records' in o else 'episodes'} to {o['out']}"))


def verify_cmd(ref: str = typer.Argument(..., help="NAME or NAME@VERSION"), as_json: bool = JsonOpt) -> None:
    """Re-hash every shard and media blob against the manifest; exit 1 naming any that changed."""
    from ciyuan.store import resolve
    from ciyuan.store.export import verify

    with errors(as_json):
        res = verify(resolve(ref))

    def render(o: dict) -> None:
        if o["ok"]:
            console.print(f"[green]ok[/]: {o['files']} files match the manifest of {o['dataset']}@{o['version'][:12]}")
        for p in o["problems"]:
            console.print(f"[red]{p['problem']}[/]: {p['path']}")

    emit(res, as_json, render)
    if not res["ok"]:
        raise typer.Exit(1)


def tokens_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION"),
    tokenizer: str | None = typer.Option(None, "--tokenizer", "-t", help="cl100k_base, qwen, tiktoken:FILE, hf:FILE"),
    schedule: str | None = typer.Option(None, "--schedule", "-s",
                                        help="A token schedule (see: ciyuan schedules), e.g. qwen2-vl-image"),
    workers: int = typer.Option(os.cpu_count() or 1, "--workers", "-w", help="Processes (default: all cores)."),
    as_json: bool = JsonOpt,
) -> None:
    """Token totals and distributions; counts (and caches, so export shows them) a new tokenizer or schedule."""
    from ciyuan.config import settings
    from ciyuan.errors import InvalidInput
    from ciyuan.store import resolve
    from ciyuan.store.token_cache import token_report

    with errors(as_json), progress(not as_json) as bar:
        if tokenizer and schedule and tokenizer != schedule:
            raise InvalidInput("give --tokenizer or --schedule, not both",
                               hint="a tokenizer name is itself a text schedule: --schedule cl100k_base")
        v = resolve(ref)
        name = schedule or tokenizer or settings().default_tokenizer
        task = bar.add_task(f"count {name}", total=v.records, extra="")
        res = token_report(v, name, workers, on_progress=lambda n: bar.advance(task, n))

    def render(o: dict) -> None:
        console.print(f"[bold]{o['dataset']}@{o['version'][:12]}[/] under [bold]{o['tokenizer']}[/] "
                      f"({o['modality']}, {o['tokenizer_version']})")
        console.print(f"records: {o['records']:,}   tokens: [bold]{o['tokens']:,}[/]   mean: {o['mean_tokens']}"
                      f"   max: {o['max_tokens']:,}")
        for key, title in (("by_language", "language"), ("by_domain", "domain")):
            t = Table(title, "tokens", "share")
            for k, n in o["distribution"][key].items():
                t.add_row(k, f"{n:,}", f"{n / max(o['tokens'], 1):.1%}")
            console.print(t)
        t = Table("tokens per record", "records", "tokens")
        for k, d in o["distribution"]["by_length"].items():
            t.add_row(k, f"{d['records']:,}", f"{d['tokens']:,}")
        console.print(t)

    emit(res, as_json, render)


def schedules_cmd(as_json: bool = JsonOpt) -> None:
    """Every token schedule: name, version, modality and what it counts (old names listed as aliases)."""
    from ciyuan.tokens import get_schedule, list_schedules, schedule_aliases

    with errors(as_json):
        rows = []
        for r in list_schedules():
            params = getattr(get_schedule(r["name"]), "params", None)
            rows.append({**r, **({"params": params} if params is not None else {})})
        for old, new in schedule_aliases().items():
            s = get_schedule(old)
            rows.append({"name": old, "version": s.version, "modality": s.modality, "alias_of": new,
                         "description": f"old name of {new} (same formula and version; listings priced under it "
                                        "keep it)"})  # fmt: skip
        res = {"schedules": rows}

    def render(o: dict) -> None:
        t = Table("name", "version", "modality", "description")
        for r in o["schedules"]:
            t.add_row(r["name"], r["version"], r["modality"], r["description"])
        console.print(t)

    emit(res, as_json, render)


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_cmd)
    app.command("datasets")(datasets_cmd)
    app.command("show")(show_cmd)
    app.command("export")(export_cmd)
    app.command("verify")(verify_cmd)
    app.command("tokens")(tokens_cmd)
    app.command("schedules")(schedules_cmd)
