"""The near-dedup recipe (normalize, exact_dedup, near_dedup) through ``curate``: decisions and counts.

Why here: the benchmark's recipe is where speed work happens (where the recount runs, what the
workers inherit), and none of it may change which records are kept. The kept and rejected sets
are pinned on a small planted corpus (computed with the code before that work), and the tokens
stored and reported are checked against a fresh count of the final texts.
"""

from __future__ import annotations

import hashlib
import random

import pytest
from corpus import edit_copy, en_prose, zh_prose

from ciyuan.curate.curate import curate

RECIPE = {"name": "near-dedup", "steps": ["normalize", "exact_dedup", "near_dedup"]}


def messy(text: str, rng: random.Random) -> str:
    """The same text as a rendered page would carry it: indented lines, trailing blanks, CRLF."""
    lines = text.split("\n")
    out = [("       " if rng.random() < 0.7 else "") + line + (" " * rng.randrange(3)) for line in lines]
    return ("\r\n" if rng.random() < 0.3 else "\n").join(out)


def make_corpus(seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    recs = []
    for i in range(30):
        recs.append({"id": f"en{i}", "text": messy(en_prose(rng), rng)})
        recs.append({"id": f"zh{i}", "text": messy(zh_prose(rng), rng)})
    for i in range(8):  # equal after normalisation only
        recs.append({"id": f"exact{i}", "text": messy(recs[i * 2]["text"].replace("\r\n", "\n").strip(), rng)})
        recs.append({"id": f"near{i}", "text": edit_copy(recs[i * 2 + 1]["text"], 1, rng, cjk=True)})
        recs.append({"id": f"nearen{i}", "text": edit_copy(recs[i * 2 + 20]["text"], 2, rng, cjk=False)})
    rng.shuffle(recs)
    return recs


@pytest.fixture
def dataset(home):
    from ciyuan.store import VersionBuilder

    b = VersionBuilder("plant", made_by={"command": "test"}, rows_per_shard=20)
    for r in make_corpus():
        b.add(dict(r, meta={}))
    return b.commit()


def _decisions(version) -> tuple[list[str], dict[str, str]]:
    kept = sorted(r["id"] for r in version.iter_records(columns=["id"]))
    rejected = {r["id"]: r["_rejected"]["step"] for r in version.iter_records(partition="rejected")}
    return kept, rejected


def _digest(kept: list[str], rejected: dict[str, str]) -> str:
    return hashlib.sha256(repr((kept, sorted(rejected.items()))).encode()).hexdigest()[:16]


# kept and rejected records of make_corpus(3) under RECIPE, from the code before the recount moved
# into the shard jobs (b07f767): a change of any decision changes this
PINNED = "fcf399cd1ca5470b"


@pytest.mark.parametrize("workers", [1, 2])
def test_decisions_are_the_pinned_ones(dataset, workers):
    from ciyuan.store import resolve

    res = curate(dataset.ref, RECIPE, workers=workers)
    kept, rejected = _decisions(resolve(f"plant@{res['version']}"))
    assert set(rejected.values()) == {"exact_dedup", "near_dedup"}
    assert sum(1 for s in rejected.values() if s == "exact_dedup") == 8
    assert _digest(kept, rejected) == PINNED


def test_counts_are_of_the_final_text_and_rejections_add_up(dataset):
    """Stored counts are those of the normalised text; tokens_removed by each dedup step is what
    its rejected records hold (it used to be the count from before normalize)."""
    from ciyuan.store import resolve
    from ciyuan.tokens import get_tokenizer

    res = curate(dataset.ref, RECIPE, workers=2)
    v = resolve(f"plant@{res['version']}")
    tok = get_tokenizer("cl100k_base")
    col = "cl100k_base"
    kept = list(v.iter_records())
    rejected = list(v.iter_records(partition="rejected"))
    assert all(r["meta"]["curation"]["changed_by"] == ["normalize"] for r in kept[:5])
    for r in kept + rejected:
        assert r["tokens"][col] == tok.count(r["text"]), r["id"]
    assert res["tokens_after"] == sum(r["tokens"][col] for r in kept)
    steps = {s["step"]: s for s in res["steps"]}
    for step in ("exact_dedup", "near_dedup"):
        held = sum(r["tokens"][col] for r in rejected if r["_rejected"]["step"] == step)
        assert steps[step]["tokens_removed"] == held, step


@pytest.fixture
def one_shard(home):
    """The same corpus as one shard of many row groups (what ingest makes of a few hundred MB)."""
    from ciyuan.store import VersionBuilder

    b = VersionBuilder("plant", made_by={"command": "test"}, rows_per_shard=10_000, batch_rows=12)
    for r in make_corpus():
        b.add(dict(r, meta={}))
    return b.commit()


def test_one_big_shard_is_cut_for_the_workers_and_decides_the_same(one_shard):
    """Two workers over one shard work on pieces of it; the version is the one a single worker makes."""
    from ciyuan.curate import pieces
    from ciyuan.store import resolve

    src = [one_shard.path(s["path"]) for s in one_shard.manifest["shards"]]
    assert len(src) == 1
    cut = pieces.cut(src, 4)
    assert len(cut) == 4 and all(isinstance(p, pieces.Piece) for p in cut)
    assert sum(pieces.rows(p) for p in cut) == one_shard.records
    assert [(p.start, p.stop) for p in cut] == sorted((p.start, p.stop) for p in cut)  # in order
    two = curate(one_shard.ref, RECIPE, workers=2)
    one = curate(one_shard.ref, RECIPE, workers=1)
    assert two["version"] == one["version"]
    kept, rejected = _decisions(resolve(f"plant@{two['version']}"))
    assert _digest(kept, rejected) == PINNED


def test_resume_with_another_worker_count_starts_afresh(one_shard):
    from ciyuan.curate.executor import Interrupted

    with pytest.raises(Interrupted):
        curate(one_shard.ref, RECIPE, workers=2, _stop_after=2)  # pieces of the shard written
    again = curate(one_shard.ref, RECIPE, workers=1, resume=True)  # whole shard: the pieces do not fit
    assert again["version"] == curate(one_shard.ref, RECIPE, workers=1)["version"]
    assert again["kept"] + again["rejected"] == one_shard.records
