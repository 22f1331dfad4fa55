"""Link prediction on held-out triples, and the graph part of an appraisal (report, card)."""

from __future__ import annotations

import json
import random
from pathlib import Path

from ciyuan.appraise.link_prediction import link_prediction


def community_triples(n: int = 240, groups: int = 12, seed: int = 1) -> list[tuple[str, str, str]]:
    """Entities in groups: each belongs to its group, links to members of it, sits at its group's site."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        g = i % groups
        out.append((f"e{i}", "memberOf", f"g{g}"))
        out.append((f"e{i}", "locatedIn", f"site{g % 4}"))
        for _ in range(4):
            j = rng.randrange(n // groups) * groups + g
            if j != i:
                out.append((f"e{i}", "linkedTo", f"e{j}"))
    return out


def test_structure_beats_the_frequency_baseline_and_the_curve_rises():
    r = link_prediction(community_triples(), seeds=(0, 1))
    curve = r["curve"]
    assert [c["fraction"] for c in curve] == [0.25, 0.5, 1.0] and r["rises_with_data"]
    base = r["baselines"]
    assert curve[-1]["mrr"] > 1.5 * base["predicate_frequency"]["mrr"] > base["random"]["mrr"]
    assert r["lift"]["n"] == 2 and r["lift"]["low"] is not None and r["lift"]["mean"] > 0.5
    assert link_prediction(community_triples(), seeds=(0, 1)) == r  # seeded


def test_noise_gives_no_gain_over_the_baseline():
    rng = random.Random(3)
    noise = [(f"e{rng.randrange(300)}", "p", f"e{rng.randrange(300)}") for _ in range(1500)]
    r = link_prediction(noise, seeds=(0,))
    assert r["curve"][-1]["mrr"] < 0.05 and r["lift"]["n"] == 1


def test_a_tiny_graph_says_why_it_is_not_measured():
    r = link_prediction([("a", "p", "b")] * 3)
    assert "at least 50" in r["why"]


def test_appraise_a_graph_version_reports_and_cards_it(home, tmp_path):
    from ciyuan.appraise import engine
    from ciyuan.appraise.graph_card import export_graph
    from ciyuan.appraise.report import render
    from ciyuan.ingest.run import ingest

    lines = "".join(f"<http://ex.org/{h}> <http://ex.org/{p}> <http://ex.org/{t}> .\n"
                    for h, p, t in community_triples())
    lines += '<http://ex.org/e1> <http://www.w3.org/2000/01/rdf-schema#label> "一号" .\n'
    (tmp_path / "g.nt").write_text(lines, encoding="utf-8")
    ingest([str(tmp_path / "g.nt")], "net")
    ap = engine.appraise("net")
    g = ap["graph"]
    assert g["link_prediction"]["curve"][-1]["mrr"] > g["link_prediction"]["baselines"]["predicate_frequency"]["mrr"]
    assert ap["utility"]["graph"] is g["link_prediction"] and ap["price"]["modality"] == "graph"
    assert set(g["gbt_36344"]) == {"规范性", "完整性", "准确性", "一致性", "时效性", "可访问性"}
    for lang, words in (("en", ("Link prediction", "Accessibility", "GB/T 36344")), ("zh", ("链接预测", "可访问性"))):
        page = render(engine.load("net"), lang)
        assert all(w in page for w in words), lang
    out = export_graph("net", str(tmp_path / "x"))
    card = json.loads(Path(out["card"]).read_text(encoding="utf-8"))
    assert card["ciyuan:graphAppraisal"]["link_prediction"]["curve"] == g["link_prediction"]["curve"]
