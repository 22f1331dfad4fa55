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
    "ciyuan.cli.appraise_cmds",
    "ciyuan.cli.quickstart_cmds",
]

for _area in AREAS:
    try:
        _mod = importlib.import_module(_area)
    except ModuleNotFoundError as exc:  # an area not built yet
        if exc.name != _area:
            raise
        continue
    _mod.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
