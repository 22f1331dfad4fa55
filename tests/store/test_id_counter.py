"""Duplicate ids are counted on disk, the same whether they fit one sort or need partitions."""

from __future__ import annotations

import random

import pytest

from ciyuan.store import id_counter
from ciyuan.store.id_counter import IdCounter


@pytest.mark.parametrize("chunk", [1 << 22, 64, 7])
def test_duplicates_counted_alike_in_one_chunk_or_many_partitions(chunk, monkeypatch) -> None:
    monkeypatch.setattr(id_counter, "CHUNK", chunk)
    monkeypatch.setattr(id_counter, "_BUF", 5)
    rng = random.Random(chunk)
    ids = [f"r{rng.randrange(400)}" for _ in range(1000)]
    c = IdCounter()
    for i in ids:
        c.add(i)
    assert c.count == 1000
    assert c.duplicates() == 1000 - len(set(ids))
    assert c.duplicates() == 1000 - len(set(ids))  # asking twice gives the same answer
    c.close()


def test_no_ids_no_duplicates() -> None:
    assert IdCounter().duplicates() == 0
