"""Quality indicators: each in [0, 1], each reacting to the defect it measures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ciyuan.appraise.quality import aggregate, assess, licence_clarity

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def _rec(i: int, text: str, **meta) -> dict:
    return {"id": f"r{i}", "modality": "text", "text": text, "meta": meta, "tokens": {"cl100k_base": 5}}


def _clean(n: int = 40) -> list[dict]:
    return [_rec(i, f"Record number {i} talks about topic {i % 7} in plain English words.",
                 date="2024-06-01", domain=f"d{i % 4}") for i in range(n)]  # fmt: skip


def test_clean_records_score_high_and_all_in_unit_interval():
    q = assess(_clean(), licence="CC-BY-4.0", card={"name": "x", "description": "y", "license": "CC-BY-4.0"},
               now=NOW)  # fmt: skip
    for name, ind in q["indicators"].items():
        assert ind["score"] is None or 0.0 <= ind["score"] <= 1.0, name
        assert "evidence" in ind
    ind = q["indicators"]
    assert ind["completeness"]["score"] == 1.0
    assert ind["schema_conformance"]["score"] == 1.0
    assert ind["duplication"]["score"] == 1.0
    assert ind["pii_residue"]["score"] == 1.0
    assert ind["licence_clarity"]["score"] == 1.0
    assert ind["timeliness"]["score"] > 0.7
    assert ind["language_consistency"]["evidence"]["dominant"] == "en"
    assert 0 < ind["documentation"]["score"] < 1
    assert 0 <= q["score"] <= 1


def test_each_defect_lowers_its_indicator():
    recs = _clean()
    recs[0]["text"] = ""  # incomplete
    recs[1]["meta"] = "not a dict"  # schema
    recs[2]["text"] = recs[3]["text"].upper()  # duplicate after folding case
    recs[4]["text"] = "联系我 13812345678 或 someone@example.com 谢谢"  # PII
    for r in recs[5:25]:
        r["meta"]["date"] = "1999-01-01"
    q = assess(recs, now=NOW)["indicators"]
    assert q["completeness"]["score"] == pytest.approx(39 / 40)
    assert q["schema_conformance"]["score"] == pytest.approx(39 / 40)
    assert q["duplication"]["evidence"]["exact_duplicates"] == 1
    assert q["pii_residue"]["evidence"]["records_with_pii"] == 1
    assert q["timeliness"]["score"] < 0.5
    assert q["licence_clarity"]["score"] == 0.0


def test_no_dates_means_not_applicable_and_left_out():
    recs = [_rec(i, f"text {i} here") for i in range(5)]
    q = assess(recs)
    assert q["indicators"]["timeliness"]["score"] is None
    assert q["score"] == pytest.approx(aggregate(q["indicators"]))


def test_licence_clarity():
    assert licence_clarity("MIT OR Apache-2.0")["score"] == 1.0
    assert licence_clarity("https://spdx.org/licenses/CC-BY-4.0.html")["score"] == 1.0
    assert licence_clarity("ask the owner")["score"] == 0.5
    assert licence_clarity(None)["score"] == 0.0
