"""Counts under a tokenizer or schedule a version was not made with: computed once, cached beside its shards.

The version stays immutable; the cache is a sidecar folder ``tokens/<tokenizer>/`` with one Parquet
file per shard, and a row in ``token_counts`` naming the schedule version it was made with.

Counting goes through the token schedules (:mod:`ciyuan.tokens.schedule`), never a text tokenizer:
a text record is counted by the schedule named ``tokenizer``, a record of another modality by its
modality's default schedule, so recounting a mixed dataset counts its images' patches rather than
their (absent) text. Reading the cache is :meth:`Version.cached_token_paths`: this module imports
``store.versions``, never the reverse.

A media schedule (``qwen2-vl-image``, ``whisper-audio``, ...) counts each record of its modality from
its probed ``meta``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from ciyuan import db
from ciyuan.store import fs as sfs
from ciyuan.store.records import token_column
from ciyuan.store.tables import TokenCountRow
from ciyuan.store.versions import Version
from ciyuan.tokens import get_schedule, schedule_for_modality

LENGTH_BUCKETS = [0, 16, 64, 256, 1024, 4096, 16384, 65536]


def _safe(tokenizer: str) -> str:
    return token_column(tokenizer)[len("tokens__"):]


def count_records(records: list[dict], tokenizer: str) -> list[int]:
    """Counts of ``records`` in order under ``tokenizer``.

    A text schedule (a tokenizer) counts text records, and a record of another modality by its
    modality's default schedule, so recounting a mixed dataset counts its images' patches rather
    than their absent text. A media schedule counts every record itself: its own modality from the
    probed facts, any other as 0 (one schedule prices one modality).
    """
    named = get_schedule(tokenizer)
    if named.modality != "text":
        return [int(n) for n in named.count_records(records)]
    out = [0] * len(records)
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[r.get("modality") or "text"].append(i)
    for modality, idx in groups.items():
        sched = named if modality == "text" else schedule_for_modality(modality, tokenizer)
        for i, n in zip(idx, sched.count_records([records[i] for i in idx]), strict=True):
            out[i] = int(n)
    return out


def _shard_records(version: Version, i: int, batch: int = 2048) -> Iterator[list[dict]]:
    """One shard's records with what a schedule reads (meta stays JSON text: schedules parse it)."""
    table = version.read_shard(i, columns=["id", "modality", "text", "meta"])
    for b in table.to_batches(max_chunksize=batch):
        yield b.to_pylist()


def _count_batches(batches: Iterator[list[dict]], tokenizer: str, workers: int) -> Iterator[list[int]]:
    """Counts per batch, in order; with ``workers > 1`` batches are counted in worker processes."""
    if workers <= 1:
        for b in batches:
            yield count_records(b, tokenizer)
        return
    get_schedule(tokenizer)  # load before forking: workers start with the vocabulary in memory
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    inflight: deque[Future] = deque()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context(method)) as pool:
        for b in batches:
            inflight.append(pool.submit(count_records, b, tokenizer))
            while len(inflight) > workers * 2:
                yield inflight.popleft().result()
        while inflight:
            yield inflight.popleft().result()


def ensure_counts(version: Version, tokenizer: str, workers: int = 1,
                  on_progress: Callable[[int], None] | None = None) -> bool:
    """Make sure per-record counts exist under ``tokenizer``; True when they had to be computed."""
    if version.has_tokens(tokenizer) or version.cached_token_paths(tokenizer) is not None:
        return False
    sched_version = get_schedule(tokenizer).version
    fs = version.fs()
    folder = version.path(f"tokens/{_safe(tokenizer)}")
    fs.makedirs(folder, exist_ok=True)
    col = token_column(tokenizer)
    total = 0
    for i in range(len(version.manifest["shards"])):
        counts: list[int] = []
        for part in _count_batches(_shard_records(version, i), tokenizer, workers):
            counts.extend(part)
            if on_progress:
                on_progress(len(part))
        total += sum(counts)
        with fs.open(sfs.join(folder, f"part-{i:05d}.parquet"), "wb") as fh:
            pq.write_table(pa.table({col: pa.array(counts, pa.int64())}), fh, compression="zstd")
    with db.session(version.s) as sess:
        row = sess.get(TokenCountRow, {"version_id": version.id, "tokenizer": tokenizer})
        if row is None:
            sess.add(TokenCountRow(version_id=version.id, tokenizer=tokenizer, tokenizer_version=sched_version,
                                   records=version.records, tokens=total, location=folder,
                                   created_at=datetime.now(UTC)))
        else:
            row.tokenizer_version, row.tokens, row.location = sched_version, total, folder
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
    """Totals and distributions (by language, domain, length bucket) under ``tokenizer``."""
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
