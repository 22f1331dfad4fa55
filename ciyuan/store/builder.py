"""Making a version: records stream in, Parquet shards (zstd) come out, the manifest names them.

A builder writes into a staging folder; :meth:`VersionBuilder.commit` hashes the shards, writes the
manifest, moves the folder to its content address and registers the version in the database.
Rejected and quarantined items go to their own partitions: nothing is dropped.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc  # not loaded by ``import pyarrow``: only pandas, when installed, loads it
import pyarrow.parquet as pq

from ciyuan.config import Settings, settings
from ciyuan.errors import InvalidInput
from ciyuan.store import fs as sfs
from ciyuan.store.blobs import BlobStore, FileSpan, ref_of
from ciyuan.store.id_counter import IdCounter
from ciyuan.store.manifest import FORMAT, reason_kind, version_id
from ciyuan.store.records import (
    QUARANTINE_SCHEMA,
    content_id,
    name_token_counts,
    record_schema,
    to_table,
    token_column,
)

Counter_ = Callable[[list[str]], list[int]]
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_name(name: str) -> str:
    if not name or not set(name) <= NAME_CHARS or name[0] in "-." or len(name) > 200:
        raise InvalidInput(
            f"dataset name {name!r} is not allowed",
            hint="use letters, digits, '-', '_' and '.', starting with a letter or digit",
        )
    return name


class _PartWriter:
    """Writes one partition (records, rejected or quarantine) as numbered Parquet files."""

    def __init__(self, fs, folder: str, schema: pa.Schema, rows_per_file: int):
        self.fs, self.folder, self.schema, self.rows_per_file = fs, folder, schema, rows_per_file
        self.files: list[dict] = []
        self._writer: pq.ParquetWriter | None = None
        self._fh = None
        self._rows = 0
        self._tokens: Counter[str] = Counter()
        self._reasons: Counter[str] = Counter()

    def write(self, table: pa.Table, tokens: dict[str, int] | None = None, reasons: Iterable[str] = ()) -> None:
        start = 0
        while start < table.num_rows:
            if self._writer is None:
                self._open()
            take = min(self.rows_per_file - self._rows, table.num_rows - start)
            part = table.slice(start, take)
            assert self._writer is not None
            self._writer.write_table(part, row_group_size=max(1, take))
            self._rows += take
            if tokens is not None:
                for col in [c for c in part.column_names if c.startswith("tokens__")]:
                    self._tokens[col[len("tokens__"):]] += int(pc.sum(part[col]).as_py() or 0)
            start += take
            if self._rows >= self.rows_per_file:
                self._close()
        for r in reasons:
            self._reasons[reason_kind(r)] += 1

    def _open(self) -> None:
        path = sfs.join(self.folder, f"part-{len(self.files):05d}.parquet")
        self.fs.makedirs(self.folder, exist_ok=True)
        self._fh = self.fs.open(path, "wb")
        self._writer = pq.ParquetWriter(self._fh, self.schema, compression="zstd", write_statistics=True)
        self.files.append({"path": path})
        self._rows = 0
        self._tokens = Counter()

    def _close(self) -> None:
        if self._writer is None:
            return
        self._writer.close()
        self._fh.close()
        info = self.files[-1]
        info["rows"] = self._rows
        info["tokens"] = dict(sorted(self._tokens.items()))
        self._writer = None
        self._fh = None

    def finish(self, base: str) -> list[dict]:
        self._close()
        out = []
        for info in self.files:
            path = info["path"]
            entry = {
                "path": path[len(base) + 1:],
                "sha256": sfs.sha256_file(self.fs, path),
                "rows": info["rows"],
                "bytes": self.fs.size(path),
            }
            if info.get("tokens"):
                entry["tokens"] = info["tokens"]
            out.append(entry)
        return out


class VersionBuilder:
    """Collects records into a new, immutable version of ``dataset``.

    ``tokenizers`` are token schedule names (a tokenizer name is the text schedule) counted for every
    record; counts already present in ``record["tokens"]`` are kept, missing ones are computed per
    flushed batch through ``get_schedule(name).count_records``.
    """

    def __init__(
        self,
        dataset: str,
        *,
        made_by: dict,
        parent: str | None = None,
        tokenizers: list[str] | None = None,
        rows_per_shard: int = 100_000,
        batch_rows: int = 2048,
        batch_bytes: int = 8 << 20,
        s: Settings | None = None,
    ):
        self.s = s or settings()
        self.dataset = check_name(dataset)
        self.made_by = made_by
        self.parent = parent
        self.tokenizers = list(tokenizers or [self.s.default_tokenizer])
        self.fs, root = sfs.filesystem(self.s.store_root)
        self.dataset_dir = sfs.join(root, "datasets", dataset)
        self.staging = sfs.join(self.dataset_dir, "staging", uuid.uuid4().hex)
        self.batch_rows, self.batch_bytes = batch_rows, batch_bytes
        schema = record_schema(self.tokenizers)
        self._records = _PartWriter(self.fs, sfs.join(self.staging, "shards"), schema, rows_per_shard)
        self._rejected = _PartWriter(
            self.fs, sfs.join(self.staging, "rejected"), record_schema(self.tokenizers, rejected=True),
            rows_per_shard,
        )
        self._quarantine = _PartWriter(self.fs, sfs.join(self.staging, "quarantine"), QUARANTINE_SCHEMA, 50_000)
        self._buf: list[dict] = []
        self._rej_buf: list[dict] = []
        self._q_buf: list[dict] = []
        self._buf_bytes = 0
        self._ids = IdCounter()  # on disk: bounded memory however many records
        self.media_inline_max_bytes = self.s.media_inline_max_bytes
        self._blob_store: BlobStore | None = None
        self._blobs: dict[str, int] = {}  # sha256 -> bytes of every blob a record of this version refers to
        self._span_digests: dict[tuple[str, int, int], str] = {}  # attachment spans already stored
        self.records = 0
        self.rejected = 0
        self.quarantined = 0
        self.extra: dict = {}

    # -- input -----------------------------------------------------------------------------------
    def add(self, record: dict) -> None:
        """Add one good record; ``id`` defaults to a hash of its content.

        Media (``media`` bytes, or a ``media_src`` :class:`FileSpan` a reader did not load) gets its
        sha256 in ``meta.sha256``; up to ``media_inline_max_bytes`` it stays in the shard, above it
        goes to a content-addressed blob named by ``media_ref`` and listed in the manifest.
        """
        span = record.pop("media_src", None)
        self._place_attachments(record)
        digest = self._place_media(record, span) if span is not None or record.get("media") is not None else None
        if digest is None and record.get("media_ref"):
            digest = self._keep_ref(record["media_ref"])
        if not record.get("id"):
            record["id"] = content_id(record.get("text"), record.get("media")
                                      if record.get("media") is not None or digest is None
                                      else ref_of(digest).encode())
        record.setdefault("tokens", {})
        record.setdefault("modality", "text")
        self._ids.add(record["id"])
        self._buf.append(record)
        self._buf_bytes += len(record.get("text") or "") + len(record.get("media") or b"")
        self.records += 1
        if len(self._buf) >= self.batch_rows or self._buf_bytes >= self.batch_bytes:
            self._flush()

    def _place_media(self, record: dict, span: FileSpan | None) -> str:
        """Keep the media bytes exactly: inline when small, else as a blob; returns their sha256."""
        data = record.get("media")
        if span is not None and data is None and span.size <= self.media_inline_max_bytes:
            data = record["media"] = span.read()
        if data is not None and len(data) <= self.media_inline_max_bytes:
            digest = hashlib.sha256(data).hexdigest()
        else:
            if self._blob_store is None:
                self._blob_store = BlobStore(s=self.s)
            if data is not None:
                digest, size = self._blob_store.put(bytes(data)), len(data)
            else:
                assert span is not None
                with span.open() as fh:
                    digest, size = self._blob_store.put_stream(fh, limit=span.size)
                if size != span.size:
                    raise InvalidInput(f"{span.path}: {span.size} bytes expected at offset {span.offset}, "
                                       f"{size} read", hint="the file changed while it was ingested")
            record["media"] = None
            record["media_ref"] = ref_of(digest)
            self._blobs[digest] = size
        meta = record.get("meta")
        if isinstance(meta, dict):
            meta["sha256"] = digest
        return digest

    def _place_attachments(self, record: dict) -> None:
        """Further media objects of one record (an episode's camera videos), kept exactly as blobs.

        ``record["attachments"]`` maps a name to a :class:`FileSpan` or bytes; each becomes a blob and
        ``meta.attachments[name] = {"media_ref", "bytes"}``. A span already stored in this build (a
        LeRobot v3.0 video file that many episodes share) is copied once. Refs already in
        ``meta.attachments`` (a curated or derived version) are listed in the manifest as they are.
        """
        given = record.pop("attachments", None) or {}
        if not given and record.get("modality") != "episode":
            return  # a text record's meta may hold a field of that name: it is the provider's, not ours
        meta = record.get("meta")
        if not isinstance(meta, dict):
            meta = record["meta"] = {}
        placed = meta.setdefault("attachments", {}) if given else (meta.get("attachments") or {})
        if not isinstance(placed, dict):
            raise InvalidInput(f"record {record.get('id')!r}: meta.attachments must be an object of media refs",
                               hint="episode records are made by the episode readers")
        for name, src in sorted(given.items()):
            if self._blob_store is None:
                self._blob_store = BlobStore(s=self.s)
            if isinstance(src, FileSpan):
                key = (src.path, src.offset, src.size)
                if key not in self._span_digests:
                    with src.open() as fh:
                        got, size = self._blob_store.put_stream(fh, limit=src.size)
                    if size != src.size:
                        raise InvalidInput(f"{src.path}: {src.size} bytes expected, {size} read",
                                           hint="the file changed while it was ingested")
                    self._span_digests[key] = got
                digest, size = self._span_digests[key], src.size
            else:
                digest, size = self._blob_store.put(bytes(src)), len(src)
            self._blobs[digest] = size
            placed[name] = {"media_ref": ref_of(digest), "bytes": size}
        for name, entry in placed.items():
            if name not in given and isinstance(entry, dict) and entry.get("media_ref"):
                self._keep_ref(entry["media_ref"])

    def _keep_ref(self, ref: str) -> str:
        """A record that already refers to a blob (a curated or derived version): the new manifest
        lists that blob too, so its id covers the bytes and ``verify`` checks them."""
        from ciyuan.store.blobs import digest_of

        digest = digest_of(ref)
        if digest not in self._blobs:
            if self._blob_store is None:
                self._blob_store = BlobStore(s=self.s)
            size = self._blob_store.size(digest)
            if size is None:
                raise InvalidInput(f"media_ref {ref} names no blob in {self._blob_store.root}/blobs",
                                   hint="run: ciyuan verify on the version the record came from")
            self._blobs[digest] = size
        return digest

    def add_counted(self, records: list[dict]) -> None:
        """Add a batch whose ``tokens`` already hold every tokenizer's count (no recounting)."""
        for r in records:
            self.add(r)

    def reject(self, record: dict, step: str, reason: str, code: str | None = None) -> None:
        """Keep a record a curation step rejected, with the step and reason.

        ``code`` (``step.rule``, e.g. ``quality.c4_curly_bracket``) is what ``rejected_by_reason``
        counts by when given: the reason sentence carries measured values, so it would split counts.
        """
        if not record.get("id"):
            record["id"] = content_id(record.get("text"), record.get("media"))
        record.setdefault("tokens", {})
        record["_rejected"] = {"step": step, "reason": reason, **({"code": code} if code else {})}
        self._rej_buf.append(record)
        self.rejected += 1
        if len(self._rej_buf) >= self.batch_rows:
            self._flush_rejected()

    def quarantine(self, source: str, line: int, reason: str, raw: bytes, member: str | None = None) -> None:
        """Keep an input item that could not be read as a record, with where it was (``member``: inside
        a tar) and why."""
        self._q_buf.append({"source": source, "line": line, "reason": reason, "raw": raw, "member": member})
        self.quarantined += 1
        if len(self._q_buf) >= 1024:
            self._flush_quarantine()

    def quarantine_unlisted(self, source: str, first_line: int, kinds: Counter[str], listed: int) -> None:
        """Count bad items of ``source`` past the per-file cap without keeping them, and list one row
        that says how many there were and of which kinds (the totals count every item)."""
        n = sum(kinds.values())
        if not n:
            return
        self.quarantined += n
        self._quarantine._reasons.update(kinds)
        by_kind = ", ".join(f"{k}: {v}" for k, v in sorted(kinds.items()))
        reason = (f"quarantine cap reached: {n} more bad item(s) from line {first_line} on are not listed "
                  f"(only the first {listed} of this file are; by reason: {by_kind})")
        self._q_buf.append({"source": source, "line": first_line, "reason": reason, "raw": b"", "summary": True})
        if len(self._q_buf) >= 1024:
            self._flush_quarantine()

    # -- flushing --------------------------------------------------------------------------------
    def _count_missing(self, records: list[dict]) -> None:
        from ciyuan.tokens import get_schedule

        for r in records:  # a count read back from a shard is kept, not counted again beside it
            name_token_counts(r["tokens"], self.tokenizers)
        for t in self.tokenizers:
            todo = [r for r in records if t not in r["tokens"]]
            if todo:
                counts = get_schedule(t).count_records(todo)
                for r, c in zip(todo, counts, strict=True):
                    r["tokens"][t] = c

    def _flush(self) -> None:
        if not self._buf:
            return
        self._count_missing(self._buf)
        self._records.write(to_table(self._buf, self.tokenizers), tokens={})
        self._buf = []
        self._buf_bytes = 0

    def _flush_rejected(self) -> None:
        if not self._rej_buf:
            return
        self._count_missing(self._rej_buf)
        self._rejected.write(
            to_table(self._rej_buf, self.tokenizers, rejected=True),
            tokens={},
            reasons=[r["_rejected"].get("code") or f"{r['_rejected']['step']}: {r['_rejected']['reason']}"
                     for r in self._rej_buf],
        )
        self._rej_buf = []

    def _flush_quarantine(self) -> None:
        if not self._q_buf:
            return
        table = pa.Table.from_pylist(self._q_buf, schema=QUARANTINE_SCHEMA)
        self._quarantine.write(table, reasons=[q["reason"] for q in self._q_buf if not q.get("summary")])
        self._q_buf = []

    def duplicate_ids(self) -> int:
        """How many records share an id with an earlier record."""
        return self._ids.duplicates()

    # -- commit ----------------------------------------------------------------------------------
    def commit(self):
        """Seal the version: hash shards, write the manifest, move into place, register it."""
        from ciyuan.store.versions import register_version
        from ciyuan.tokens import schedule_version

        self._flush()
        self._flush_rejected()
        self._flush_quarantine()
        shards = self._records.finish(self.staging)
        rejected = self._rejected.finish(self.staging)
        quarantine = self._quarantine.finish(self.staging)
        totals_tokens = {t: sum(s.get("tokens", {}).get(token_column(t)[len("tokens__"):], 0) for s in shards)
                         for t in self.tokenizers}
        manifest = {
            "format": FORMAT,
            "dataset": self.dataset,
            "parent": self.parent,
            "made_by": self.made_by,
            "schema": {f.name: str(f.type) for f in record_schema(self.tokenizers)},
            "tokenizers": {t: schedule_version(t) for t in self.tokenizers},
            "shards": shards,
            "rejected": rejected,
            "quarantine": quarantine,
            **({"blobs": [{"sha256": d, "bytes": n} for d, n in sorted(self._blobs.items())]} if self._blobs else {}),
            "totals": {
                "records": sum(s["rows"] for s in shards),
                "bytes": sum(s["bytes"] for s in shards),
                "tokens": totals_tokens,
                "rejected": self.rejected,
                "quarantined": self.quarantined,
                "duplicate_ids": self.duplicate_ids(),
                "rejected_by_reason": dict(sorted(self._rejected._reasons.items())),
                "quarantined_by_reason": dict(sorted(self._quarantine._reasons.items())),
            },
            **({"extra": self.extra} if self.extra else {}),
        }
        vid = version_id(manifest)
        self._ids.close()
        manifest["id"] = vid
        manifest["created_at"] = datetime.now(UTC).isoformat()
        final = sfs.join(self.dataset_dir, vid)
        if self.fs.exists(sfs.join(final, "manifest.json")):
            self.fs.rm(self.staging, recursive=True)
        else:
            with self.fs.open(sfs.join(self.staging, "manifest.json"), "w") as fh:
                json.dump(manifest, fh, ensure_ascii=False, indent=1, sort_keys=True)
            if self.fs.exists(final):
                self.fs.rm(final, recursive=True)
            self.fs.mv(self.staging, final, recursive=True)
        return register_version(manifest, location=final, s=self.s)

    def abort(self) -> None:
        self._ids.close()
        for w in (self._records, self._rejected, self._quarantine):
            w._close()
        if self.fs.exists(self.staging):
            self.fs.rm(self.staging, recursive=True)
