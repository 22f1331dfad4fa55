import random
from collections import defaultdict
from itertools import combinations

import pytest
from corpus import en_prose, near_dup_corpus, zh_prose

from ciyuan.curate.pipeline import run_steps
from ciyuan.curate.steps import make_step


def exact_pairs(step, records, threshold):
    """Ground truth: every pair with exact Jaccard >= threshold on the step's own shingles."""
    sets = [set(step.shingles(r["text"]).tolist()) for r in records]
    index = defaultdict(list)
    for i, s in enumerate(sets):
        for h in s:
            index[h].append(i)
    shared = defaultdict(int)
    for docs in index.values():
        if len(docs) > 1:
            for a, b in combinations(docs, 2):
                shared[a, b] += 1
    truth = set()
    for (a, b), inter in shared.items():
        if inter / (len(sets[a]) + len(sets[b]) - inter) >= threshold:
            truth.add((records[a]["id"], records[b]["id"]))
    return truth, sets


def metrics(out, truth):
    cluster = {r["id"]: r["meta"].get("dup_cluster") for r in out}
    true_docs = {x for p in truth for x in p}
    pred_docs = {i for i, c in cluster.items() if c}
    recall_pairs = sum(1 for a, b in truth if cluster[a] and cluster[a] == cluster[b]) / len(truth)
    return {
        "pair_recall": recall_pairs,
        "doc_recall": len(true_docs & pred_docs) / len(true_docs),
        "doc_precision": len(true_docs & pred_docs) / max(len(pred_docs), 1),
    }


@pytest.mark.parametrize("verify", ["exact", "signature"])
def test_near_dedup_recall_and_precision_against_exact_jaccard(verify):
    records = near_dup_corpus(seed=11, families=150)
    step = make_step("near_dedup", {"verify": verify})
    truth, _ = exact_pairs(step, records, 0.8)
    # the corpus spans both sides of the threshold, so the check is not trivial
    assert len(truth) > 150
    out = run_steps([dict(r, meta={}) for r in records], [step])
    m = metrics(out, truth)
    assert m["pair_recall"] >= 0.95, m
    assert m["doc_recall"] >= 0.95, m
    if verify == "exact":
        assert m["doc_precision"] >= 0.99, m
    else:
        assert m["doc_precision"] >= 0.95, m
    # one survivor per cluster, all others rejected with the cluster named
    by_cluster = defaultdict(list)
    for r in out:
        if r["meta"].get("dup_cluster"):
            by_cluster[r["meta"]["dup_cluster"]].append(r)
    for members in by_cluster.values():
        kept = [r for r in members if "_rejected" not in r]
        assert len(kept) == 1
        for r in members:
            if "_rejected" in r:
                assert r["_rejected"]["step"] == "near_dedup"
                assert r["meta"]["dup_cluster"] in r["_rejected"]["reason"]


def test_near_dedup_verified_edges_are_true_pairs():
    records = near_dup_corpus(seed=5, families=60)
    step = make_step("near_dedup")
    truth, sets = exact_pairs(step, records, 0.8)
    run_steps([dict(r, meta={}) for r in records], [step])
    assert step.plan["pairs"] >= len(truth) * 0.95


def test_keep_rules():
    rng = random.Random(2)
    base = en_prose(rng)
    recs = [
        {"id": "a", "text": base, "meta": {"quality_score": 0.5}},
        {"id": "b", "text": base + " One more sentence closes the page.", "meta": {"quality_score": 0.9}},
        {"id": "c", "text": base[:-1] + "!", "meta": {"quality_score": 1.0}},
    ]
    for keep, survivor in [("first", "a"), ("longest", "b"), ("best_quality", "c")]:
        out = run_steps([dict(r, meta=dict(r["meta"])) for r in recs], [make_step("near_dedup", {"keep": keep})])
        assert [r["id"] for r in out if "_rejected" not in r] == [survivor], keep


def test_exact_dedup_removes_every_copy_and_keeps_first():
    rng = random.Random(4)
    docs = [en_prose(rng) for _ in range(30)] + [zh_prose(rng) for _ in range(30)]
    records, expected_rejected = [], set()
    seen = set()
    for i in range(200):
        j = rng.randrange(len(docs))
        text = docs[j]
        if rng.random() < 0.3:
            text = text.replace(" ", "  ") + "\n"  # same after whitespace normalisation
        rid = f"r{i}"
        if j in seen:
            expected_rejected.add(rid)
        seen.add(j)
        records.append({"id": rid, "text": text, "meta": {}})
    step = make_step("exact_dedup")
    out = run_steps(records, [step])
    rejected = {r["id"] for r in out if "_rejected" in r}
    assert rejected == expected_rejected
    assert len(out) - len(rejected) == len(seen)
    assert step.stats.rejected["exact_duplicate"] == len(expected_rejected)


def test_dedup_scans_agree_across_shard_splits(tmp_path):
    """Splitting the input into shards (as executors do) gives the same plan as one pass."""
    records = near_dup_corpus(seed=3, families=40)
    one = make_step("near_dedup")
    run_steps([dict(r, meta={}) for r in records], [one])
    many = make_step("near_dedup")
    shards = [records[i : i + 37] for i in range(0, len(records), 37)]
    round_, ctx = 0, many.begin(str(tmp_path), len(records))
    while True:
        parts = [many.scan(round_, iter(s), k, ctx) for k, s in enumerate(shards)]
        done, ctx = many.reduce(round_, parts, ctx)
        round_ += 1
        if done:
            break
    assert len(ctx["by_shard"]) == len(shards)
    cluster = {k: v for part in ctx["by_shard"] for k, v in part["cluster"].items()}
    drop = {k: v for part in ctx["by_shard"] for k, v in part["drop"].items()}
    assert cluster == one.plan["cluster"] and drop == one.plan["drop"]
    # each shard's part names only that shard's records
    for k, part in enumerate(ctx["by_shard"]):
        assert set(part["cluster"]) <= {r["id"] for r in shards[k]}


def test_bad_band_configuration_is_refused():
    from ciyuan.errors import InvalidInput

    with pytest.raises(InvalidInput):
        make_step("near_dedup", {"bands": 30, "rows": 8})


@pytest.mark.parametrize("name", ["exact_dedup", "near_dedup"])
def test_many_small_partitions_give_the_same_plan(name, monkeypatch):
    """The reduce reads hash partitions one at a time; how many there are must not change a decision."""
    from ciyuan.curate import scratch

    records = near_dup_corpus(seed=5, families=30)
    records += [dict(r, id=f"copy-{r['id']}") for r in records[::7]]  # exact copies too

    def plan(budget: int) -> dict:
        monkeypatch.setattr(scratch, "PARTITION_BYTES", budget)
        step = make_step(name)
        out = run_steps([dict(r, meta={}) for r in records], [step])
        return {r["id"]: r.get("_rejected", {}).get("reason") for r in out}

    one = plan(1 << 30)
    assert scratch.partitions_for(len(records) * 20, budget=1 << 30) == 1
    many = plan(256)  # a few entries a partition: hundreds of partitions
    assert scratch.partitions_for(len(records) * 20) > 100
    assert many == one
    assert sum(v is not None for v in one.values()) >= 20
