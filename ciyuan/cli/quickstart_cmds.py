"""``ciyuan quickstart``: the main job of ``make run``: a living demo exchange on the embedded defaults.

It builds the exchange from the bundled sample (ingest, curate, appraise, publish; a provider, a
buyer with a deposit and the operator, each with a fresh key printed once), then serves the API and
the web pages. Beside the text sample it lists two small media sets drawn and synthesised at run
time (:mod:`ciyuan.data.media_sample`, CC0-1.0): wind-farm pictures with captions (``image-caption``
recipe, priced under ``qwen2-vl-image``) and alarm sounds with transcripts (``speech-asr``,
``whisper-audio``). Every step is idempotent, so running it twice reuses what the first run made.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import typer

from ciyuan.cli.output import JsonOpt, console, emit, errors

SAMPLE_DATASET = "sample-maintenance"
# the media sets: (dataset, folder under the media sample, recipe, token schedule, card)
MEDIA_SETS = (("demo-wind-pictures", "images", "image-caption", "qwen2-vl-image", "IMAGE_CARD"),
              ("demo-alarm-sounds", "speech", "speech-asr", "whisper-audio", "SPEECH_CARD"))  # fmt: skip
PROVIDER, BUYER, OPERATOR = "demo-provider", "demo-buyer", "operator"
DEPOSIT = "1000.00"


def _ensure_account(name: str, role: str) -> dict:
    from ciyuan.db import tx
    from ciyuan.errors import NotFound
    from ciyuan.market import accounts

    def work(sess):
        try:
            return accounts.get_account(sess, name).to_dict()
        except NotFound:
            return accounts.create_account(sess, name, role).to_dict()

    return tx.run(work)


def _new_key(name: str) -> str:
    from ciyuan.db import tx
    from ciyuan.market import accounts

    return tx.run(lambda sess: accounts.create_key(sess, name)[1])


def _listing_for(version_id: str, dataset: str = SAMPLE_DATASET) -> dict | None:
    from ciyuan.db import tx
    from ciyuan.market import catalog

    def work(sess):
        found = catalog.search(sess, q=dataset, limit=100)
        for item in found.get("items", found.get("listings", [])):
            if item.get("version") == version_id:
                return item
        return None

    return tx.run(work)


def build_demo(on_step: Callable[[str], None] | None = None) -> dict:
    """Build (or find) the demo exchange and return what was made, with fresh keys."""
    from ciyuan.curate.curate import curate
    from ciyuan.data import EVAL_TEXT, SAMPLE_DIR, sample_files
    from ciyuan.db import tx
    from ciyuan.ingest.run import ingest
    from ciyuan.ledger import ledger
    from ciyuan.market import listings
    from ciyuan.store import resolve
    from ciyuan.store.token_cache import token_report

    def step(text: str) -> None:
        if on_step:
            on_step(text)

    step("ingest the bundled sample")
    ing = ingest([str(p) for p in sample_files()], SAMPLE_DATASET, license="CC-BY-4.0",
                 domain="wind-power-maintenance", rename={"lang": "language"},
                 card=SAMPLE_DIR.parent / "sample_card.yaml")
    step("curate it (normalise, language, quality, PII, dedup)")
    cur = curate(f"{SAMPLE_DATASET}@{ing['version']}", str(SAMPLE_DIR.parent / "sample_recipe.yaml"))
    ref = f"{SAMPLE_DATASET}@{cur['version']}"
    tokens = token_report(resolve(ref), "cl100k_base")
    step("accounts: provider, buyer, operator")
    provider = _ensure_account(PROVIDER, "provider")
    buyer = _ensure_account(BUYER, "buyer")
    operator = _ensure_account(OPERATOR, "operator")
    step("appraise: quality, uniqueness, utility, price")
    from ciyuan.appraise import appraise

    appraisal = appraise(ref, eval_file=str(EVAL_TEXT), provider=provider["id"])
    step("publish the curated version")
    listing = _listing_for(cur["version"])
    if listing is None:
        listing = listings.publish(ref, provider=provider["id"], price_per_mtok="suggested", currency="CNY",
                                   license="CC-BY-4.0", sample=5)  # fmt: skip
    media = _build_media(provider["id"], step)
    step(f"deposit {DEPOSIT} CNY for the buyer")
    from ciyuan.ledger.money import parse_amount

    tx.run(lambda s: ledger.deposit(s, f"quickstart:deposit:{buyer['id']}", buyer["id"],
                                    parse_amount(DEPOSIT, "CNY"), "CNY"))
    keys = {PROVIDER: _new_key(PROVIDER), BUYER: _new_key(BUYER), OPERATOR: _new_key(OPERATOR)}
    return {
        "ingest": ing,
        "curate": {k: cur[k] for k in ("version", "kept", "rejected", "changed", "tokens_before", "tokens_after")},
        "tokens": tokens,
        "appraisal": {k: appraisal[k] for k in ("tokens", "uniqueness", "price") if k in appraisal},
        "listing": listing,
        "media": media,
        "accounts": {"provider": provider, "buyer": buyer, "operator": operator},
        "keys": keys,
    }


def _build_media(provider_id: str, step: Callable[[str], None]) -> list[dict]:
    """Write the media sample under the home, then ingest, curate, appraise and list each set."""
    from ciyuan.appraise import appraise
    from ciyuan.config import settings
    from ciyuan.curate.curate import curate
    from ciyuan.data import media_sample
    from ciyuan.ingest.run import ingest
    from ciyuan.market import listings

    step("media sample: draw the pictures and synthesise the sounds (CC0-1.0)")
    folders = media_sample.write_media_sample(settings().home / "demo" / "media")
    out = []
    for dataset, folder, recipe, schedule, card in MEDIA_SETS:
        step(f"{dataset}: ingest, curate ({recipe}), appraise and list under {schedule}")
        ing = ingest([str(folders[folder])], dataset, license=media_sample.LICENSE, domain="wind-power-maintenance",
                     card=getattr(media_sample, card))  # fmt: skip
        cur = curate(f"{dataset}@{ing['version']}", recipe)
        ref = f"{dataset}@{cur['version']}"
        appraise(ref, provider=provider_id, tokenizer=schedule)
        listing = _listing_for(cur["version"], dataset)
        if listing is None:
            listing = listings.publish(ref, provider=provider_id, price_per_mtok="suggested", currency="CNY",
                                       schedule=schedule, license=media_sample.LICENSE, sample=6)  # fmt: skip
        out.append({"dataset": dataset, "records": ing["records"], "kept": cur["kept"], "rejected": cur["rejected"],
                    "schedule": schedule, "listing": listing})  # fmt: skip
    return out


def _render(o: dict) -> None:
    ing, cur, rep, lst = o["ingest"], o["curate"], o["tokens"], o["listing"]
    console.print(f"[bold]dataset[/] {ing['dataset']}: ingested {ing['records']:,} records "
                  f"({ing['quarantined']} quarantined: {ing['quarantined_by_reason']})")
    console.print(f"[bold]curated[/] @{cur['version'][:12]}: kept {cur['kept']:,}, rejected {cur['rejected']:,}, "
                  f"changed {cur['changed']:,}; tokens {cur['tokens_before']:,} -> {cur['tokens_after']:,}")
    console.print(f"[bold]token report[/] ({rep['tokenizer']} {rep['tokenizer_version']}): "
                  f"[bold]{rep['tokens']:,}[/] tokens in {rep['records']:,} records, mean {rep['mean_tokens']}")
    for k, n in rep["distribution"]["by_language"].items():
        console.print(f"    language {k:8s} {n:>10,} tokens")
    console.print(f"[bold]listing[/] {lst['id']}: {lst.get('price_per_mtok')} {lst.get('currency')} per million "
                  f"tokens, {lst.get('tokens', 0):,} tokens")
    for m in o.get("media", []):
        ml = m["listing"]
        console.print(f"[bold]listing[/] {ml['id']}: {m['dataset']} ({m['kept']} of {m['records']} records kept), "
                      f"{ml.get('price_per_mtok')} {ml.get('currency')} per million {m['schedule']} tokens, "
                      f"{ml.get('tokens', 0):,} tokens")
    console.print("\n[bold]keys[/] (shown once; a new set is made on every run, earlier ones stay valid):")
    for name, key in o["keys"].items():
        console.print(f"    {name:14s} {key}")


def _announce(url: str) -> None:
    """Said only once the port accepts connections (see ``ciyuan.cli.serving``)."""
    console.print(f"\n[bold green]serving[/] {url}   (API docs: {url}/docs)")
    console.print(f"sign in on {url}/buyer with the demo-buyer key, on {url}/provider with the "
                  "demo-provider key, on /operator with the operator key. Ctrl-C stops.")


def quickstart_cmd(
    home: Path | None = typer.Option(None, "--home", help="Exchange home (default: $CIYUAN_HOME or ~/.ciyuan)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to serve on."),
    port: int = typer.Option(8000, "--port", help="Port to serve on."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve the exchange after building it."),
    as_json: bool = JsonOpt,
) -> None:
    """Build a demo exchange from the bundled sample, then serve the API and web pages."""
    if home is not None:
        os.environ["CIYUAN_HOME"] = str(home.expanduser().resolve())
        from ciyuan import db
        from ciyuan.config import settings

        settings.cache_clear()
        db.dispose_all()
    with errors(as_json):
        if serve:  # before minutes of building, not after
            from ciyuan.cli.serving import check_port_free

            check_port_free(host, port)
        out = build_demo(on_step=None if as_json else lambda s: console.print(f"[bold cyan]>[/] {s}"))
    url = f"http://{host}:{port}" if serve else None
    out["url"] = url
    emit(out, as_json, _render)
    if serve:
        import sys

        from ciyuan.api.app import create_app
        from ciyuan.cli import serving

        sys.stdout.flush()
        with errors(as_json):
            serving.run(create_app(), host, port, on_ready=None if as_json else lambda: _announce(url))


def sample_cmd(
    out: Path = typer.Argument(Path("sample"), help="Folder to write the sample into (created if missing)."),
    as_json: bool = JsonOpt,
) -> None:
    """Write the bundled sample (logs, Q&A pairs, broken lines, a card, a recipe, held-out text) to a folder.

    So the README's provider session runs on real files a user can open, edit and replace with their own.
    """
    from ciyuan.data import write_sample

    with errors(as_json):
        files = write_sample(out)
    emit({"folder": str(out.resolve()), "files": [f.name for f in files]}, as_json,
         lambda d: console.print(f"[bold green]wrote[/] {len(d['files'])} files to {d['folder']}: "
                                 + ", ".join(d["files"])))


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart_cmd)
    app.command("sample")(sample_cmd)
