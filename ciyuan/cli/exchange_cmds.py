"""Commands of the exchange: serve, account, key, publish, listing, ledger."""

from __future__ import annotations

import secrets
from collections.abc import Callable

import typer
from rich.table import Column, Table

from ciyuan.cli.output import JsonOpt, console, emit, errors

account_app = typer.Typer(help="Market accounts: providers, buyers and the operator.", no_args_is_help=True)
key_app = typer.Typer(help="API keys (shown once, stored only as a hash).", no_args_is_help=True)
ledger_app = typer.Typer(help="The double-entry ledger: deposits, balances, consistency check.", no_args_is_help=True)
listing_app = typer.Typer(help="Listings: list, show, change price, delist, relist.", no_args_is_help=True)


def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on."),
    port: int = typer.Option(8000, "--port", help="TCP port."),
    workers: int = typer.Option(1, "--workers", help="uvicorn worker processes."),
    as_json: bool = JsonOpt,
) -> None:
    """Run the HTTP API (OpenAPI at /openapi.json, docs at /docs); says "serving" once the port accepts."""
    import uvicorn

    from ciyuan import db
    from ciyuan.cli import serving

    url = f"http://{host}:{port}"

    def ready(n: int = workers) -> None:
        import json
        import sys

        if as_json:  # one line, so a script can read it with readline()
            sys.stdout.write(json.dumps({"serving": url, "docs": f"{url}/docs", "workers": n}) + "\n")
        else:
            console.print(f"[bold green]serving[/] {url}   (API docs: {url}/docs)")
        sys.stdout.flush()

    with errors(as_json):
        serving.check_port_free(host, port)
        db.engine()  # migrate before accepting requests
        if workers > 1:
            ready()
            uvicorn.run("ciyuan.api.app:create_app", factory=True, host=host, port=port, workers=workers)
        else:
            from ciyuan.api.app import create_app

            serving.run(create_app(), host, port, log_level="info", on_ready=ready)


def account_create_cmd(
    name: str = typer.Argument(..., help="Account name."),
    role: str = typer.Option(..., "--role", help="provider | buyer | operator"),
    as_json: bool = JsonOpt,
) -> None:
    """Create a market account."""
    from ciyuan.db import tx
    from ciyuan.market import accounts

    with errors(as_json):
        acc = tx.run(lambda s: accounts.create_account(s, name, role).to_dict())
    emit(
        acc, as_json, lambda a: console.print(f"[green]created[/] {a['role']} account [bold]{a['name']}[/] ({a['id']})")
    )


def account_list_cmd(as_json: bool = JsonOpt) -> None:
    """List market accounts."""
    from ciyuan.db import tx
    from ciyuan.market import accounts

    with errors(as_json):
        rows = tx.run(lambda s: [a.to_dict() for a in accounts.list_accounts(s)])

    def render(rs: list[dict]) -> None:
        t = Table("name", "role", "id", "created")
        for r in rs:
            t.add_row(r["name"], r["role"], r["id"], r["created_at"].isoformat(timespec="seconds"))
        console.print(t)

    emit(rows, as_json, render)


def key_create_cmd(
    account: str = typer.Argument(..., help="Account name or id."),
    scopes: str | None = typer.Option(None, "--scopes", help="Comma-separated scopes (default: all of the role's)."),
    expires: str | None = typer.Option(None, "--expires", help="e.g. 30d, 12h, or an ISO date-time."),
    as_json: bool = JsonOpt,
) -> None:
    """Create an API key; the secret is printed once and never stored."""
    from ciyuan.db import tx
    from ciyuan.market import accounts

    with errors(as_json):
        when = accounts.parse_expiry(expires)
        chosen = [x.strip() for x in scopes.replace(" ", ",").split(",") if x.strip()] if scopes else None
        info, secret = tx.run(lambda s: accounts.create_key(s, account, chosen, when))
    out = {**info, "key": secret}

    def render(o: dict) -> None:
        console.print(f"[green]key {o['id']}[/] for {o['account']} ({', '.join(o['scopes'])})")
        console.print(f"[bold]{o['key']}[/]")
        console.print("[yellow]store it now: it is shown only once[/]")

    emit(out, as_json, render)


