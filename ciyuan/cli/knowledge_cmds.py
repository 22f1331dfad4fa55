"""Commands of knowledge listings for buyers: ``sparql``, ``retrieve`` (metered per returned token) and ``mcp``.

``sparql`` and ``retrieve`` call an exchange server with ``--url`` (the SDK), or, without it, this
home's exchange directly; either way as the buyer whose key is ``--key`` or ``CIYUAN_KEY``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from ciyuan.cli.output import JsonOpt, console, emit, errors
from ciyuan.errors import CiyuanError, InvalidInput

KeyOpt = typer.Option(None, "--key", help="The buyer's API key (default: $CIYUAN_KEY).")
UrlOpt = typer.Option(None, "--url", help="An exchange server (default: this home's exchange, in process).")
MaxTokOpt = typer.Option(4096, "--max-tokens", help="The call's token cap (only what returns is billed).")
IdemOpt = typer.Option(None, "--idempotency-key", help="Retry with the same key: the first answer, billed once.")


def _query_text(query: str) -> str:
    """The query: the argument, ``@FILE`` for a file's text, or ``-`` for stdin."""
    if query == "-":
        return sys.stdin.read()
    if query.startswith("@"):
        path = Path(query[1:])
        try:
            return path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(f"cannot read the query file {path}: {exc.strerror}",
                               hint="give the query text, @FILE or - for stdin") from None
    return query


def _key(key: str | None) -> str:
    key = key or os.environ.get("CIYUAN_KEY")
    if not key:
        raise CiyuanError("no API key", hint="pass --key or set CIYUAN_KEY (ciyuan key create BUYER prints one)",
                          code="unauthenticated", status=401)
    return key


def _call(url: str | None, key: str, method: str, listing: str, text: str, **kw) -> dict:
    if url:
        from ciyuan.sdk import Client
        from ciyuan.sdk.errors import ApiError

        try:
            with Client(url, key) as c:
                return getattr(c, method)(listing, text, **kw)
        except ApiError as exc:
            raise CiyuanError(exc.message, hint=exc.hint, code=exc.code, status=exc.status) from None
    from ciyuan.db import tx
    from ciyuan.delivery import calls
    from ciyuan.market.accounts import authenticate

    who = tx.read(lambda sess: authenticate(sess, key))
    who.require(roles=("buyer",), scope="delivery:read")
    fn = calls.sparql_call if method == "sparql" else calls.retrieve_call
    return fn(who.account.id, listing, text, **kw)


def _usage_line(u: dict) -> str:
    return (f"{u['tokens']} tokens (cap {u['cap_tokens']}), {u['amount_text']} {u['currency']}"
            f"{' (replayed, not billed again)' if u['replayed'] else ''}; call {u['call_id']}")


def sparql_cmd(
    listing: str = typer.Argument(..., help="A graph listing's id (lst_...)."),
    query: str = typer.Argument(..., help="SELECT, ASK, CONSTRUCT or DESCRIBE; @FILE reads a file, - stdin."),
    max_rows: int = typer.Option(1000, "--max-rows", help="Rows (or triples) at most."),
    max_tokens: int = MaxTokOpt,
    timeout_s: float = typer.Option(10.0, "--timeout", help="Seconds before the query is stopped."),
    idempotency_key: str | None = IdemOpt,
    key: str | None = KeyOpt,
    url: str | None = UrlOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run a read-only SPARQL query on a graph listing, billed per returned token."""
    with errors(as_json):
        out = _call(url, _key(key), "sparql", listing, _query_text(query), max_rows=max_rows, max_tokens=max_tokens,
                    timeout_s=timeout_s, idempotency_key=idempotency_key)

    def render(o: dict) -> None:
        r = o["result"]
        if isinstance(r, str):
            sys.stdout.write(r)
        elif "boolean" in r:
            console.print("true" if r["boolean"] else "false")
        else:
            names = r["head"]["vars"]
            console.print("\t".join(names))
            for b in r["results"]["bindings"]:
                console.print("\t".join(b[n]["value"] if n in b else "" for n in names), markup=False)
        cut = f", cut at the {o['limit']} limit" if o["truncated"] else ""
        console.print(f"[dim]{o['rows']} rows{cut}; {_usage_line(o['usage'])}[/]")

    emit(out, as_json, render)


def retrieve_cmd(
    listing: str = typer.Argument(..., help="A knowledge-base or graph listing's id (lst_...)."),
    query: str = typer.Argument(..., help="The question; @FILE reads a file, - stdin."),
    top_k: int = typer.Option(5, "--top-k", help="Chunks at most."),
    max_tokens: int = MaxTokOpt,
    mode: str = typer.Option("hybrid", "--mode", help="hybrid, bm25 or vector."),
    idempotency_key: str | None = IdemOpt,
    key: str | None = KeyOpt,
    url: str | None = UrlOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The best chunks of a knowledge base (or subjects of a graph) for a question, billed per returned token."""
    with errors(as_json):
        out = _call(url, _key(key), "retrieve", listing, _query_text(query), top_k=top_k, max_tokens=max_tokens,
                    mode=mode, idempotency_key=idempotency_key)

    def render(o: dict) -> None:
        for c in o["chunks"]:
            console.print(f"[bold]{c['score']:.4f}[/] {c['record_id']} [{c['start']}:{c['end']}] "
                          f"{c['tokens']} tokens")
            console.print(c["text"], markup=False)
        console.print(f"[dim]{len(o['chunks'])} chunks; {_usage_line(o['usage'])}[/]")

    emit(out, as_json, render)


def mcp_cmd(
    transport: str = typer.Option("stdio", "--transport", help="stdio or http (streamable HTTP)."),
    key: str | None = KeyOpt,
    host: str = typer.Option("127.0.0.1", "--host", help="http: the address to listen on."),
    port: int = typer.Option(8765, "--port", help="http: the port."),
    as_json: bool = JsonOpt,
) -> None:
    """Serve the exchange to agents over the Model Context Protocol (tools: search, describe, retrieve, sparql).

    stdio bills the buyer of --key (or $CIYUAN_KEY); http bills each request's 'Authorization: Bearer' key.
    """
    from ciyuan.api import mcp_server

    with errors(as_json):
        if transport == "stdio":
            server = mcp_server.build(key=_key(key))
        elif transport != "http":
            raise InvalidInput(f"transport {transport!r} is unknown", hint="use --transport stdio or http")
    if transport == "stdio":
        server.run("stdio")
        return
    import uvicorn

    emit({"serving": f"http://{host}:{port}/mcp"}, as_json,
         lambda o: print(f"serving MCP on {o['serving']}", file=sys.stderr, flush=True))
    uvicorn.run(mcp_server.http_app(), host=host, port=port, log_level="warning")


def register(app: typer.Typer) -> None:
    app.command("sparql")(sparql_cmd)
    app.command("retrieve")(retrieve_cmd)
    app.command("mcp")(mcp_cmd)
