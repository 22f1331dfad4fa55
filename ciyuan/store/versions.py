"""Finding and reading versions: ``NAME`` is the latest version, ``NAME@PREFIX`` a given one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ciyuan import db
from ciyuan.config import Settings, settings
from ciyuan.errors import InvalidInput, NotFound
from ciyuan.store import fs as sfs
from ciyuan.store.blobs import digest_of
from ciyuan.store.records import TOKENS_PREFIX, from_batch, token_column
from ciyuan.store.tables import DatasetRow, TokenCountRow, VersionRow
from ciyuan.tokens import get_schedule


@dataclass
class Version:
    """An immutable, content-addressed version of a dataset."""

    id: str
    dataset: str
    manifest: dict
    location: str
    created_at: datetime | None = None
    s: Settings = field(default_factory=settings, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.id[:12]}"

    @property
    def parent(self) -> str | None:
        return self.manifest.get("parent")

    @property
    def records(self) -> int:
        return self.manifest["totals"]["records"]

    @property
    def tokenizers(self) -> list[str]:
        return list(self.manifest.get("tokenizers", {}))

    def fs(self):
        return sfs.filesystem(self.location)[0]

    def path(self, rel: str) -> str:
        return sfs.join(sfs.filesystem(self.location)[1], rel)

    def shard_paths(self, partition: str = "shards") -> list[str]:
        return [self.path(s["path"]) for s in self.manifest[partition]]

    def iter_batches(
        self, columns: list[str] | None = None, partition: str = "shards", batch_size: int = 4096
    ) -> Iterator[pa.RecordBatch]:
        """Arrow batches of one partition (``shards``, ``rejected`` or ``quarantine``), in order."""
        fs = self.fs()
        for path in self.shard_paths(partition):
            with fs.open(path, "rb") as fh:
                pf = pq.ParquetFile(fh, pre_buffer=False)  # pre-buffering keeps every row group read until closed
                cols = None if columns is None else [c for c in columns if c in pf.schema_arrow.names]
                yield from pf.iter_batches(batch_size=batch_size, columns=cols)

    def iter_records(self, columns: list[str] | None = None, partition: str = "shards", *,
                     resolve_media: bool = False) -> Iterator[dict]:
        """Record dicts in order. ``resolve_media`` fills ``media`` from the blob a ``media_ref``
        names (checked against its sha256), so a caller sees every record's bytes the same way."""
        blobs = None
        for batch in self.iter_batches(columns, partition):
            for rec in from_batch(batch):
                if resolve_media and rec.get("media") is None and rec.get("media_ref"):
                    if blobs is None:
                        blobs = self.blobs()
                    rec["media"] = blobs.get(digest_of(rec["media_ref"]))
                yield rec

    def blobs(self):
        """The blob store this version's ``media_ref``s point into (the same storage as its shards)."""
        from ciyuan.store.blobs import BlobStore

        return BlobStore(s=self.s)

    def open_media(self, record: dict):
        """A binary file of one record's media, inline or a blob (a large blob is not loaded)."""
        import io

        if record.get("media") is not None:
            return io.BytesIO(record["media"])
        if not record.get("media_ref"):
            raise NotFound(f"record {record.get('id')!r} of {self.ref} holds no media")
        return self.blobs().open(digest_of(record["media_ref"]))

    def read_shard(self, index: int, columns: list[str] | None = None, partition: str = "shards") -> pa.Table:
        with self.fs().open(self.shard_paths(partition)[index], "rb") as fh:
            return pq.read_table(fh, columns=columns)

    def token_totals(self) -> dict[str, int]:
        """Token totals under every tokenizer counted so far (at creation or cached later)."""
        out = dict(self.manifest["totals"]["tokens"])
        with db.session(self.s) as sess:
            for row in sess.scalars(select(TokenCountRow).where(TokenCountRow.version_id == self.id)):
                out.setdefault(row.tokenizer, row.tokens)
        return out

    def has_tokens(self, tokenizer: str) -> bool:
        return tokenizer in self.manifest.get("tokenizers", {})

    def iter_token_counts(self, tokenizer: str) -> Iterator[pa.Array]:
        """Per-record counts under ``tokenizer``, one array per shard, from the shards or the cache."""
        col = token_column(tokenizer)
        if self.has_tokens(tokenizer):
            fs = self.fs()
            for path in self.shard_paths():
                with fs.open(path, "rb") as fh:
                    yield pq.read_table(fh, columns=[col])[col].combine_chunks()
            return
        paths = self.cached_token_paths(tokenizer)
        if paths is None:
            raise NotFound(
                f"{self.ref} has no counts under tokenizer {tokenizer!r}",
                hint=f"run: ciyuan tokens {self.ref} --schedule {tokenizer}",
            )
        fs = self.fs()
        for path in paths:
            with fs.open(path, "rb") as fh:
                yield pq.read_table(fh)[col].combine_chunks()

    def cached_token_paths(self, tokenizer: str) -> list[str] | None:
        """The sidecar count files (``tokens/<tokenizer>/``) made by ``ciyuan tokens``, if still valid.

        Here, not in ``store.token_cache`` (which writes them), so reading a version never imports
        the module that computes counts: the two used to import each other.
        """
        with db.session(self.s) as sess:
            row = sess.get(TokenCountRow, {"version_id": self.id, "tokenizer": tokenizer})
            if row is None or row.location is None:
                return None
            if row.tokenizer_version != get_schedule(tokenizer).version:
                return None  # the tokenizer changed since: recount
            return [sfs.join(row.location, f"part-{i:05d}.parquet") for i in range(len(self.manifest["shards"]))]

    def to_dict(self) -> dict:
        t = self.manifest["totals"]
        return {
            "dataset": self.dataset,
            "version": self.id,
            "parent": self.parent,
            "created_at": self.manifest.get("created_at"),
            "made_by": self.manifest.get("made_by"),
            "records": t["records"],
            "bytes": t["bytes"],
            "shards": len(self.manifest["shards"]),
            "tokens": self.token_totals(),
            "tokenizers": self.manifest.get("tokenizers", {}),
            "quarantined": t["quarantined"],
            "quarantined_by_reason": t.get("quarantined_by_reason", {}),
            "rejected": t["rejected"],
            "rejected_by_reason": t.get("rejected_by_reason", {}),
            "duplicate_ids": t.get("duplicate_ids", 0),
            "location": self.location,
        }


