"""Modality is a dimension: text steps let other records by, counted "not applicable", and counts
go through the token schedules.

Every test here failed before steps declared modalities: the default recipe rejected every image
(``length`` for having 0 characters, ``exact_dedup`` for sharing the empty text of the first one),
and a recount gave an image 0 tokens (its missing text) instead of its patches.
"""

from __future__ import annotations

import ast
import random
from pathlib import Path

import pytest
from corpus import en_prose

from ciyuan.curate.curate import curate
from ciyuan.curate.pipeline import run_steps
from ciyuan.curate.steps import make_step, registry
from ciyuan.tokens import MODALITY_DEFAULTS

IMAGES = 6


def _image(i: int) -> dict:
    # distinct bytes per image, no text: what an image record is
    return {"id": f"img{i}", "modality": "image", "media": bytes([0x89, 0x50, 0x4E, 0x47, i]) * 64,
            "meta": {"width": 56 + 28 * i, "height": 28}}  # fmt: skip


@pytest.fixture
def mixed(home):
    from ciyuan.store import VersionBuilder

    rng = random.Random(3)
    b = VersionBuilder("mixed", made_by={"command": "test"}, rows_per_shard=10)
    for i in range(24):
        b.add({"id": f"t{i}", "text": en_prose(rng), "meta": {}})
        if i % 4 == 0:
            b.add(_image(i // 4))
    return b.commit()


def test_default_recipe_keeps_every_image_and_reports_them_not_applicable(mixed):
    from ciyuan.curate.report import build_report, render_html
    from ciyuan.store import resolve

    res = curate(mixed.ref, "text-pretrain", workers=1)
    v = resolve(f"mixed@{res['version']}")
    kept = {r["id"]: r for r in v.iter_records()}
    for i in range(IMAGES):
        assert kept[f"img{i}"]["media"] == _image(i)["media"]
        assert kept[f"img{i}"]["modality"] == "image"
        assert "curation" not in kept[f"img{i}"]["meta"]  # untouched: no step wrote to it
    assert not [r for r in v.iter_records(partition="rejected") if r["id"].startswith("img")]
    for s in res["steps"]:
        assert s["not_applicable"] == IMAGES and s["not_applicable_by_modality"] == {"image": IMAGES}, s
        assert s["seen"] == s["kept"] + s["rejected"]  # an image is neither kept nor rejected by a text step
    assert res["steps"][0]["seen"] == 24
    rep = build_report(v.ref)
    assert [s["not_applicable"] for s in rep["steps"]] == [IMAGES] * len(rep["steps"])
    en, zh = render_html(rep, "en"), render_html(rep, "zh")
    assert "<th>Not applicable</th>" in en and "<th>不适用</th>" in zh
    assert '<td title="image: 6" translate="no">6</td>' in en


def test_length_and_exact_dedup_let_textless_records_by():
    recs = [_image(i) for i in range(3)] + [{"id": "t", "text": "", "meta": {}}]
    length, exact = make_step("length"), make_step("exact_dedup")
    out = run_steps([dict(r, meta=dict(r["meta"])) for r in recs], [exact, length])
    assert [r["id"] for r in out if "_rejected" in r] == ["t"]  # the empty text record is too short
    assert exact.stats.not_applicable == {"image": 3} and exact.stats.seen == 1
    assert length.stats.to_dict()["not_applicable"] == 3


def test_near_dedup_never_pairs_records_of_another_modality():
    rng = random.Random(5)
    text = en_prose(rng)
    recs = [{"id": "a", "text": text, "meta": {}}, {"id": "b", "text": text, "meta": {}, "modality": "image"}]
    step = make_step("near_dedup")
    out = run_steps(recs, [step])
    assert not [r for r in out if "_rejected" in r]
    assert step.stats.seen == 1 and step.stats.to_dict()["not_applicable_by_modality"] == {"image": 1}


def test_every_step_declares_known_modalities():
    for name, cls in registry().items():
        assert cls.modalities and cls.modalities <= set(MODALITY_DEFAULTS), name


def test_recount_goes_through_the_schedule_and_replaces_stale_counts():
    from ciyuan.curate.executor import _recount
    from ciyuan.tokens import get_schedule

    changed = {"id": "x", "text": "a few words of text", "tokens": {"cl100k_base": 999},
               "meta": {"curation": {"changed_by": ["normalize"]}}}  # fmt: skip
    same = {"id": "y", "text": "untouched", "tokens": {"cl100k_base": 7}, "meta": {}}
    out = list(_recount(iter([changed, same]), ["cl100k_base"]))
    truth = get_schedule("cl100k_base").count_records([{"text": "a few words of text"}])[0]
    assert out[0]["tokens"]["cl100k_base"] == truth != 999
    assert out[1]["tokens"]["cl100k_base"] == 7


def test_counting_a_mixed_version_under_a_new_tokenizer_counts_images_by_their_schedule(mixed):
    from ciyuan.store.token_cache import ensure_counts
    from ciyuan.tokens import get_schedule

    assert ensure_counts(mixed, "qwen")
    counts = [n for arr in mixed.iter_token_counts("qwen") for n in arr.to_pylist()]
    recs = list(mixed.iter_records())
    by_id = dict(zip([r["id"] for r in recs], counts, strict=True))
    for i in range(IMAGES):
        assert by_id[f"img{i}"] == (2 + i) * 1  # ceil(width / 28) * ceil(height / 28) patches
    text = [r for r in recs if r["modality"] == "text"][0]
    assert by_id[text["id"]] == get_schedule("qwen").count_records([{"text": text["text"]}])[0]
    assert not ensure_counts(mixed, "qwen")  # cached, valid for the schedule's version


def test_store_versions_does_not_import_token_cache():
    """Reading a version must not need the module that computes counts (they imported each other)."""
    src = Path(__file__).resolve().parents[2] / "ciyuan" / "store" / "versions.py"
    names = set()
    for node in ast.walk(ast.parse(src.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    assert "ciyuan.store.token_cache" not in names, sorted(names)
    assert "ciyuan.tokens" in names
