"""The retrieval index beside a version: built once, reused, rebuilt when its inputs change; search
by BM25, vectors and their fusion; BM25 only (and said so) when embeddings are not installed."""

from __future__ import annotations

import json
from pathlib import Path

import kbcorpus
import pytest

from ciyuan.errors import InvalidInput, NotFound
from ciyuan.knowledge import retrieval, vectors
from ciyuan.knowledge.chunker import ChunkerParams
from ciyuan.knowledge.questions import make_questions, recall_at_k

TURBINE = [
    "The gearbox oil temperature alarm triggered at turbine 7 after a long run at rated power.",
    "Pitch bearing lubrication is due every six months; grease the bearings and log the amount used.",
    "A crack was found on the leading edge of blade B during the drone inspection.",
    "The yaw motor tripped twice because the brake did not release in cold weather.",
    "风机齿轮箱温度过高，需要立即停机检查油位和冷却器。",
    "变桨轴承每六个月润滑一次，记录油脂用量。",
    "ブレードの前縁に亀裂が見つかりました。",
    "블레이드 앞전에서 균열이 발견되었습니다.",
]


def _version(records: list[dict], name: str = "kb"):
    from ciyuan.store import VersionBuilder

    b = VersionBuilder(name, made_by={"command": "test"})
    for r in records:
        b.add(r)
    return b.commit()


@pytest.fixture
def turbine(home):
    return _version([{"id": f"t{i}", "text": t, "meta": {}} for i, t in enumerate(TURBINE)])


def test_second_ensure_index_reuses_and_new_chunker_params_rebuild(turbine):
    first = retrieval.ensure_index(None, turbine.id, vectors_mode="off")
    assert first["reused"] is False and first["chunks"] == len(TURBINE)
    assert first["chunker"]["name"] == "token-window" and first["chunker"]["params"]["max_tokens"] == 256
    folder = Path(first["location"])
    assert folder.parent.parent == Path(turbine.path(""))  # beside the version, under kb/<key>
    built_at = json.loads((folder / "manifest.json").read_text())["built_at"]
    again = retrieval.ensure_index(None, turbine.ref, vectors_mode="off")
    assert again["reused"] is True and again["key"] == first["key"] and again["built_at"] == built_at
    other = retrieval.ensure_index(None, turbine.id, params=ChunkerParams(max_tokens=16, overlap=2),
                                   vectors_mode="off")
    assert other["reused"] is False and other["key"] != first["key"] and other["chunks"] > first["chunks"]
    for rel, f in other["files"].items():  # content addressed: the manifest names every file's hash
        assert (Path(other["location"]) / rel).stat().st_size == f["bytes"]


def test_a_new_version_gets_its_own_index(home):
    a = _version([{"id": "a", "text": "alpha beta gamma", "meta": {}}], "one")
    b = _version([{"id": "a", "text": "alpha beta gamma", "meta": {}}, {"id": "b", "text": "delta", "meta": {}}],
                 "one")
    ka = retrieval.ensure_index(None, a.id, vectors_mode="off")["key"]
    kb = retrieval.ensure_index(None, b.id, vectors_mode="off")
    assert kb["key"] != ka and kb["reused"] is False


def test_bm25_results_carry_exact_offsets(home):
    recs = kbcorpus.documents("zh", 40, seed=2, words=(200, 300))
    v = _version(recs, "zh")
    texts = {r["id"]: r["text"] for r in recs}
    m = retrieval.ensure_index(None, v.id, params=ChunkerParams(max_tokens=64, overlap=8), vectors_mode="off")
    assert m["chunks"] > len(recs)  # long records are cut into several chunks
    q = make_questions(recs, 20, seed=5)
    ans = lambda text: retrieval.retrieve(None, v.id, text, 5, "bm25", params=ChunkerParams(64, 8))["results"]  # noqa: E731
    for question in q[:5]:
        for r in ans(question["question"]):
            assert texts[r["record_id"]][r["start"] : r["end"]] == r["text"]
            assert r["tokens"] > 0
    assert recall_at_k(q, ans, 5) >= 0.9


