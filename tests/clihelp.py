"""The CLI as tests drive it: ``ciyuan ARGS --json`` in-process, its JSON answer, the exit code checked."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ciyuan.cli.main import app

runner = CliRunner()


def cli(*args: str, code: int = 0) -> dict:
    res = runner.invoke(app, [*args, "--json"])
    assert res.exit_code == code, (res.output, res.exception)
    return json.loads(res.stdout)


def records(name: str) -> list[dict]:
    """Every record of a stored version, blob media filled in."""
    from ciyuan.store import resolve

    return list(resolve(name).iter_records(resolve_media=True))


def quarantine(name: str) -> list[dict]:
    return cli("show", name, "--quarantine", "--limit", "1000")["items"]
