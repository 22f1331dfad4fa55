"""Count tokens over many texts on several cores, in order.

Callers hand over batches of any size; this module re-cuts them into chunks of about
``chunk_chars`` characters (a few MB) so that every worker stays busy however the caller batched
(one huge batch or thousands of tiny ones), then re-assembles the counts into the caller's batches
in the caller's order. Each worker process loads the tokenizer once: on Linux the pool forks after
the parent has loaded it, so workers start with the vocabulary already in (shared) memory.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor

from ciyuan.errors import InvalidInput
from ciyuan.tokens.tokenizers import Tokenizer, get_tokenizer

DEFAULT_CHUNK_CHARS = 2_000_000

_worker_tok: Tokenizer | None = None


def _init_worker(name: str) -> None:
    global _worker_tok
    _worker_tok = get_tokenizer(name)


def _count_chunk(texts: list[str]) -> list[int]:
    assert _worker_tok is not None, "worker not initialised"
    return _worker_tok.count_batch(texts)


def _start_method(requested: str | None) -> str:
    if requested:
        return requested
    # fork: children inherit the loaded vocabulary, no second load (~0.5 s) per worker
    return "fork" if "fork" in mp.get_all_start_methods() else "spawn"


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
    if not isinstance(workers, int) or workers < 1:
        raise InvalidInput(f"workers must be a positive integer, got {workers!r}", hint="use --workers 1 or more")
    if chunk_chars < 1:
        raise InvalidInput(f"chunk_chars must be positive, got {chunk_chars}", hint="use a few million")
    tok = get_tokenizer(name)
    if workers == 1:
        return (tok.count_batch(batch) for batch in batches)
    return _count_pool(batches, name, workers, chunk_chars, _start_method(start_method))


def _count_pool(
    batches: Iterable[list[str]], name: str, workers: int, chunk_chars: int, method: str
) -> Iterator[list[int]]:
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
        max_workers=workers, mp_context=mp.get_context(method), initializer=_init_worker, initargs=(name,)
    )
    try:
        chunk: list[str] = []
        size = 0
        for batch in batches:
            sizes.append(len(batch))
            for text in batch:
                chunk.append(text)
                size += len(text)
                if size >= chunk_chars:
                    inflight.append(pool.submit(_count_chunk, chunk))
                    chunk, size = [], 0
                    while len(inflight) >= max_inflight:
                        ready.extend(inflight.popleft().result())
            while inflight and inflight[0].done():
                ready.extend(inflight.popleft().result())
            yield from take_ready()
        if chunk:
            inflight.append(pool.submit(_count_chunk, chunk))
        while inflight:
            ready.extend(inflight.popleft().result())
            yield from take_ready()
        yield from take_ready()  # trailing empty batches
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