def test_without_embeddings_hybrid_falls_back_to_bm25_and_says_so(turbine, monkeypatch):
    monkeypatch.setenv("CIYUAN_KB_VECTORS", "auto")
    monkeypatch.setattr(vectors, "embeddings_available", lambda: False)  # the `make run` environment: no torch
    m = retrieval.ensure_index(None, turbine.id)
    assert m["vectors"] is None and m["modes"] == ["bm25"] and "BM25 only" in m["vectors_note"]
    out = retrieval.retrieve(None, turbine.id, "gearbox oil temperature", 3)
    assert out["mode_used"] == "bm25" and out["fallback"] and out["results"][0]["record_id"] == "t0"
    with pytest.raises(InvalidInput) as err:
        retrieval.search(None, turbine.id, "gearbox", 3, mode="vector")
    assert "torch" in err.value.hint


def test_hybrid_and_vector_search_with_minilm(turbine, monkeypatch):
    monkeypatch.setenv("CIYUAN_KB_VECTORS", "auto")
    m = retrieval.ensure_index(None, turbine.id)
    assert m["vectors"]["model"].startswith("all-MiniLM-L6-v2") and m["modes"] == ["hybrid", "bm25", "vector"]
    # no word in common with the record: only the vectors can find it
    hits = retrieval.search(None, turbine.id, "fissure on the rotor wing", 2, mode="vector")
    assert hits[0]["record_id"] == "t2"
    hybrid = retrieval.search(None, turbine.id, "grease for pitch bearings", 3)
    assert hybrid[0]["record_id"] == "t1"
    assert set(hybrid[0]) == {"chunk_id", "record_id", "start", "end", "text", "score"}
    assert hybrid[0]["score"] > hybrid[-1]["score"]


def test_graph_version_chunks_are_its_records(home):
    recs = []
    for i in range(6):
        nt = (f'<http://ex.org/turbine/{i}> <http://www.w3.org/2000/01/rdf-schema#label> "turbine {i} gearbox" .\n'
              f'<http://ex.org/turbine/{i}> <http://ex.org/site> <http://ex.org/site/{i % 2}> .\n')
        recs.append({"id": f"g{i}", "modality": "graph", "text": nt,
                     "meta": {"subject": f"http://ex.org/turbine/{i}", "graph": None, "triples": 2}})
    v = _version(recs, "graph")
    m = retrieval.ensure_index(None, v.id, params=ChunkerParams(max_tokens=8, overlap=0), vectors_mode="off")
    assert m["chunks"] == 6
    hit = retrieval.search(None, v.id, "turbine/3", 1, mode="bm25")[0]
    assert hit["record_id"] == "g3" and hit["start"] == 0 and hit["text"] == recs[3]["text"]


@pytest.mark.parametrize(("query", "top_k", "mode"), [("", 5, "hybrid"), ("x", 0, "hybrid"), ("x", 101, "bm25"),
                                                      ("x", 5, "fuzzy"), (None, 5, "bm25"), ("x", True, "bm25")])
def test_bad_requests_are_refused_with_a_hint(turbine, query, top_k, mode):
    with pytest.raises(InvalidInput) as err:
        retrieval.search(None, turbine.id, query, top_k, mode)
    assert err.value.hint


def test_unknown_version_is_not_found(home):
    with pytest.raises(NotFound):
        retrieval.ensure_index(None, "0" * 64)


def test_a_version_without_text_has_an_empty_index_that_answers_nothing(home, monkeypatch):
    monkeypatch.setenv("CIYUAN_KB_VECTORS", "auto")
    v = _version([{"id": "p1", "modality": "image", "text": None, "media": b"\x89PNG", "meta": {}}], "pics")
    m = retrieval.ensure_index(None, v.id)
    assert m["chunks"] == 0 and "vectors.usearch" not in m["files"]
    for mode in retrieval.MODES:
        assert retrieval.search(None, v.id, "anything", 3, mode) == []
