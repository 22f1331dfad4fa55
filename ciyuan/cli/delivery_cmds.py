"""Commands of delivery: receipts, settlement, the audit chain and the hold sweeper."""

from __future__ import annotations

from pathlib import Path

import typer

from ciyuan.cli.output import JsonOpt, console, emit, errors

receipt_app = typer.Typer(help="Signed receipts of what an entitlement delivered and charged.", no_args_is_help=True)
audit_app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)
delivery_app = typer.Typer(help="Metered delivery upkeep.", no_args_is_help=True)


def receipt_verify_cmd(
    file: Path = typer.Argument(..., help="A receipt, settlement statement or audit checkpoint file."),
    key: str | None = typer.Option(None, "--key", help="Pin the exchange's public key (base64) or key id."),
    exchange: str | None = typer.Option(None, "--exchange", help="Check against the key this exchange server "
                                        "publishes (GET URL/v1/receipts/key)."),
    as_json: bool = JsonOpt,
) -> None:
    """Check a receipt offline against the exchange's published key: exit 0 when intact and signed by it, 1 when not.

    The key is --key if given, else the one --exchange URL publishes, else this home's exchange key;
    a receipt signed by any other key (re-signed after a change) fails.
    """
    from ciyuan.ledger import signing

    with errors(as_json):
        rep = signing.verify_file(file, key, exchange=exchange)

    def render(r: dict) -> None:
        if r["ok"] and r.get("kind") == "receipt":
            t = r["totals"] or {}
            console.print(f"[green]receipt valid[/]: entitlement {r['entitlement']}, {t.get('tokens')} tokens, "
                          f"{t.get('amount_text')} charged; signed by the exchange key {r['key_id']} "
                          f"({r['key_source']})")
        elif r["ok"]:
            console.print(f"[green]{r['kind']} valid[/]: signed by the exchange key {r['key_id']} ({r['key_source']})")
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
    from ciyuan.db import tx
    from ciyuan.delivery import receipts
    from ciyuan.delivery.plan import plan
    from ciyuan.ledger import signing

    with errors(as_json):
        p = plan(entitlement, None)
        signed = signing.sign(tx.run(lambda sess: receipts.statement(sess, p)))  # stores its audit checkpoint
        out.write_bytes(signing.to_bytes(signed))
    emit({"file": str(out), "totals": signed["receipt"]["totals"]}, as_json,
         lambda o: console.print(f"wrote {o['file']}"))


def settle_cmd(
    date_from: str | None = typer.Option(None, "--from",
                                         help="First day of the period (YYYY-MM-DD, UTC; default: 1st of this month)."),
    date_to: str | None = typer.Option(None, "--to", help="Last day of the period (YYYY-MM-DD, UTC), included "
                                       "(default: today)."),
    out: Path | None = typer.Option(None, "--out", help="Folder for the statements (default: home/settlements)."),
    as_json: bool = JsonOpt,
) -> None:
    """Per-provider statements (tokens per listing, gross, fee, net) that tie to the ledger; exit 1 if not."""
    from datetime import UTC, datetime

    from ciyuan.market import settlement

    today = datetime.now(UTC).date()
    date_from = date_from or today.replace(day=1).isoformat()
    date_to = date_to or today.isoformat()
    with errors(as_json):
        rep = settlement.settle(date_from, date_to, out_dir=out)

    def render(r: dict) -> None:
        if not r["statements"]:
            console.print(f"no sales from {date_from} to {date_to}: no statements written "
                          "(widen the period with --from and --to)")
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


