"""Commands of delivery: receipts, settlement, the audit chain and the hold sweeper."""

from __future__ import annotations

from pathlib import Path

import typer

from ciyuan.cli.output import JsonOpt, console, emit, errors

receipt_app = typer.Typer(help="Signed receipts of what an entitlement delivered and charged.", no_args_is_help=True)
audit_app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)
delivery_app = typer.Typer(help="Metered delivery upkeep.", no_args_is_help=True)


def receipt_verify_cmd(
    file: Path = typer.Argument(..., help="A receipt file (GET /v1/entitlements/{id}/receipt)."),
    key: str | None = typer.Option(None, "--key", help="Pin the exchange's public key (base64) or key id."),
    as_json: bool = JsonOpt,
) -> None:
    """Check a receipt offline: exit 0 when intact (and signed by --key if given), 1 when not."""
    from ciyuan.exchange import receipts

    with errors(as_json):
        rep = receipts.verify_file(file, key)

    def render(r: dict) -> None:
        if r["ok"]:
            t = r["totals"] or {}
            console.print(f"[green]receipt valid[/]: entitlement {r['entitlement']}, {t.get('tokens')} tokens, "
                          f"{t.get('amount_text')} charged; signed by key {r['key_id']}"
                          + ("" if r["pinned"] else " (pin it with --key to check who signed)"))
        else:
            console.print(f"[red]receipt NOT valid[/]: {r['problem']}")

    emit(rep, as_json, render)
    if not rep["ok"]:
        raise typer.Exit(1)


def receipt_get_cmd(
    entitlement: str = typer.Argument(..., help="Entitlement id (ent_...)."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the receipt."),
    as_json: bool = JsonOpt,
) -> None:
    """Write an entitlement's signed receipt from this exchange's database (operator side)."""
    from ciyuan.exchange import delivery, receipts, tx

    with errors(as_json):
        p = delivery.plan(entitlement, None)
        signed = receipts.sign(tx.run(lambda sess: receipts.statement(sess, p)))
        out.write_bytes(receipts.to_bytes(signed))
    emit({"file": str(out), "totals": signed["receipt"]["totals"]}, as_json,
         lambda o: console.print(f"wrote {o['file']}"))


def settle_cmd(
    date_from: str = typer.Option(..., "--from", help="First day of the period (YYYY-MM-DD, UTC)."),
    date_to: str = typer.Option(..., "--to", help="Last day of the period (YYYY-MM-DD, UTC), included."),
    out: Path | None = typer.Option(None, "--out", help="Folder for the statements (default: home/settlements)."),
    as_json: bool = JsonOpt,
) -> None:
    """Per-provider statements (tokens per listing, gross, fee, net) that tie to the ledger; exit 1 if not."""
    from ciyuan.exchange import settlement

    with errors(as_json):
        rep = settlement.settle(date_from, date_to, out_dir=out)

    def render(r: dict) -> None:
        for st in r["statements"]:
            who, per = st["provider_name"] or st["provider_id"], st["period"]
            console.print(f"[bold]{who}[/] {per['from']}..{per['to']}  statement {st['statement_id'][:16]}")
            for line in st["lines"]:
                console.print(f"  {line['dataset']} ({line['listing_id']}): {line['tokens']:,} tokens in "
                              f"{line['sales']} sale(s); gross {line['gross_text']} fee {line['fee_text']} "
                              f"net {line['net_text']} {line['currency']}")
        for cur, t in r["tie"].items():
            mark = "[green]ties to the ledger[/]" if t["ok"] else "[red]DOES NOT tie to the ledger[/]"
            console.print(f"{cur}: {mark} (net {t['statements_net']} vs {t['ledger_provider_credits']}, "
                          f"fees {t['statements_fee']} vs {t['ledger_platform_fees']})")

    emit(rep, as_json, render)
    if not rep["ok"]:
        raise typer.Exit(1)


def audit_verify_cmd(as_json: bool = JsonOpt) -> None:
    """Log ledger transfers not yet in the chain, then walk the whole chain; exit 1 on any break."""
    from ciyuan.exchange import audit, tx

    with errors(as_json):
        added = tx.run(audit.sync_ledger)
        rep = tx.run(audit.verify)
    rep["synced"] = added

    def render(r: dict) -> None:
        if r["ok"]:
            console.print(f"[green]audit chain intact[/]: {r['entries']} entries, head {r['head'][:16]}")
        for pr in r["problems"]:
            console.print(f"[red]broken[/] at {pr['seq']}: {pr['problem']}")

    emit(rep, as_json, render)
    if not rep["ok"]:
        raise typer.Exit(1)


def sweep_cmd(as_json: bool = JsonOpt) -> None:
    """Charge delivered-but-unacknowledged batches past their deadline (their holds are posted)."""
    from ciyuan.exchange import delivery

    with errors(as_json):
        rep = delivery.sweep()
    emit(rep, as_json, lambda o: console.print(f"charged {o['posted']} expired batch(es), voided {o['voided']}"))


def register(app: typer.Typer) -> None:
    receipt_app.command("verify")(receipt_verify_cmd)
    receipt_app.command("get")(receipt_get_cmd)
    audit_app.command("verify")(audit_verify_cmd)
    delivery_app.command("sweep")(sweep_cmd)
    app.command("settle")(settle_cmd)
    app.add_typer(receipt_app, name="receipt")
    app.add_typer(audit_app, name="audit")
    app.add_typer(delivery_app, name="delivery")
