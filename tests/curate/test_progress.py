"""Curation reports progress per record and per shard for every stage, with totals known up front."""

import random
from collections import defaultdict

import pytest
from corpus import en_prose, zh_prose

from ciyuan.curate import pieces
from ciyuan.curate.curate import curate
from ciyuan.curate.executor import BATCH_ROWS, ProgressEvent


@pytest.fixture
def one_big_shard(home):
    """2,500 records in ONE shard: before, curate sat at 0/1 until the whole stage was done."""
    from ciyuan.store import VersionBuilder

    rng = random.Random(3)
    b = VersionBuilder("big", made_by={"command": "test"}, rows_per_shard=100_000)
    for i in range(2500):
        b.add({"id": f"r{i}", "text": en_prose(rng, 2) if i % 2 else zh_prose(rng, 2), "meta": {}})
    return b.commit()


def by_stage(events: list[ProgressEvent]) -> dict[str, list[ProgressEvent]]:
    out: dict[str, list[ProgressEvent]] = defaultdict(list)
    for ev in events:
        out[ev.stage].append(ev)
    return out


def test_every_stage_reports_records_within_a_shard(one_big_shard):
    events: list[ProgressEvent] = []
    res = curate(one_big_shard.ref, steps="normalize,exact_dedup,length", workers=1, on_progress=events.append)
    stages = by_stage(events)
    # the first scan of exact_dedup rides along with the normalize stage: one pass over the records
    assert list(stages) == ["normalize, exact_dedup scan 1", "exact_dedup, length", "write version"]
    for name, evs in stages.items():
        first, last = evs[0], evs[-1]
        assert (first.records_done, first.shards_done) == (0, 0), name  # announced before work starts
        assert first.records == 2500 and first.shards == 1, name  # the total is known up front
        assert (last.records_done, last.shards_done) == (2500, 1), name
        done = [e.records_done for e in evs]
        assert done == sorted(done), name
        # inside the one shard, the count moves batch by batch
        assert [e.records_done for e in evs if e.shards_done == 0][1:] == [BATCH_ROWS, 2 * BATCH_ROWS], name
    assert res["kept"] + res["rejected"] == 2500


def test_worker_processes_report_complete_totals(one_big_shard):
    events: list[ProgressEvent] = []
    curate(one_big_shard.ref, steps="normalize,length", workers=2, on_progress=events.append)
    stages = by_stage(events)
    assert list(stages) == ["normalize, length", "write version"]
    # with two workers the one shard is cut into pieces of row groups, one job each
    jobs = len(pieces.cut([one_big_shard.path(s["path"]) for s in one_big_shard.manifest["shards"]], 4))
    assert jobs == 2  # 2,500 records in row groups of 2,048
    for evs in stages.values():
        assert evs[-1] == ProgressEvent(evs[-1].stage, jobs, jobs, 2500, 2500)
        assert all(e.records_done <= e.records for e in evs)


def test_resumed_shards_count_as_done(dataset_many_shards):
    from ciyuan.curate.executor import Interrupted

    with pytest.raises(Interrupted):
        curate(dataset_many_shards.ref, steps="normalize,length", workers=1, _stop_after=2)
    events: list[ProgressEvent] = []
    curate(dataset_many_shards.ref, steps="normalize,length", workers=1, resume=True, on_progress=events.append)
    first = by_stage(events)["normalize, length"]
    assert (first[0].shards_done, first[0].shards) == (2, 4)
    assert first[0].records_done == 2 * 30 and first[0].records == 120
    assert (first[-1].shards_done, first[-1].records_done) == (4, 120)


@pytest.fixture
def dataset_many_shards(home):
    from ciyuan.store import VersionBuilder

    rng = random.Random(5)
    b = VersionBuilder("four", made_by={"command": "test"}, rows_per_shard=30)
    for i in range(120):
        b.add({"id": f"f{i}", "text": en_prose(rng, 2), "meta": {}})
    return b.commit()
