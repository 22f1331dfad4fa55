"""Recipes: an ordered list of steps with parameters, from YAML, a built-in name, or ``--steps``.

A recipe is resolved to a canonical form in which every step lists all its parameters (defaults
filled in); its sha256 goes into the version manifest, so the same recipe always means the same
version id and a changed default shows up as a changed recipe.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ciyuan.curate.steps import Step, make_step, registry
from ciyuan.errors import InvalidInput


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).iterdir() if p.name.endswith(".yaml"))


def _parse_entry(entry: Any, where: str) -> tuple[str, dict]:
    if isinstance(entry, str):
        return entry, {}
    if isinstance(entry, dict) and "step" in entry:
        return str(entry["step"]), dict(entry.get("params") or {})
    if isinstance(entry, dict) and len(entry) == 1:
        ((name, params),) = entry.items()
        if params is not None and not isinstance(params, dict):
            raise InvalidInput(
                f"{where}: parameters of step {name!r} must be a mapping",
                hint="write e.g. `- length: {min_chars: 200}`",
            )
        return str(name), dict(params or {})
    raise InvalidInput(
        f"{where}: cannot read step entry {entry!r}", hint="write a step as `- name` or `- name: {param: value}`"
    )


def parse_recipe(data: Any, where: str = "recipe") -> dict:
    """Check a recipe mapping and return its canonical form (all parameters spelled out)."""
    if isinstance(data, list):
        data = {"steps": data}
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list) or not data["steps"]:
        raise InvalidInput(
            f"{where}: a recipe needs a non-empty `steps:` list",
            hint=f"see the built-ins: {', '.join(builtin_names())}",
        )
    steps = []
    for i, entry in enumerate(data["steps"], 1):
        name, params = _parse_entry(entry, f"{where} step {i}")
        steps.append({"step": name, "params": make_step(name, params).config()})
    return {"name": str(data.get("name") or "custom"), "steps": steps}


def load_recipe(spec: str | dict | list | None = None, steps: str | None = None) -> dict:
    """A recipe from a YAML file path, a built-in name, a mapping, or ``--steps a,b,c``."""
    if steps:
        names = [s.strip() for s in steps.split(",") if s.strip()]
        unknown = [n for n in names if n not in registry()]
        if unknown:
            raise InvalidInput(
                f"--steps: unknown step(s) {', '.join(unknown)}", hint=f"built-in steps: {', '.join(registry())}"
            )
        return parse_recipe({"name": "steps:" + ",".join(names), "steps": names}, "--steps")
    if spec is None:
        raise InvalidInput("no recipe given", hint=f"pass --recipe FILE or one of {', '.join(builtin_names())}")
    if isinstance(spec, dict | list):
        return parse_recipe(spec)
    path = Path(spec).expanduser()
    if path.is_file():
        text, where = path.read_text(encoding="utf-8"), str(path)
    elif spec in builtin_names():
        text, where = resources.files(__package__).joinpath(f"{spec}.yaml").read_text(encoding="utf-8"), spec
    else:
        raise InvalidInput(
            f"recipe {spec!r} is neither a file nor a built-in", hint=f"built-in recipes: {', '.join(builtin_names())}"
        )
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise InvalidInput(f"{where}{line}: not valid YAML", hint="check the indentation of the steps list") from None
    return parse_recipe(data, where)


def recipe_sha256(recipe: dict) -> str:
    return hashlib.sha256(
        json.dumps(recipe, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    ).hexdigest()


def build_steps(recipe: dict) -> list[Step]:
    """Fresh step objects for a canonical recipe (each worker builds its own).

    Values a step derives (a benchmark file's hash) are checked, not passed back as parameters: if
    the file changed since the recipe was resolved, the run stops instead of silently differing.
    """
    out = []
    for entry in recipe["steps"]:
        cls = registry()[entry["step"]]
        declared = {p.name for p in cls.params}
        step = cls(**{k: v for k, v in entry["params"].items() if k in declared})
        derived = {k: v for k, v in entry["params"].items() if k not in declared}
        now = step.config()
        for k, v in derived.items():
            if now.get(k) != v:
                raise InvalidInput(
                    f"step {entry['step']!r}: {k} changed since the recipe was resolved",
                    hint="start the run again (without --resume)",
                )
        out.append(step)
    return out
