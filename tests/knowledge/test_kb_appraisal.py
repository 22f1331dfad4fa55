"""A knowledge base's appraisal measures use: recall@k of questions from held-out records, by mode."""

from __future__ import annotations

import kbcorpus

from ciyuan.appraise.report import render
from ciyuan.appraise.retrieval_use import retrieval_utility


def _version(records, name="base"):
    from ciyuan.store import VersionBuilder

    b = VersionBuilder(name, made_by={"command": "test"})
    for r in records:
        b.add(r)
    return b.commit()


def test_appraisal_reports_recall_of_bm25_and_the_report_shows_it(home):
    from ciyuan.appraise import engine

    v = _version(kbcorpus.documents("en", 150, seed=4) + kbcorpus.documents("zh", 150, seed=4))
    ap = engine.appraise(v.ref)
    u = ap["utility"]["retrieval"]
    assert u["modes"] == ["bm25"] and u["note"]  # CIYUAN_KB_VECTORS=off in tests: said, not hidden
    assert u["questions"] == 200 and u["records_indexed"] == 300
    assert u["recall"]["bm25"]["recall@5"] >= 0.9
    assert u["recall"]["bm25"]["recall@1"] <= u["recall"]["bm25"]["recall@5"] <= u["recall"]["bm25"]["recall@10"]
    assert ap["utility_lift_used"] is None  # recall does not move the price formula
    for lang, title in (("en", "Retrieval, verified through use"), ("zh", "检索（经应用验证）")):
        page = render(ap, lang)
        assert title in page and 'data-testid="retrieval-recall"' in page


def test_hybrid_vectors_and_bm25_are_measured_side_by_side(home, monkeypatch):
    monkeypatch.setenv("CIYUAN_KB_VECTORS", "auto")
    from ciyuan.config import settings

    recs = [{"id": f"m{i}", "text": t, "meta": {}} for i, t in enumerate([
        "The gearbox oil temperature alarm triggered at turbine seven after a long run at rated power today.",
        "Pitch bearing lubrication is due every six months, grease the bearings and log the amount used.",
        "A crack was found on the leading edge of blade B during the drone inspection this morning.",
        "The yaw motor tripped twice because the brake did not release in the cold weather last night.",
        "Replace the anemometer on the nacelle roof when its readings drift from the met mast values.",
        "Converter cabinet fans were cleaned and the dust filters changed during the spring service.",
    ] * 1)]
    v = _version(recs, "manual")
    u = retrieval_utility(v, settings(), n_questions=6)
    assert u["modes"] == ["bm25", "vector", "hybrid"] and u["note"] is None
    assert u["questions"] == 6
    for mode in u["modes"]:
        assert 0.0 <= u["recall"][mode]["recall@5"] <= 1.0
    assert u["recall"]["hybrid"]["recall@5"] == 1.0  # six records, five results: each phrase finds its own
    assert "hybrid_minus_bm25@5" in u


def test_version_without_text_is_not_measured(home):
    v = _version([{"id": "p1", "modality": "image", "text": None, "media": b"\x89PNG", "meta": {}}], "pics")
    from ciyuan.config import settings

    assert retrieval_utility(v, settings()) is None