def key_revoke_cmd(key_id: str = typer.Argument(..., help="Key id (key_...)."), as_json: bool = JsonOpt) -> None:
    """Revoke a key at once."""
    from ciyuan.db import tx
    from ciyuan.market import accounts

    with errors(as_json):
        info = tx.run(lambda s: accounts.revoke_key(s, key_id))
    emit(info, as_json, lambda o: console.print(f"[green]revoked[/] {o['id']} of {o['account']}"))


def key_list_cmd(account: str = typer.Argument(...), as_json: bool = JsonOpt) -> None:
    """List an account's keys (hints only, never secrets)."""
    from ciyuan.db import tx
    from ciyuan.market import accounts

    with errors(as_json):
        rows = tx.run(lambda s: accounts.list_keys(s, account))
    emit(rows, as_json, None)


def publish_cmd(
    ref: str = typer.Argument(..., help="NAME or NAME@VERSION to sell."),
    price_per_mtok: str = typer.Option(
        ..., "--price-per-mtok", "--price", help="Price per million tokens in major units, or 'suggested'."
    ),
    currency: str = typer.Option("CNY", "--currency"),
    schedule: str | None = typer.Option(None, "--schedule", help="Token schedule (default: cl100k_base)."),
    tiers: str | None = typer.Option(None, "--tiers", help="JSON/YAML file of volume tiers."),
    license: str = typer.Option("", "--license", help="SPDX id or licence text."),
    sample: int = typer.Option(5, "--sample", help="Free sample records shown in the catalog (0-100)."),
    provider: str | None = typer.Option(None, "--provider", help="Provider account that sells it (required)."),
    as_json: bool = JsonOpt,
) -> None:
    """Publish a version as a listing with an arbitrage-free price schedule (one active listing per version)."""
    from ciyuan.errors import InvalidInput
    from ciyuan.market import listings
    from ciyuan.market.pricing import load_tiers_file

    with errors(as_json):
        if not provider:  # checked here, not by typer, so --json still answers JSON
            raise InvalidInput(
                "publish needs the provider account that sells the version",
                hint="add --provider NAME (create one: ciyuan account create --role provider NAME)",
                code="no_provider",
            )
        tier_list, mode = load_tiers_file(tiers) if tiers else ([], "graduated")
        out = listings.publish(
            ref,
            provider=provider,
            price_per_mtok=price_per_mtok,
            currency=currency,
            schedule=schedule,
            tiers=tier_list,
            mode=mode,
            license=license,
            sample=sample,
        )

    def render(o: dict) -> None:
        console.print(
            f"[green]listed[/] {o['dataset']}@{o['version'][:12]} as [bold]{o['id']}[/]: "
            f"{o['records']:,} records, {o['tokens']:,} tokens ({o['schedule']}), "
            f"{o['price_per_mtok']} {o['currency']}/Mtok, all for {o['full_price']} {o['currency']}"
        )

    emit(out, as_json, render)


def _render_listing(verb: str) -> Callable[[dict], None]:
    def render(o: dict) -> None:
        console.print(
            f"[green]{verb}[/] [bold]{o['id']}[/] ({o['dataset']}@{o['version'][:12]}): {o['status']}, "
            f"price version {o['price_version']} at {o['price_per_mtok']} {o['currency']}/Mtok"
        )

    return render


