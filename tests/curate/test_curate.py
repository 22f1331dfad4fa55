import pytest
from corpus import planted_corpus

from ciyuan.curate.curate import curate
from ciyuan.curate.executor import Interrupted
from ciyuan.errors import InvalidInput


@pytest.fixture
def dataset(home):
    from ciyuan.store import VersionBuilder

    b = VersionBuilder("plant", made_by={"command": "test"}, rows_per_shard=25)
    for r in planted_corpus():
        b.add(dict(r, meta={}))
    v = b.commit()
    return v


def test_text_pretrain_makes_a_child_version_and_keeps_every_rejection(dataset):
    from ciyuan.store import resolve

    res = curate(dataset.ref, "text-pretrain", workers=1)
    v = resolve(f"plant@{res['version']}")
    assert v.parent == dataset.id
    made = v.manifest["made_by"]
    assert made["recipe"]["name"] == "text-pretrain" and len(made["recipe_sha256"]) == 64
    assert res["kept"] + res["rejected"] == dataset.records
    assert res["tokens_after"] < res["tokens_before"]
    rejected = list(v.iter_records(partition="rejected"))
    assert len(rejected) == res["rejected"]
    by_id = {r["id"]: r["_rejected"] for r in rejected}
    for i in range(10):  # of each planted pair exactly one survives (the first, or the best)
        assert [by_id.get(x, {}).get("step") for x in (f"en{i}", f"exact{i}")].count("exact_dedup") == 1
        assert [by_id.get(x, {}).get("step") for x in (f"zh{i}", f"near{i}")].count("near_dedup") == 1
    for i in range(10):
        assert by_id[f"bp{i}"]["step"] in ("langid", "quality")
    kept = {r["id"]: r for r in v.iter_records()}
    assert all(f"en{i}" in kept and f"zh{i}" in kept for i in range(10, 40))
    assert all((f"en{i}" in kept) != (f"exact{i}" in kept) for i in range(10))
    pii = [r for k, r in kept.items() if k.startswith("pii")]
    assert pii and all(r["meta"]["curation"]["pii"] for r in pii)
    steps = {s["step"]: s for s in res["steps"]}
    assert steps["exact_dedup"]["rejected"] == 10 and steps["near_dedup"]["rejected"] == 10
    assert v.manifest["extra"]["curation"]["steps"] == res["steps"]


def test_declared_licence_and_domain_carry_over_to_the_curated_version(home, tmp_path):
    """A provider declares the licence at ingest; curation must not make the version forget it."""
    import json

    from ciyuan.appraise.engine import _card_info
    from ciyuan.ingest.run import ingest
    from ciyuan.store import resolve

    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps({"text": f"record {i}: the pump ran for {i} hours."}) for i in range(20)))
    parent = ingest([str(src)], "declared", license="CC-BY-4.0", domain="energy")
    res = curate(f"declared@{parent['version']}", steps="normalize,exact_dedup", workers=1)
    v = resolve(f"declared@{res['version']}")
    assert v.manifest["extra"]["license"] == "CC-BY-4.0" and v.manifest["extra"]["domain"] == "energy"
    assert "curation" in v.manifest["extra"]
    assert _card_info(v)["license"] == "CC-BY-4.0"  # what appraisal's licence clarity reads


def test_same_input_and_recipe_give_the_same_version_id(dataset):
    a = curate(dataset.ref, steps="normalize,pii,exact_dedup,near_dedup", workers=1)
    b = curate(dataset.ref, steps="normalize,pii,exact_dedup,near_dedup", workers=2)
    assert a["version"] == b["version"]
    c = curate(dataset.ref, {"steps": ["normalize", {"near_dedup": {"threshold": 0.9}}]}, workers=1)
    assert c["version"] != a["version"]


def test_resume_after_a_crash_gives_the_same_version(dataset):
    fresh = curate(dataset.ref, "text-pretrain", workers=1)
    with pytest.raises(Interrupted):
        curate(dataset.ref, "text-pretrain", workers=1, _stop_after=3)
    done = []
    resumed = curate(
        dataset.ref,
        "text-pretrain",
        workers=1,
        resume=True,
        on_progress=lambda ev: done.append((ev.stage, ev.shards_done, ev.shards)),
    )
    assert resumed["version"] == fresh["version"]
    # the shards written before the crash were not run again: the first stage starts part-way
    first = [d for d in done if d[0].startswith("normalize")]
    assert first[0][1] == 3 and first[0][2] == 5


def test_curating_again_from_the_parent_with_another_recipe(dataset):
    a = curate(dataset.ref, "text-sft", workers=1)
    b = curate(dataset.ref, steps="length", workers=1)
    assert a["version"] != b["version"] and a["parent"] == b["parent"] == dataset.id


def test_bad_recipes_are_clear_errors(dataset, tmp_path):
    with pytest.raises(InvalidInput, match="neither a file nor a built-in"):
        curate(dataset.ref, "nope")
    bad = tmp_path / "r.yaml"
    bad.write_text("steps:\n  - quality: {min_word: 3}\n")
    with pytest.raises(InvalidInput, match="no parameter"):
        curate(dataset.ref, str(bad))


@pytest.mark.slow
def test_ray_and_local_executors_give_identical_versions(dataset):
    import ray  # noqa: F401 - the [ray] extra is installed for the tests; fail loudly if not
    local = curate(dataset.ref, "text-pretrain", workers=1)
    ray_ = curate(dataset.ref, "text-pretrain", executor="ray", workers=2)
    assert ray_["version"] == local["version"]
    assert ray_["steps"] == local["steps"]
