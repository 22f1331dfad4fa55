"""No module over about 500 lines without a line at its top saying why (issue 12)."""

from __future__ import annotations

import ast
from pathlib import Path

import ciyuan

LIMIT = 500
REASON = "Over 500 lines because"


def unexplained(root: Path) -> list[str]:
    """Modules under ``root`` longer than LIMIT lines whose docstring does not say why."""
    out = []
    for path in sorted(root.rglob("*.py")):
        if "migrations" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        doc = " ".join((ast.get_docstring(ast.parse(text)) or "").split())
        if text.count("\n") > LIMIT and REASON not in doc:
            out.append(str(path.relative_to(root)))
    return out


def test_long_modules_say_why() -> None:
    bad = unexplained(Path(ciyuan.__file__).parent)
    assert not bad, f"cut these modules along their seams or add '{REASON} ...' to their docstring: {bad}"


def test_the_rule_reads_the_docstring(tmp_path: Path) -> None:
    filler = "x = 1\n" * (LIMIT + 1)
    (tmp_path / "silent.py").write_text('"""A module."""\n' + filler)
    (tmp_path / "comment.py").write_text(f'"""A module."""\n# {REASON} a comment is not the top line\n' + filler)
    (tmp_path / "said.py").write_text(f'"""A table.\n\n{REASON} it is one table.\n"""\n' + filler)
    (tmp_path / "short.py").write_text('"""Short."""\nx = 1\n')
    assert unexplained(tmp_path) == ["comment.py", "silent.py"]
