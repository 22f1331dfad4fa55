"""Shared output for every command: a Rich rendering for people, ``--json`` for scripts.

Errors are printed with what to do next and give exit code 2 (1 is kept for "ran, found a problem").
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ciyuan.errors import CiyuanError

# soft_wrap: long lines (keys, paths, URLs) are never broken with inserted newlines, so they stay
# copyable when the output is piped (Rich assumes 80 columns then); tables still fit the width
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

JsonOpt = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables.")
LangOpt = typer.Option(None, "--lang", help="Language of the HTML report: zh or en (default: from $LANG, else en).")


def report_lang(value: str | None) -> str:
    """The report language asked for, or the one the user's locale names (``zh_CN.UTF-8`` -> zh)."""
    import os

    from ciyuan.errors import InvalidInput

    if value is None:
        loc = os.environ.get("LC_ALL") or os.environ.get("LANG") or ""
        return "zh" if loc.lower().startswith("zh") else "en"
    if value not in ("zh", "en"):
        raise InvalidInput(f"--lang {value!r} is not a report language", hint="use --lang zh or --lang en")
    return value


def _default(o: Any):
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=_default, indent=2)


def emit(data: Any, as_json: bool, render: Callable[[Any], None] | None = None) -> None:
    """Print ``data`` as JSON (``--json``) or through ``render`` for people."""
    if as_json:
        sys.stdout.write(dumps(data) + "\n")
    elif render is not None:
        render(data)
    else:
        console.print_json(dumps(data))


@contextmanager
def errors(as_json: bool = False) -> Iterator[None]:
    """Turn a :class:`CiyuanError` into a clear message (or JSON) and exit code 2."""
    try:
        yield
    except CiyuanError as exc:
        if as_json:
            sys.stdout.write(dumps({"error": exc.to_dict()}) + "\n")
        else:
            err_console.print(f"[bold red]error:[/] {exc.message}")
            if exc.hint:
                err_console.print(f"[yellow]hint:[/] {exc.hint}")
        raise typer.Exit(2) from None


def progress(enabled: bool = True, unit: str = "items") -> Progress:
    """A progress bar on stderr, so ``--json`` output on stdout stays clean.

    ``unit="bytes"`` counts bytes (``12.3/45.6 MB``) and shows the time left, for work whose total is
    known from file sizes (ingest).
    """
    count = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    left = [TimeRemainingColumn()] if unit == "bytes" else []
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        count,
        TextColumn("{task.fields[extra]}"),
        TimeElapsedColumn(),
        *left,
        console=err_console,
        disable=not enabled or not err_console.is_terminal,
        transient=False,
    )
