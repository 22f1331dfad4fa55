"""Getting data out (JSONL or Parquet) and checking that shards still match their manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ciyuan.errors import InvalidInput
from ciyuan.store import fs as sfs
from ciyuan.store.blobs import rel_path
from ciyuan.store.records import from_batch, record_schema, token_column
from ciyuan.store.versions import Version


def _cached_counts(version: Version) -> list[str]:
    """Tokenizers and schedules counted after the version was made (``ciyuan tokens``), still valid."""
    from sqlalchemy import select

    from ciyuan import db
    from ciyuan.store.tables import TokenCountRow

    with db.session(version.s) as sess:
        rows = sess.scalars(select(TokenCountRow.tokenizer).where(TokenCountRow.version_id == version.id)).all()
    return [n for n in sorted(rows) if n not in version.tokenizers and version.cached_token_paths(n) is not None]


def _batches_with_counts(version: Version, cached: list[str]) -> Iterator[tuple[pa.RecordBatch, dict]]:
    """Each shard batch with the cached counts of its rows (one int64 array per name), in order."""
    counts = {name: version.iter_token_counts(name) for name in cached}
    fs = version.fs()
    for path in version.shard_paths():
        mine = {name: next(it) for name, it in counts.items()}
        at = 0
        with fs.open(path, "rb") as fh:
            for batch in pq.ParquetFile(fh, pre_buffer=False).iter_batches(batch_size=4096):
                yield batch, {name: arr.slice(at, batch.num_rows) for name, arr in mine.items()}
                at += batch.num_rows


def _write_media(version: Version, rec: dict, media_dir: Path) -> str | None:
    """Write one record's media bytes (inline or its blob, streamed) to ``media_dir/<ab>/<sha256>``;
    the path written, relative to ``media_dir`` (``None``: the record holds no media)."""
    if rec.get("media") is None and not rec.get("media_ref"):
        return None
    digest = (rec.get("meta") or {}).get("sha256")
    if not digest:
        import hashlib

        digest = hashlib.sha256(rec["media"]).hexdigest() if rec.get("media") is not None else rec["media_ref"][7:]
    rel = f"{digest[:2]}/{digest}"
    target = media_dir / rel
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".part")
        with version.open_media(rec) as src, tmp.open("wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
        tmp.replace(target)
    return rel


def export(version: Version, fmt: str, out: str, media_dir: str | None = None) -> dict:
    """Write every record with its id, text, meta and token counts (those cached later too).

    ``lerobot-v3.0``/``lerobot-v2.1``: robot episodes as a LeRobot folder at ``out`` (``lerobot_export``).
    JSONL holds no bytes: with ``media_dir`` every record's media (inline or a blob) is written there
    as ``<ab>/<sha256>`` and the record names it in ``media_file``, so an export is lossless.
    """
    if fmt.startswith("lerobot-"):
        from ciyuan.store.lerobot_export import export_lerobot

        return export_lerobot(version, fmt, out)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cached = _cached_counts(version)
    names = [*version.tokenizers, *cached]
    n = 0
    media_root = Path(media_dir) if media_dir else None
    if fmt == "jsonl":
        with out_path.open("w", encoding="utf-8") as fh:
            for batch, extra in _batches_with_counts(version, cached):
                lists = {name: arr.to_pylist() for name, arr in extra.items()}
                for i, rec in enumerate(from_batch(batch)):
                    if media_root is not None and (rel := _write_media(version, rec, media_root)):
                        rec["media_file"] = rel
                    rec.pop("media", None)
                    for name, vals in lists.items():
                        rec.setdefault("tokens", {})[name] = vals[i]
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                    n += 1
    elif fmt == "parquet":
        schema = record_schema(names)
        with pq.ParquetWriter(out_path, schema, compression="zstd") as w:
            for batch, extra in _batches_with_counts(version, cached):
                if media_root is not None:
                    for rec in from_batch(batch):
                        _write_media(version, rec, media_root)
                cols = [*batch.columns, *(extra[name].cast(pa.int64()) for name in cached)]
                w.write_batch(pa.RecordBatch.from_arrays(cols, schema=schema))
                n += batch.num_rows
    else:
        raise InvalidInput(f"unknown export format {fmt!r}",
                           hint="use --format jsonl, parquet, lerobot-v3.0 or lerobot-v2.1 (ntriples for graphs, "
                                "from the CLI or ciyuan.appraise.graph_card.export_graph)")
    totals = version.token_totals()
    return {"dataset": version.dataset, "version": version.id, "format": fmt, "out": str(out_path), "records": n,
            "tokens": {t: totals.get(t, 0) for t in names}, "columns": [token_column(t) for t in names],
            **({"media_dir": str(media_root)} if media_root is not None else {})}


def verify(version: Version) -> dict:
    """Re-hash every file the manifest names (shards and media blobs); list the ones that changed or
    are missing. A blob's path is under the store root (``blobs/sha256/...``), a shard's under the version."""
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
    blobs = version.blobs() if version.manifest.get("blobs") else None
    for entry in version.manifest.get("blobs", []):
        assert blobs is not None
        rel = rel_path(entry["sha256"])
        checked += 1
        digest = blobs.hash(entry["sha256"])
        if digest is None:
            problems.append({"path": rel, "problem": "missing"})
        elif digest != entry["sha256"]:
            problems.append({"path": rel, "problem": "changed", "expected": entry["sha256"], "actual": digest})
    return {"dataset": version.dataset, "version": version.id, "files": checked, "ok": not problems,
            "problems": problems}
