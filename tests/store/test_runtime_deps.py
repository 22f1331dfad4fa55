"""ciyuan runs with only its own dependencies, as ``make run`` installs them (issue 11, defect 1).

The test environment also holds the ``test`` extras (mlcroissant, ray, torch, pandas through them, ...).
Some of them import parts of other packages as a side effect: pandas imports ``pyarrow.compute``, so
``pa.compute`` worked in the tests while ``ciyuan ingest`` crashed for a user with
``AttributeError: module 'pyarrow' has no attribute 'compute'``. These tests take the extras away
again: a child process refuses to import any top-level module that does not belong to ciyuan's
declared runtime dependencies (from ``pyproject.toml``, followed through each package's own
requirements), which is what is installed after ``make run``.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import json
import os
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = r"""
import importlib.abc, json, os, sys
BLOCKED = set(json.loads(os.environ["CIYUAN_TEST_BLOCKED"]))
class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not installed by make run)", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def runtime_distributions() -> frozenset[str]:
    """ciyuan's runtime dependencies and theirs, with the extras they ask for; never ciyuan's own extras."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    todo = [Requirement(d) for d in deps]
    seen: dict[str, set[str]] = {"ciyuan": set()}
    while todo:
        req = todo.pop()
        name = _norm(req.name)
        extras = set(req.extras)
        if name in seen and extras <= seen[name]:
            continue
        seen.setdefault(name, set()).update(extras)
        try:
            requires = md.requires(req.name) or []
        except md.PackageNotFoundError:
            continue
        for line in requires:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in {"", *seen[name]}):
                todo.append(sub)
    return frozenset(seen)


@cache
def blocked_modules() -> list[str]:
    """Top-level modules installed here only because of extras (no runtime distribution provides them)."""
    allowed = runtime_distributions()
    return sorted(
        mod for mod, dists in md.packages_distributions().items()
        if not any(_norm(d) in allowed for d in dists) and mod.isidentifier()
    )


def run_without_extras(code: str, *args: str, home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), CIYUAN_HOME=str(home),
               CIYUAN_TEST_BLOCKED=json.dumps(blocked_modules()))
    env.pop("CIYUAN_DATABASE_URL", None)
    env.pop("CIYUAN_STORAGE_URL", None)
    return subprocess.run([sys.executable, "-c", BLOCKER + code, *args], env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def test_the_blocker_removes_the_extras(tmp_path: Path) -> None:
    """The method itself: pandas (here only through the test extras) cannot be imported in the child,
    and pyarrow, a runtime dependency, can."""
    if importlib.util.find_spec("pandas") is None:
        pytest.skip("pandas is not installed here, so there is nothing to hide")
    assert "pandas" in blocked_modules() and "pyarrow" not in blocked_modules()
    res = run_without_extras(
        "import pyarrow\ntry:\n import pandas\nexcept ModuleNotFoundError:\n print('no pandas')\n",
        home=tmp_path / "home",
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "no pandas"


def test_ingest_of_the_bundled_sample_runs_with_runtime_dependencies_only(tmp_path: Path) -> None:
    """``ciyuan ingest`` of the bundled sample, by the CLI's own entry point, in a child process that
    cannot import the test extras. On the original code this exits with
    ``AttributeError: module 'pyarrow' has no attribute 'compute'`` (store/builder.py used
    ``pa.compute`` without importing it; only pandas, from the extras, loaded it)."""
    from ciyuan.data import sample_files

    code = "import sys\nfrom ciyuan.cli.main import main\nsys.argv = ['ciyuan', *sys.argv[1:]]\nmain()\n"
    files = [str(p) for p in sample_files()]
    res = run_without_extras(code, "ingest", *files, "--dataset", "sample", "--rename", "lang=language",
                             "--json", home=tmp_path / "home")
    assert res.returncode == 0, res.stderr[-4000:] + res.stdout[-2000:]
    out = json.loads(res.stdout)
    assert out["records"] > 0 and out["tokens"]["cl100k_base"] > 0


def _submodule_uses(path: Path) -> set[tuple[str, str]]:
    """``(module, attribute)`` for each ``alias.attribute`` in ``path`` where ``alias`` names an
    imported third-party module and ``module.attribute`` is not imported in the file itself."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases: dict[str, str] = {}
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                imported.add(a.name)
                aliases[a.asname or a.name.partition(".")[0]] = a.name if a.asname else a.name.partition(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                imported.add(f"{node.module}.{a.name}")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            module = aliases[node.value.id]
            top = module.partition(".")[0]
            if top in sys.stdlib_module_names or top == "ciyuan":
                continue
            if f"{module}.{node.attr}" not in imported:
                out.add((module, node.attr))
    return out


def test_no_module_uses_a_submodule_it_does_not_import(tmp_path: Path) -> None:
    """Everywhere in ciyuan/, not only on the ingest path: ``pa.compute``-style uses must name a
    submodule that the package's own import loads (``pyarrow`` loads ``pyarrow.ipc`` and
    ``pyarrow.types`` itself), checked in a child without the extras, one fresh child per package."""
    uses: dict[str, set[str]] = {}
    for path in sorted((ROOT / "ciyuan").rglob("*.py")):
        for module, attr in _submodule_uses(path):
            uses.setdefault(module, set()).add(attr)
    assert "pyarrow" in uses  # the check sees the package this defect was about
    missing = []
    optional = set(blocked_modules())  # code for the extras (ray, torch, ...) is imported only with them
    for module, attrs in sorted(uses.items()):
        if module.partition(".")[0] in optional:
            continue
        code = (
            "import importlib, importlib.util, json, sys\n"
            f"mod = importlib.import_module({module!r})\n"
            f"attrs = {sorted(attrs)!r}\n"
            "def is_sub(a):\n"
            "    try:\n"
            "        return importlib.util.find_spec(mod.__name__ + '.' + a) is not None\n"
            "    except (ImportError, ValueError, AttributeError):\n"
            "        return False\n"
            "print(json.dumps([a for a in attrs if not hasattr(mod, a) and is_sub(a)]))\n"
        )
        res = run_without_extras(code, home=tmp_path / "home")
        assert res.returncode == 0, res.stderr[-3000:]
        missing += [f"{module}.{a}" for a in json.loads(res.stdout)]
    assert not missing, f"used without being imported (add `import {missing[0]}`): {missing}"
