"""``curate(ref, recipe)``: make a new version from a version and a recipe, nothing lost."""

from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

from ciyuan.config import settings
from ciyuan.curate.executor import BATCH_ROWS, Progress, StageTracker, make_executor, run_recipe
from ciyuan.curate.recipes import load_recipe, recipe_sha256
from ciyuan.curate.steps import REJECTED, rejection_code
from ciyuan.store import memory


def work_dir(parent_id: str, sha: str) -> Path:
    """Where a run keeps its intermediate shards; the same parent and recipe share it (resume)."""
    key = hashlib.sha256(f"{parent_id}:{sha}".encode()).hexdigest()[:24]
    return settings().home / "work" / "curate" / key


def _stage_attachments(parent, work: Path) -> None:
    """Copy a graph version's attached ontology and shapes into the work folder, where the
    ``shacl_filter`` step's reduce (on this machine) reads them."""
    from ciyuan.curate.steps.graph import ATTACHED_DIR
    from ciyuan.knowledge.shapes import KINDS, attached_text

    for kind in KINDS:
        text = attached_text(parent, kind)
        if text is not None:
            (work / ATTACHED_DIR).mkdir(parents=True, exist_ok=True)
            (work / ATTACHED_DIR / f"{kind}.nt").write_text(text, encoding="utf-8")


def curate(
    ref: str,
    recipe: str | dict | list | None = None,
    *,
    steps: str | None = None,
    executor: str = "local",
    workers: int | None = None,
    resume: bool = False,
    on_progress: Progress | None = None,
    _stop_after: int | None = None,
) -> dict:
    """Run ``recipe`` (file, built-in name, mapping, or ``steps="a,b"``) over ``ref``; return a summary.

    The new version's manifest names its parent and the canonical recipe with its sha256; the
    executor and worker count are not part of it, so they cannot change the version id.
    """
    from ciyuan.store import VersionBuilder, resolve

    started = time.monotonic()
    parent = resolve(ref)
    canon = load_recipe(recipe, steps)
    sha = recipe_sha256(canon)
    work = work_dir(parent.id, sha)
    if not resume and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    _stage_attachments(parent, work)
    sources = [parent.path(s["path"]) for s in parent.manifest["shards"]]
    tokenizers = parent.tokenizers
    with make_executor(executor, workers) as ex:
        shards, stats = run_recipe(canon, sha, sources, work, ex, tokenizers, on_progress, _stop_after)
    builder = VersionBuilder(
        parent.dataset,
        made_by={"command": "curate", "recipe": canon, "recipe_sha256": sha},
        parent=parent.id,
        tokenizers=tokenizers,
        s=parent.s,
    )
    changed = 0
    tracker = StageTracker(on_progress, "write version", [s.rows() for s in shards])
    tracker.start()
    try:
        for i, shard in enumerate(shards):
            for n, rec in enumerate(shard.records(), 1):
                if n % BATCH_ROWS == 0:
                    tracker.record(i, n)
                    memory.release()  # a batch's freed pages go back, as in the shard jobs
                if (rec.get("meta") or {}).get("curation", {}).get("changed_by"):
                    changed += 1
                rej = rec.pop(REJECTED, None)
                if rej is None:
                    builder.add(rec)
                else:
                    code = rej.get("code") or rejection_code(rej["step"], rej.get("rule"))
                    rec["meta"].setdefault("curation", {})["rejected_code"] = code
                    builder.reject(rec, rej["step"], rej["reason"], code=code)
            tracker.finish(i)
        # what the provider declared (licence, domain, language, card) still describes the curated data
        inherited = {k: v for k, v in (parent.manifest.get("extra") or {}).items() if k != "curation"}
        builder.extra = {**inherited, "curation": {"recipe": canon["name"], "steps": [s.to_dict() for s in stats]}}
        version = builder.commit()
    except BaseException:
        builder.abort()
        raise
    shutil.rmtree(work, ignore_errors=True)
    tok = tokenizers[0] if tokenizers else None
    before = parent.manifest["totals"]["tokens"].get(tok, 0) if tok else 0
    after = version.manifest["totals"]["tokens"].get(tok, 0) if tok else 0
    return {
        "dataset": version.dataset,
        "version": version.id,
        "ref": version.ref,
        "parent": parent.id,
        "recipe": canon["name"],
        "recipe_sha256": sha,
        "records_before": parent.records,
        "kept": version.records,
        "rejected": version.manifest["totals"]["rejected"],
        "changed": changed,
        "tokenizer": tok,
        "tokens_before": before,
        "tokens_after": after,
        "steps": [s.to_dict() for s in stats],
        "executor": executor,
        "workers": workers,
        "seconds": round(time.monotonic() - started, 3),
    }
