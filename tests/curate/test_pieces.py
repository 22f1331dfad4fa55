"""One big source shard is cut into pieces of row groups, so every worker gets work (issue 12).

Before, a job was a whole shard: the 100 MB real corpus ingests as ONE shard, so ``--workers 2``
left one worker idle for the whole run. The cut must not change any decision: pieces in order are
the shard's records in order, and global steps order records by (piece, row).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import planted_corpus

from ciyuan.curate import executor, pieces
from ciyuan.curate.curate import curate

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def one_shard_many_groups(home):
    """The planted corpus of test_curate (copies spread over the shard), in row groups of 16 records."""
    from ciyuan.store import VersionBuilder

    b = VersionBuilder("onebig", made_by={"command": "test"}, rows_per_shard=100_000, batch_rows=16)
    for r in planted_corpus():
        b.add(dict(r, meta={}))
    return b.commit()


def decisions(ref: str) -> tuple[set, set]:
    from ciyuan.store import resolve

    v = resolve(ref)
    kept = {r["id"] for r in v.iter_records()}
    rejected = {
        (r["id"], r["_rejected"]["step"], r["_rejected"]["reason"]) for r in v.iter_records(partition="rejected")
    }
    return kept, rejected


def test_pieces_are_whole_row_groups_in_order(one_shard_many_groups):
    paths = one_shard_many_groups.shard_paths()
    assert len(paths) == 1
    assert pieces.cut(paths, 1) == paths
    cut = pieces.cut(paths, 8)
    n = len(cut)
    assert n > 4 and all(isinstance(p, pieces.Piece) and p.path == paths[0] for p in cut)
    groups = [g for p in cut for g in pieces.path_and_groups(p)[1]]
    assert groups == list(range(len(groups)))  # every row group once, in order
    assert sum(executor.shard_rows(cut)) == one_shard_many_groups.records
    ids = [r["id"] for p in cut for r in executor.read_shard(p, True)]
    assert ids == [r["id"] for r in one_shard_many_groups.iter_records()]


def test_cutting_one_shard_changes_no_decision_and_keeps_both_workers_busy(one_shard_many_groups):
    ref = one_shard_many_groups.ref
    whole = curate(ref, "text-pretrain", workers=1)  # one job for the shard
    groups = pieces.cut(one_shard_many_groups.shard_paths(), 4)  # what two workers cut it into
    assert len(groups) >= 3
    events = []
    cut = curate(ref, "text-pretrain", workers=2, on_progress=events.append)
    cut1 = whole
    assert decisions(f"onebig@{cut['version']}") == decisions(f"onebig@{whole['version']}")
    kept, rejected = decisions(f"onebig@{cut['version']}")
    steps = {step for _, step, _ in rejected}
    assert {"exact_dedup", "near_dedup"} <= steps  # the planted copies were found across pieces
    assert cut["version"] == cut1["version"]  # the worker count never changes a version
    assert [s["rejected"] for s in cut["steps"]] == [s["rejected"] for s in whole["steps"]]
    # every stage was handed to the pool as one job per piece
    first = [e for e in events if e.stage.startswith("normalize")]
    assert first[0].shards == len(groups) and first[-1].shards_done == len(groups)


def test_the_driver_loads_what_every_worker_needs_before_the_pool_forks(one_shard_many_groups, home):
    """With pieces every worker runs every step: the language model is loaded once, in the driver.

    Run in a fresh interpreter: a pytest-xdist worker has threads, so its pools spawn and share
    nothing; a user's `ciyuan curate` has none, and forks.
    """
    code = (
        "from ciyuan.curate import executor\n"
        "from ciyuan.curate.curate import curate\n"
        "from ciyuan.curate.steps.langid import _detector\n"
        "assert executor._pool_context().get_start_method() == 'fork', 'no fork here'\n"
        f"curate({one_shard_many_groups.ref!r}, steps='normalize,langid', workers=2)\n"
        "print(_detector.cache_info().currsize)\n"
    )
    env = {**os.environ, "CIYUAN_HOME": str(home), "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split()[-1] == "1"  # the driver holds the model the forked workers used