def _row_to_version(row: VersionRow, name: str, s: Settings) -> Version:
    return Version(id=row.id, dataset=name, manifest=json.loads(row.manifest), location=row.location,
                   created_at=row.created_at, s=s)


def register_version(manifest: dict, location: str, s: Settings | None = None) -> Version:
    """Record a sealed version in the database (idempotent: the same id is registered once)."""
    s = s or settings()
    name = manifest["dataset"]
    now = datetime.now(UTC)
    for _attempt in range(3):
        try:
            with db.session(s) as sess:
                ds = sess.scalar(select(DatasetRow).where(DatasetRow.name == name))
                if ds is None:
                    ds = DatasetRow(name=name, created_at=now)
                    sess.add(ds)
                    sess.flush()
                row = sess.get(VersionRow, manifest["id"])
                if row is None:
                    t = manifest["totals"]
                    row = VersionRow(
                        id=manifest["id"], dataset_id=ds.id, parent_id=manifest.get("parent"), created_at=now,
                        records=t["records"], quarantined=t["quarantined"], rejected=t["rejected"],
                        bytes=t["bytes"], location=location, manifest=json.dumps(manifest, ensure_ascii=False),
                    )
                    sess.add(row)
                return _row_to_version(row, name, s)
        except IntegrityError:  # a concurrent writer registered the dataset or version first
            continue
    raise RuntimeError("could not register version after 3 attempts")


REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:@(?P<v>[0-9a-fA-F]{1,64}))?$")


def resolve(ref: str, s: Settings | None = None) -> Version:
    """``NAME`` (the latest version) or ``NAME@VERSION`` (a unique prefix is enough)."""
    s = s or settings()
    m = REF.match(ref.strip())
    if not m:
        raise InvalidInput(f"{ref!r} is not a dataset reference", hint="write NAME or NAME@VERSION, e.g. logs@3fa2c1")
    name, prefix = m["name"], (m["v"] or "").lower()
    with db.session(s) as sess:
        ds = sess.scalar(select(DatasetRow).where(DatasetRow.name == name))
        if ds is None:
            raise NotFound(f"no dataset named {name!r}", hint="list them with: ciyuan datasets")
        q = select(VersionRow).where(VersionRow.dataset_id == ds.id)
        if prefix:
            q = q.where(VersionRow.id.startswith(prefix))
        rows = list(sess.scalars(q.order_by(VersionRow.created_at.desc(), VersionRow.id).limit(2 if prefix else 1)))
    if not rows:
        raise NotFound(f"dataset {name!r} has no version {prefix!r}", hint=f"list them with: ciyuan show {name}")
    if prefix and len(rows) > 1:
        raise InvalidInput(f"version prefix {prefix!r} of {name!r} is ambiguous", hint="give more characters")
    return _row_to_version(rows[0], name, s)


def get_version(version_id: str, s: Settings | None = None) -> Version:
    """The version whose full id is ``version_id`` (indexes and listings keep full ids, not refs)."""
    s = s or settings()
    with db.session(s) as sess:
        row = sess.get(VersionRow, version_id)
        name = None if row is None else sess.get(DatasetRow, row.dataset_id).name
    if row is None:
        raise NotFound(f"no version {version_id!r}", hint="give NAME@VERSION; list them with: ciyuan show NAME")
    return _row_to_version(row, name, s)


def list_versions(name: str, s: Settings | None = None) -> list[dict]:
    s = s or settings()
    with db.session(s) as sess:
        ds = sess.scalar(select(DatasetRow).where(DatasetRow.name == name))
        if ds is None:
            raise NotFound(f"no dataset named {name!r}", hint="list them with: ciyuan datasets")
        rows = sess.scalars(select(VersionRow).where(VersionRow.dataset_id == ds.id)
                            .order_by(VersionRow.created_at.desc()))
        return [{"version": r.id, "parent": r.parent_id, "created_at": r.created_at, "records": r.records,
                 "quarantined": r.quarantined, "rejected": r.rejected} for r in rows]


def list_datasets(s: Settings | None = None) -> list[dict]:
    """Every dataset with its latest version's summary."""
    s = s or settings()
    out = []
    with db.session(s) as sess:
        for ds in sess.scalars(select(DatasetRow).order_by(DatasetRow.name)):
            rows = list(sess.scalars(select(VersionRow).where(VersionRow.dataset_id == ds.id)
                                     .order_by(VersionRow.created_at.desc())))
            if not rows:
                continue
            latest = json.loads(rows[0].manifest)
            out.append({
                "dataset": ds.name, "versions": len(rows), "latest": rows[0].id,
                "records": rows[0].records, "tokens": latest["totals"]["tokens"],
                "created_at": rows[0].created_at,
            })
    return out


__all__ = ["Version", "resolve", "list_datasets", "list_versions", "register_version", "TOKENS_PREFIX"]
