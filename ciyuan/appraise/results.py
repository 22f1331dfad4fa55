"""Where an appraisal is kept: ``appraisal.json`` in the version folder, a work folder, and a row.

Apart from the engine so that reading a stored appraisal (the web, the exchange, ``card``) does not
need the machinery that computes one.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import numpy as np

from ciyuan.config import Settings, settings
from ciyuan.errors import NotFound


def work_dir(version_id: str, s: Settings | None = None) -> Path:
    p = (s or settings()).home / "appraise" / version_id
    p.mkdir(parents=True, exist_ok=True)
    return p


def save_values(wd: Path, ids: list[str], vals: np.ndarray, name: str = "record_values.parquet") -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": ids, "value": vals}), wd / name)


def save(version, result: dict) -> None:
    """Write ``appraisal.json`` into the version folder and the work folder."""
    text = json.dumps(result, ensure_ascii=False, indent=1, default=str)
    (work_dir(version.id, version.s) / "appraisal.json").write_text(text)
    with version.fs().open(version.path("appraisal.json"), "w") as fh:
        fh.write(text)
    from ciyuan import db
    from ciyuan.appraise.tables import AppraisalRow

    lift = result.get("utility_lift_used") or {}
    with db.session(version.s) as sess:
        sess.add(AppraisalRow(
            version_id=version.id, provider=result.get("provider"),
            appraised_at=datetime.fromisoformat(result["appraised_at"]),
            quality=float(result["quality"]["score"]), uniqueness=float(result["uniqueness"]["score"]),
            utility_lift=lift.get("mean"), tokenizer=result["tokenizer"],
            tokens_total=result["tokens"]["total"], tokens_unique=result["tokens"]["unique"],
            formula=result["price"]["formula"], currency=result["price"]["currency"],
            price_per_mtok_minor=result["price"]["price_per_mtok_minor"], location=version.path("appraisal.json"),
        ))  # fmt: skip


def history(ref: str, s: Settings | None = None) -> list[dict]:
    """Every appraisal row of a version, newest first."""
    from sqlalchemy import select

    from ciyuan import db
    from ciyuan.appraise.tables import AppraisalRow
    from ciyuan.store import resolve

    v = resolve(ref, s)
    with db.session(v.s) as sess:
        rows = sess.scalars(select(AppraisalRow).where(AppraisalRow.version_id == v.id)
                            .order_by(AppraisalRow.appraised_at.desc(), AppraisalRow.id.desc()))  # fmt: skip
        cols = [c.name for c in AppraisalRow.__table__.columns]
        return [{c: getattr(r, c) for c in cols} for r in rows]


def load(ref: str, s: Settings | None = None) -> dict:
    """The stored appraisal of a version."""
    from ciyuan.store import resolve

    v = resolve(ref, s)
    fs = v.fs()
    path = v.path("appraisal.json")
    if not fs.exists(path):
        raise NotFound(f"{v.ref} has not been appraised", hint=f"run: ciyuan appraise {v.ref}")
    with fs.open(path, "r") as fh:
        return json.load(fh)
