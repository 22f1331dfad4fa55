"""Getting data out (JSONL or Parquet) and checking that shards still match their manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from ciyuan.errors import InvalidInput
from ciyuan.store import fs as sfs
from ciyuan.store.records import record_schema, token_column
from ciyuan.store.versions import Version


def export(version: Version, fmt: str, out: str) -> dict:
    """Write every record with its id, text, meta and token counts."""
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    if fmt == "jsonl":
        with out_path.open("w", encoding="utf-8") as fh:
            for rec in version.iter_records():
                rec.pop("media", None)
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
    elif fmt == "parquet":
        schema = record_schema(version.tokenizers)
        with pq.ParquetWriter(out_path, schema, compression="zstd") as w:
            for batch in version.iter_batches():
                w.write_batch(batch)
                n += batch.num_rows
    else:
        raise InvalidInput(f"unknown export format {fmt!r}", hint="use --format jsonl or --format parquet")
    return {"dataset": version.dataset, "version": version.id, "format": fmt, "out": str(out_path), "records": n,
            "tokens": {t: version.manifest["totals"]["tokens"].get(t, 0) for t in version.tokenizers},
            "columns": [token_column(t) for t in version.tokenizers]}


def verify(version: Version) -> dict:
    """Re-hash every file the manifest names; list the ones that changed or are missing."""
    fs = version.fs()
    problems = []
    checked = 0
    for part in ("shards", "rejected", "quarantine"):
        for entry in version.manifest.get(part, []):
            path = version.path(entry["path"])
            checked += 1
            if not fs.exists(path):
                problems.append({"path": entry["path"], "problem": "missing"})
                continue
            digest = sfs.sha256_file(fs, path)
            if digest != entry["sha256"]:
                problems.append({"path": entry["path"], "problem": "changed", "expected": entry["sha256"],
                                 "actual": digest})
    return {"dataset": version.dataset, "version": version.id, "files": checked, "ok": not problems,
            "problems": problems}
