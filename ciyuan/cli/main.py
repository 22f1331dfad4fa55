"""Entry point of the ``ciyuan`` command; each area registers its commands from its own module."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="ciyuan",
    help="ciyuan (词元): make industry data AI-ready, value it in tokens, and trade it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One module a area; each defines ``register(app)``. Add a line here when adding an area.
AREAS = [
    "ciyuan.cli.store_cmds",
    "ciyuan.cli.curate_cmds",
    "ciyuan.cli.exchange_cmds",
    "ciyuan.cli.delivery_cmds",
    "ciyuan.cli.knowledge_cmds",
    "ciyuan.cli.appraise_cmds",
    "ciyuan.cli.kb_cmds",
    "ciyuan.cli.graph_cmds",
    "ciyuan.cli.quickstart_cmds",
]

for _area in AREAS:
    importlib.import_module(_area).register(app)


def main() -> None:
    """Run the CLI; with ``--json`` even a usage error (wrong flag, missing argument) is JSON."""
    import sys

    if "--json" not in sys.argv[1:]:
        app()
        return
    from ciyuan.cli.output import dumps

    try:
        rc = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except Exception as exc:
        # typer vendors click, so its UsageError is matched by name rather than imported
        if not any(c.__name__ == "UsageError" for c in type(exc).__mro__):
            raise
        ctx = getattr(exc, "ctx", None)
        cmd = ctx.command_path if ctx is not None else "ciyuan"
        err = {"code": "usage", "message": exc.format_message(), "hint": f"see: {cmd} --help"}
        sys.stdout.write(dumps({"error": err}) + "\n")
        sys.exit(2)
    sys.exit(rc if isinstance(rc, int) else 0)


if __name__ == "__main__":
    main()
