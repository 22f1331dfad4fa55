"""Counts under a tokenizer or schedule a version was not made with: computed once, cached beside its shards.

The version stays immutable; the cache is a sidecar folder ``tokens/<name>/`` with one Parquet
file per shard (column ``tokens__<name>``), and a row in ``token_counts`` naming the version of the
tokenizer or schedule it was made with. A text tokenizer counts ``text`` on all cores; a media
schedule (``qwen2-vl-image``, ``whisper-audio``, ...) counts each record from its probed ``meta``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from ciyuan import db
from ciyuan.store import fs as sfs
from ciyuan.store.records import from_batch, token_column
from ciyuan.store.tables import TokenCountRow
from ciyuan.store.versions import Version

LENGTH_BUCKETS = [0, 16, 64, 256, 1024, 4096, 16384, 65536]


def _safe(tokenizer: str) -> str:
    return token_column(tokenizer)[len("tokens__"):]


def cached_count_paths(version: Version, tokenizer: str) -> list[str] | None:
    with db.session(version.s) as sess:
        row = sess.get(TokenCountRow, {"version_id": version.id, "tokenizer": tokenizer})
        if row is None or row.location is None:
            return None
        from ciyuan.tokens import get_schedule

        if row.tokenizer_version != get_schedule(tokenizer).version:
            return None  # the tokenizer or schedule changed since: recount
        return [sfs.join(row.location, f"part-{i:05d}.parquet") for i in range(len(version.manifest["shards"]))]


def ensure_counts(version: Version, tokenizer: str, workers: int = 1,
                  on_progress: Callable[[int], None] | None = None) -> bool:
    """Make sure per-record counts exist under ``tokenizer``; True when they had to be computed."""
    from ciyuan.tokens import count_parallel, get_schedule
    from ciyuan.tokens.schedule import TextSchedule

    if version.has_tokens(tokenizer) or cached_count_paths(version, tokenizer) is not None:
        return False
    tok = get_schedule(tokenizer)
    by_text = isinstance(tok, TextSchedule)  # text goes to all cores; other schedules read meta
    fs = version.fs()
    folder = version.path(f"tokens/{_safe(tokenizer)}")
    fs.makedirs(folder, exist_ok=True)
    col = token_column(tokenizer)
    total = 0
    for i in range(len(version.manifest["shards"])):
        def texts(i: int = i) -> Iterator[list[str]]:
            for b in version.read_shard(i, columns=["text"]).to_batches(max_chunksize=2048):
                yield [t or "" for t in b.column("text").to_pylist()]

        def counted(i: int = i) -> Iterator[list[int]]:
            """A media schedule reads the probed facts in meta (no bytes, no text): one process is plenty."""
            table = version.read_shard(i, columns=["id", "modality", "meta"])
            for b in table.to_batches(max_chunksize=2048):
                yield tok.count_records(from_batch(b))

        counts: list[int] = []
        for part in count_parallel(texts(), tokenizer, workers) if by_text else counted():
            counts.extend(part)
            if on_progress:
                on_progress(len(part))
        total += sum(counts)
        with fs.open(sfs.join(folder, f"part-{i:05d}.parquet"), "wb") as fh:
            pq.write_table(pa.table({col: pa.array(counts, pa.int64())}), fh, compression="zstd")
    with db.session(version.s) as sess:
        row = sess.get(TokenCountRow, {"version_id": version.id, "tokenizer": tokenizer})
        if row is None:
            sess.add(TokenCountRow(version_id=version.id, tokenizer=tokenizer, tokenizer_version=tok.version,
                                   records=version.records, tokens=total, location=folder,
                                   created_at=datetime.now(UTC)))
        else:
            row.tokenizer_version, row.tokens, row.location = tok.version, total, folder
    return True


def _bucket(n: int) -> str:
    lo = 0
    for edge in LENGTH_BUCKETS[1:]:
        if n < edge:
            return f"{lo}-{edge - 1}"
        lo = edge
    return f"{lo}+"


def token_report(version: Version, tokenizer: str, workers: int = 1,
                 on_progress: Callable[[int], None] | None = None) -> dict:
    """Totals and distributions (by language, domain, length bucket) under ``tokenizer`` (or schedule)."""
    import json

    from ciyuan.tokens import get_schedule

    computed = ensure_counts(version, tokenizer, workers, on_progress)
    by_lang: Counter[str] = Counter()
    by_domain: Counter[str] = Counter()
    by_len: Counter[str] = Counter()
    recs_by_len: Counter[str] = Counter()
    records = tokens = 0
    max_tokens = 0
    counts_iter = version.iter_token_counts(tokenizer)
    fs = version.fs()
    for path in version.shard_paths():
        counts = next(counts_iter).to_pylist()
        with fs.open(path, "rb") as fh:
            metas = pq.read_table(fh, columns=["meta"])["meta"].to_pylist()
        for n, m in zip(counts, metas, strict=True):
            meta = json.loads(m) if m else {}
            lang = str(meta.get("language") or meta.get("lang") or "unknown")
            dom = str(meta.get("domain") or "unknown")
            by_lang[lang] += n
            by_domain[dom] += n
            b = _bucket(n)
            by_len[b] += n
            recs_by_len[b] += 1
            records += 1
            tokens += n
            max_tokens = max(max_tokens, n)
    order = {f"{lo}": i for i, lo in enumerate(LENGTH_BUCKETS)}
    buckets = sorted(by_len, key=lambda b: order.get(b.split("-")[0].rstrip("+"), 99))
    dist: dict = defaultdict(dict)
    dist["by_language"] = dict(by_lang.most_common())
    dist["by_domain"] = dict(by_domain.most_common())
    dist["by_length"] = {b: {"records": recs_by_len[b], "tokens": by_len[b]} for b in buckets}
    return {
        "dataset": version.dataset,
        "version": version.id,
        "tokenizer": tokenizer,
        "tokenizer_version": get_schedule(tokenizer).version,
        "schedule": tokenizer,
        "modality": get_schedule(tokenizer).modality,
        "records": records,
        "tokens": tokens,
        "mean_tokens": round(tokens / records, 2) if records else 0,
        "max_tokens": max_tokens,
        "computed": computed,
        "distribution": dict(dist),
    }
