"""Commands of the value layer: appraise a version, show its appraisal, export its Croissant card."""

from __future__ import annotations

import typer
from rich.table import Table

from ciyuan.cli.output import JsonOpt, LangOpt, console, emit, err_console, errors, report_lang


def ci_text(m: dict) -> str:
    """A 95 % interval at the precision of its mean (four places), or why there is none."""
    if m.get("low") is None or m.get("high") is None:
        return f"(one seed of {m.get('n', 1)}: no interval)"
    return f"95% CI [{m['low']:.4f}, {m['high']:.4f}]"


def _render(ap: dict) -> None:
    p = ap["price"]
    tok = ap["tokens"]
    console.print(f"[bold]{ap['dataset']}@{ap['version'][:12]}[/]  appraised {ap['appraised_at']}")
    console.print(f"tokens ({ap['tokenizer']}): {tok['total']:,} total, {tok['unique']:,} unique")
    t = Table("indicator", "score", show_header=True)
    for name, ind in ap["quality"]["indicators"].items():
        t.add_row(name, "n/a" if ind["score"] is None else f"{ind['score']:.3f}")
    t.add_row("[bold]quality Q[/]", f"{ap['quality']['score']:.3f}")
    t.add_row("[bold]uniqueness U[/]", f"{ap['uniqueness']['score']:.3f}")
    console.print(t)
    for kind, u in ap.get("utility", {}).items():
        if kind == "retrieval":
            recall = ", ".join(f"{mode} {r['recall@5']:.3f}" for mode, r in u["recall"].items())
            console.print(f"retrieval recall@5 ({u['questions']} questions from held-out records): {recall}")
            continue
        lift = u.get("relative_drop") or u.get("lift")
        if lift and lift.get("mean") is not None:
            console.print(f"utility ({kind}): lift {lift['mean']:.4f}  {ci_text(lift)}")
        else:
            console.print(f"utility ({kind}): {u.get('why', 'not measured')}")
    rv = ap.get("record_values")
    if rv:
        console.print(f"record values: {rv['negative']} of {rv['records']} negative (likely mislabelled or harmful)")
    f = p["factors"]
    console.print(
        f"[bold green]suggested price[/]: {p['price_per_mtok']} {p['currency']} per million tokens "
        f"({p['formula']}: base {p['base_rate_minor']} x Q {f['quality']:.3f} x U {f['uniqueness']:.3f} "
        f"x utility {f['utility']:.3f})"
    )


def appraise_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    eval_file: str | None = typer.Option(None, "--eval", help="Target-domain text (.txt paragraphs or .jsonl)."),
    baseline: str | None = typer.Option(None, "--baseline", help="Baseline dataset for the perplexity lift."),
    provider: str | None = typer.Option(None, "--provider", help="Who will list it (own listings are excluded)."),
    label_field: str = typer.Option("label", "--label-field", help="Meta field holding a class label."),
    schedule: str | None = typer.Option(None, "--schedule",
                                        help="Token schedule (default: as ingest counts the records)."),
    features: str = typer.Option("hashed", "--features", help="Labelled-utility features: hashed | minilm | auto."),
    report: str | None = typer.Option(None, "--report", help="Also write the offline HTML report here."),
    lang: str | None = LangOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Measure quality, uniqueness and utility, value records and suggest a price; stored with the version."""
    from ciyuan.appraise import engine

    with errors(as_json):
        ap = engine.appraise(ref, eval_file=eval_file, baseline=baseline, provider=provider, label_field=label_field,
                             tokenizer=schedule, features=features)  # fmt: skip
        if report:
            from ciyuan.appraise.report import write

            write(ap, report, report_lang(lang))
    emit(ap, as_json, _render)


def appraisal_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    report: str | None = typer.Option(None, "--report", help="Write the offline HTML report here."),
    lang: str | None = LangOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show the stored appraisal of a version (and optionally write its HTML report)."""
    from ciyuan.appraise import engine

    with errors(as_json):
        ap = engine.load(ref)
        if report:
            from ciyuan.appraise.report import write

            write(ap, report, report_lang(lang))
    emit(ap, as_json, _render)


def card_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION."),
    out: str = typer.Option(..., "--out", "-o", help="Where to write the Croissant JSON-LD."),
    base_url: str | None = typer.Option(
        None, "--base-url",
        help="URL under which you serve the version folder (shards at URL/shards/...). A listing's card, with "
        "URLs that answer at the exchange, is GET /v1/listings/ID/card.",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Export the version's Croissant 1.0 card (RAI fields, tokens and appraisal facts)."""
    from pathlib import Path

    from ciyuan.appraise import engine
    from ciyuan.appraise.card import shards_dir_for

    with errors(as_json):
        card = engine.card(ref, out=out, base_url=base_url)
    links = Path(out).parent / shards_dir_for(out)
    if base_url is None and links.is_dir():
        # mlcroissant reads a FileSet only from the card's own folder: the links make this copy load anywhere
        err_console.print(f"note: the shards are linked beside the card in {links}; keep that folder with the card "
                          f"(each shard is also named by its absolute path and sha256)")  # fmt: skip
    shards = sum(1 for f in card["distribution"] if str(f.get("@id", "")).startswith("shard-"))

    def render(c: dict) -> None:
        console.print(f"[bold green]card[/] of {c['name']} written to {out} "
                      f"({shards} shards, record set 'records')")  # fmt: skip

    emit(card, as_json, render)


def catalog_add_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION of the listed version."),
    listing: str = typer.Option(..., "--listing", help="Listing id."),
    provider: str = typer.Option(..., "--provider", help="Provider who listed it."),
    as_json: bool = JsonOpt,
) -> None:
    """Add a listed version's MinHash signatures to the catalog index (the exchange does this on listing)."""
    from ciyuan.appraise import engine

    with errors(as_json):
        out = engine.register_listing(ref, listing, provider)
    emit(out, as_json, lambda o: console.print(f"indexed {o['added']:,} signatures for listing {o['listing_id']}"))


def register(app: typer.Typer) -> None:
    app.command("appraise")(appraise_cmd)
    app.command("appraisal")(appraisal_cmd)
    app.command("card")(card_cmd)
    app.command("catalog-add", hidden=True)(catalog_add_cmd)