def listing_list_cmd(
    provider: str | None = typer.Option(None, "--provider", help="Only this provider's listings (default: all)."),
    status: str | None = typer.Option(None, "--status", help="active | delisted (default: both)."),
    as_json: bool = JsonOpt,
) -> None:
    """List listings, delisted ones included, with their price version."""
    from ciyuan.db import tx
    from ciyuan.market import listings

    with errors(as_json):
        rows = tx.run(lambda s: listings.provider_listings(s, provider, status))

    def render(rs: list[dict]) -> None:
        # ids, states and prices stay whole (copyable); the dataset column gives way on narrow terminals
        t = Table(Column("listing", no_wrap=True), "dataset@version", "provider", Column("status", no_wrap=True),
                  "price ver.", Column("per Mtok", no_wrap=True), "tokens")  # fmt: skip
        for r in rs:
            price = f"{r['price_per_mtok']} {r['currency']}"
            t.add_row(r["id"], f"{r['dataset']}@{r['version'][:12]}", r["provider"], r["status"],
                      str(r["price_version"]), price, f"{r['tokens']:,}")  # fmt: skip
        console.print(t)

    emit(rows, as_json, render)


def listing_show_cmd(listing: str = typer.Argument(..., help="Listing id (lst_...)."), as_json: bool = JsonOpt) -> None:
    """A listing with its price history (every price version, oldest first)."""
    from ciyuan.db import tx
    from ciyuan.market import listings

    with errors(as_json):
        out = tx.run(lambda s: listings.own_listing(s, listing, None))

    def render(o: dict) -> None:
        _render_listing("listing")(o)
        t = Table("price version", "per Mtok", "tiers", "since")
        for p in o["price_history"]:
            tiers = ", ".join(f"{x['from_tokens']:,}+: {x['price_per_mtok']}" for x in p["price"]["tiers"][1:]) or "—"
            t.add_row(str(p["version"]), f"{p['price_per_mtok']} {p['currency']}", tiers,
                      p["created_at"].isoformat(timespec="seconds"))  # fmt: skip
        console.print(t)

    emit(out, as_json, render)


def listing_price_cmd(
    listing: str = typer.Argument(..., help="Listing id (lst_...)."),
    price_per_mtok: str = typer.Option(
        ..., "--price-per-mtok", "--price", help="New price per million tokens in major units, or 'suggested'."
    ),
    tiers: str | None = typer.Option(None, "--tiers", help="JSON/YAML file of volume tiers."),
    provider: str | None = typer.Option(None, "--provider", help="Act as this provider (checked against the listing)."),
    as_json: bool = JsonOpt,
) -> None:
    """Change a listing's price: a new price version; quotes already made keep theirs."""
    from ciyuan.market import listings
    from ciyuan.market.pricing import load_tiers_file

    with errors(as_json):
        tier_list, mode = load_tiers_file(tiers) if tiers else ([], "graduated")
        out = listings.change_price(listing, actor=provider, price_per_mtok=price_per_mtok, tiers=tier_list, mode=mode)
    emit(out, as_json, _render_listing("repriced"))


def listing_delist_cmd(
    listing: str = typer.Argument(..., help="Listing id (lst_...)."),
    provider: str | None = typer.Option(None, "--provider", help="Act as this provider (checked against the listing)."),
    as_json: bool = JsonOpt,
) -> None:
    """Stop selling a listing: no new quotes or orders, hidden from the catalog; entitlements keep working."""
    from ciyuan.market import listings

    with errors(as_json):
        out = listings.delist(listing, actor=provider)
    emit(out, as_json, _render_listing("delisted"))


def listing_relist_cmd(
    listing: str = typer.Argument(..., help="Listing id (lst_...)."),
    provider: str | None = typer.Option(None, "--provider", help="Act as this provider (checked against the listing)."),
    as_json: bool = JsonOpt,
) -> None:
    """Offer a delisted listing again, at its current price version."""
    from ciyuan.market import listings

    with errors(as_json):
        out = listings.relist(listing, actor=provider)
    emit(out, as_json, _render_listing("relisted"))


