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