def audit_verify_cmd(
    checkpoint: list[Path] = typer.Option([], "--checkpoint", help="A checkpoint held outside the database: a "
                                          "file from `audit checkpoint`, a receipt or a settlement statement "
                                          "(repeatable)."),
    key: str | None = typer.Option(None, "--key", help="Check checkpoints against this public key (default: the "
                                   "home's exchange key)."),
    as_json: bool = JsonOpt,
) -> None:
    """Prove the ledger by the audit chain and the chain by signed checkpoints (read-only); exit 1 on any break."""
    from ciyuan.db import tx
    from ciyuan.ledger import audit

    with errors(as_json):
        given = [cp for f in checkpoint for cp in audit.load_checkpoints(f)]
        rep = tx.run(lambda sess: audit.verify(sess, checkpoints=given, key=key))

    def render(r: dict) -> None:
        c = r["checkpoints"]
        if r["ok"]:
            console.print(f"[green]audit chain intact[/]: {r['entries']} entries, {r['transfers']} transfers all "
                          f"logged and unchanged, head {r['head_seq']} {r['head'][:16]}; {c['checked']} signed "
                          f"checkpoint(s), latest at entry {c['latest_seq']}")
            if not c["covers_head"]:
                console.print("[yellow]note:[/] no signed checkpoint covers the head; entries after the latest "
                              "checkpoint could be cut unnoticed (run `ciyuan audit checkpoint`)")
        for pr in r["problems"]:
            console.print(f"[red]broken[/] at {pr['seq']}: {pr['problem']}")
        if r["problems_total"] > len(r["problems"]):
            console.print(f"[red]... and {r['problems_total'] - len(r['problems'])} more problems[/]")

    emit(rep, as_json, render)
    if not rep["ok"]:
        raise typer.Exit(1)


def audit_checkpoint_cmd(
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the signed checkpoint here (keep it "
                                    "outside this machine)."),
    as_json: bool = JsonOpt,
) -> None:
    """Sign the audit log's head (seq and hash) with the exchange key and store it; verify checks the log against it."""
    from ciyuan.db import tx
    from ciyuan.ledger import audit, signing

    with errors(as_json):
        signed = tx.run(audit.checkpoint)
        if out is not None:
            out.write_bytes(signing.to_bytes(signed))
    rep = dict(signed["checkpoint"], file=str(out) if out else None, key_id=signed["signature"]["key_id"])
    emit(rep, as_json, lambda r: console.print(f"checkpoint at entry {r['seq']} {r['hash'][:16]} signed by "
                                               f"{r['key_id']}" + (f", written to {r['file']}" if r["file"] else "")))


def audit_adopt_cmd(as_json: bool = JsonOpt) -> None:
    """Operator step for a home older than the audit log: log its unlogged transfers; not part of verify.

    Only transfers older than the first one in the chain are adopted; later unlogged ones were not
    written by the ledger and are refused (listed) for you to investigate. Exit 1 if any was refused.
    """
    from ciyuan.db import tx
    from ciyuan.ledger import ledger

    with errors(as_json):
        rep = tx.run(ledger.adopt)

    def render(r: dict) -> None:
        console.print(f"adopted {len(r['adopted'])} transfer(s) into the audit log"
                      + (f": {', '.join(r['adopted'][:20])}" + (" ..." if len(r["adopted"]) > 20 else "")
                         if r["adopted"] else "")
                      + f"; logged {r['expiries']} expired hold(s)")
        if r["refused"]:
            console.print(f"[red]refused {len(r['refused'])}[/] transfer(s) made after the log began but not in it "
                          f"(not written by the ledger): {', '.join(r['refused'][:20])}")

    emit(rep, as_json, render)
    if rep["refused"]:
        raise typer.Exit(1)


def sweep_cmd(as_json: bool = JsonOpt) -> None:
    """Charge delivered-but-unacknowledged batches past their deadline (their holds are posted)."""
    from ciyuan.delivery import stream

    with errors(as_json):
        rep = stream.sweep()
    emit(rep, as_json, lambda o: console.print(f"charged {o['posted']} expired batch(es), voided {o['voided']}"))


def register(app: typer.Typer) -> None:
    receipt_app.command("verify")(receipt_verify_cmd)
    receipt_app.command("get")(receipt_get_cmd)
    audit_app.command("verify")(audit_verify_cmd)
    audit_app.command("checkpoint")(audit_checkpoint_cmd)
    audit_app.command("adopt")(audit_adopt_cmd)
    delivery_app.command("sweep")(sweep_cmd)
    app.command("settle")(settle_cmd)
    app.add_typer(receipt_app, name="receipt")
    app.add_typer(audit_app, name="audit")
    app.add_typer(delivery_app, name="delivery")