def deposit_cmd(
    account: str = typer.Argument(..., help="Buyer account name or id."),
    amount: str = typer.Argument(..., help="Amount in major units, e.g. 100.00"),
    currency: str = typer.Option("CNY", "--currency"),
    transfer_id: str | None = typer.Option(None, "--id", help="Transfer id (repeat it to replay safely)."),
    as_json: bool = JsonOpt,
) -> None:
    """Credit a buyer's balance (operator)."""
    from ciyuan.db import tx
    from ciyuan.ledger import ledger
    from ciyuan.ledger.money import parse_amount
    from ciyuan.market import funds

    with errors(as_json):
        minor = parse_amount(amount, currency)
        tid = transfer_id or "deposit:" + secrets.token_hex(10)

        def work(s):
            t = funds.deposit(s, account, tid, minor, currency)
            bal = ledger.balance(s, ledger.BUYER, funds.deposit_account(s, account).id, currency)
            return {"transfer": t.to_dict(), "balance": bal.to_dict()}

        out = tx.run(work)
    emit(
        out,
        as_json,
        lambda o: console.print(
            f"[green]deposited[/] {o['transfer']['amount_text']} {currency.upper()} -> {account}; available "
            f"{o['balance']['available_text']}"
        ),
    )


def balance_cmd(
    account: str | None = typer.Argument(None, help="Account (default: all)."), as_json: bool = JsonOpt
) -> None:
    """Ledger balances."""
    from ciyuan.db import tx
    from ciyuan.ledger import ledger
    from ciyuan.market.accounts import get_account

    with errors(as_json):
        rows = tx.run(
            lambda s: [b.to_dict() for b in ledger.balances(s, get_account(s, account).id if account else None)]
        )

    def render(rs: list[dict]) -> None:
        t = Table("ledger account", "posted", "held", "available")
        for r in rs:
            t.add_row(r["account_id"], r["posted_text"], str(r["held"]), r["available_text"])
        console.print(t)

    emit(rows, as_json, render)


def check_cmd(as_json: bool = JsonOpt) -> None:
    """Recompute every balance from the transfers; exit 1 if anything differs."""
    from ciyuan.db import tx
    from ciyuan.ledger import ledger

    with errors(as_json):
        rep = tx.run(ledger.check)

    def render(r: dict) -> None:
        if r["ok"]:
            console.print(
                f"[green]ledger consistent[/]: {r['accounts']} accounts, {r['transfers']} transfers, "
                f"posted {r['totals']['debits_posted']} = {r['totals']['credits_posted']}"
            )
        else:
            for d in r["differences"]:
                console.print(f"[red]difference[/] {d}")

    emit(rep, as_json, render)
    if not rep["ok"]:
        raise typer.Exit(1)


def expire_cmd(as_json: bool = JsonOpt) -> None:
    """Expire holds whose timeout has passed (the API also does this lazily)."""
    from ciyuan.db import tx
    from ciyuan.ledger import ledger

    with errors(as_json):
        n = tx.run(lambda s: ledger.expire_due(s))
    emit({"expired": n}, as_json, lambda o: console.print(f"expired {o['expired']} hold(s)"))


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("publish")(publish_cmd)
    account_app.command("create")(account_create_cmd)
    account_app.command("list")(account_list_cmd)
    key_app.command("create")(key_create_cmd)
    key_app.command("revoke")(key_revoke_cmd)
    key_app.command("list")(key_list_cmd)
    ledger_app.command("deposit")(deposit_cmd)
    ledger_app.command("balance")(balance_cmd)
    ledger_app.command("check")(check_cmd)
    ledger_app.command("expire")(expire_cmd)
    app.add_typer(account_app, name="account")
    app.add_typer(key_app, name="key")
    app.add_typer(ledger_app, name="ledger")
    listing_app.command("list")(listing_list_cmd)
    listing_app.command("show")(listing_show_cmd)
    listing_app.command("price")(listing_price_cmd)
    listing_app.command("delist")(listing_delist_cmd)
    listing_app.command("relist")(listing_relist_cmd)
    app.add_typer(listing_app, name="listing")
