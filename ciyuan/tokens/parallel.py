"""Count tokens over many texts, or many records through a token schedule, on several cores, in order.

Callers hand over batches of any size; this module re-cuts them into chunks of about
``chunk_chars`` characters (a few MB) so that every worker stays busy however the caller batched
(one huge batch or thousands of tiny ones), then re-assembles the counts into the caller's batches
in the caller's order. Each worker process loads the tokenizer once: on Linux the pool forks after
the parent has loaded it, so workers start with the vocabulary already in (shared) memory.

Records go to workers as columns of only the keys their schedule reads (``record_fields``): a list
of texts pickles as fast as :func:`count_parallel`'s, where a list of record dicts costs the parent
(the process that also reads and writes) about 40% more per batch.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from ciyuan.errors import InvalidInput
from ciyuan.tokens.schedule import TokenSchedule, get_schedule
from ciyuan.tokens.tokenizers import Tokenizer, get_tokenizer

DEFAULT_CHUNK_CHARS = 2_000_000
MEDIA_RECORD_CHARS = 256  # what a record without text weighs when cutting chunks (formulas are cheap)

_worker_tok: Tokenizer | None = None
_worker_sched: TokenSchedule | None = None


def _init_worker(name: str) -> None:
    global _worker_tok
    gc.freeze()  # what the fork inherited is never scanned here: no copy-on-write of the parent's pages
    _worker_tok = get_tokenizer(name)


def _count_chunk(texts: list[str]) -> list[int]:
    assert _worker_tok is not None, "worker not initialised"
    return _worker_tok.count_batch(texts)


def _init_schedule_worker(name: str) -> None:
    global _worker_sched
    gc.freeze()  # as in _init_worker: the records rebuilt per chunk would trigger scans of inherited objects
    _worker_sched = get_schedule(name)


def _count_records_chunk(columns: dict[str, list[Any]] | list[dict]) -> list[int]:
    assert _worker_sched is not None, "worker not initialised"
    if isinstance(columns, list):
        return _worker_sched.count_records(columns)
    keys = list(columns)
    n = len(columns[keys[0]]) if keys else 0
    records = [{k: v for k in keys if (v := columns[k][i]) is not None} for i in range(n)]
    return _worker_sched.count_records(records)


def _same(chunk: list[Any]) -> list[Any]:
    return chunk


def _start_method(requested: str | None) -> str:
    if requested:
        return requested
    # fork: children inherit the loaded vocabulary, no second load (~0.5 s) per worker
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


def _check(workers: int, chunk_chars: int) -> None:
    if not isinstance(workers, int) or workers < 1:
        raise InvalidInput(f"workers must be a positive integer, got {workers!r}", hint="use --workers 1 or more")
    if chunk_chars < 1:
        raise InvalidInput(f"chunk_chars must be positive, got {chunk_chars}", hint="use a few million")


def count_parallel(
    batches: Iterable[list[str]],
    name: str,
    workers: int,
    *,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    start_method: str | None = None,
) -> Iterator[list[int]]:
    """Yield the token counts of each batch of ``batches``, in order, using ``workers`` processes.

    ``workers=1`` counts in this process with no pool. The tokenizer name is checked (and the
    tokenizer loaded) before this returns, so a bad name fails at the call, not at first use.
    """
    _check(workers, chunk_chars)
    tok = get_tokenizer(name)
    if workers == 1:
        return (tok.count_batch(batch) for batch in batches)
    return _count_pool(
        batches, workers, chunk_chars, _start_method(start_method), _init_worker, name, _count_chunk, len, _same
    )


def count_records_parallel(
    batches: Iterable[list[dict]],
    schedule: str,
    workers: int,
    *,
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
    start_method: str | None = None,
) -> Iterator[list[int]]:
    """Yield ``get_schedule(schedule).count_records(batch)`` for each batch, in order, on ``workers`` processes.

    The same counts as one process for any schedule (text or a media formula); ``workers=1`` counts
    here with no pool. The schedule is looked up (and its tokenizer loaded) before this returns.
    """
    _check(workers, chunk_chars)
    sched = get_schedule(schedule)
    _ = sched.version  # loads a text schedule's tokenizer now: a bad vocabulary fails here, forks share it
    if workers == 1:
        return (sched.count_records(batch) for batch in batches)
    fields: tuple[str, ...] | None = getattr(sched, "record_fields", None)

    def weight(record: dict) -> int:
        text = record.get("text")
        return len(text) if isinstance(text, str) and text else MEDIA_RECORD_CHARS

    def pack(chunk: list[dict]) -> dict[str, list[Any]] | list[dict]:
        if fields is None:
            return chunk
        return {k: [r.get(k) for r in chunk] for k in fields}

    return _count_pool(
        batches, workers, chunk_chars, _start_method(start_method), _init_schedule_worker, schedule,
        _count_records_chunk, weight, pack,
    )


def _count_pool(
    batches: Iterable[list[Any]],
    workers: int,
    chunk_chars: int,
    method: str,
    initializer: Callable[[str], None],
    name: str,
    work: Callable[[Any], list[int]],
    weight: Callable[[Any], int],
    pack: Callable[[list[Any]], Any],
) -> Iterator[list[int]]:
    """Cut ``batches`` into chunks of about ``chunk_chars`` (by ``weight``), count each with ``work`` in a
    pool (``pack`` makes what is sent), and give the counts back in the caller's batches."""
    max_inflight = workers * 3
    inflight: deque[Future] = deque()
    sizes: deque[int] = deque()  # lengths of caller batches not yet yielded
    ready: list[int] = []  # counts received, in input order, not yet yielded

    def take_ready() -> Iterator[list[int]]:
        while sizes and len(ready) >= sizes[0]:
            n = sizes.popleft()
            out = ready[:n]
            del ready[:n]
            yield out

    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=mp.get_context(method), initializer=initializer, initargs=(name,)
    )
    try:
        chunk: list[Any] = []
        size = 0
        for batch in batches:
            sizes.append(len(batch))
            for item in batch:
                chunk.append(item)
                size += weight(item)
                if size >= chunk_chars:
                    inflight.append(pool.submit(work, pack(chunk)))
                    chunk, size = [], 0
                    while len(inflight) >= max_inflight:
                        ready.extend(inflight.popleft().result())
            while inflight and inflight[0].done():
                ready.extend(inflight.popleft().result())
            yield from take_ready()
        if chunk:
            inflight.append(pool.submit(work, pack(chunk)))
        while inflight:
            ready.extend(inflight.popleft().result())
            yield from take_ready()
        yield from take_ready()  # trailing empty batches
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
