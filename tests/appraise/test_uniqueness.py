"""MinHash LSH catalog index: re-listed data is found, new data is not."""

from __future__ import annotations

import numpy as np

from ciyuan.appraise.uniqueness import CatalogIndex, near_duplicates_within, signatures, uniqueness


def _texts(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(2000)] + list("数据价值令牌交易市场")
    return [" ".join(rng.choice(vocab, int(rng.integers(20, 80)))) for _ in range(n)]


def test_signatures_are_deterministic_and_similar_texts_agree():
    a = signatures(["the quick brown fox jumps over the lazy dog", "", "hi", "今天天气很好，我们去公园散步吧"])
    b = signatures(["The  quick brown fox jumps over the lazy dog", "", "hi", "今天天气很好，我们去公园散步吧"])
    assert a.shape == (4, 128) and a.dtype == np.uint32
    assert np.array_equal(a, b)  # case and whitespace are folded
    assert (a[1] == 0xFFFFFFFF).all() and not (a[2] == 0xFFFFFFFF).all()


def test_second_listing_of_the_same_version_is_not_unique(tmp_path):
    texts = _texts(1, 400)
    tokens = np.array([len(t.split()) for t in texts])
    sig = signatures(texts)
    index = CatalogIndex(tmp_path / "lsh")
    first = uniqueness(sig, tokens, index, exclude_providers=["alice"])
    assert first["score"] == 1.0
    index.add("listing-1", "alice", "v1", sig)
    # alice re-appraising her own listed version is not penalised ...
    assert uniqueness(sig, tokens, index, exclude_providers=["alice"])["score"] == 1.0
    # ... but bob listing the same content is
    second = uniqueness(sig, tokens, index, exclude_providers=["bob"])
    assert second["score"] < 0.1
    assert "listing-1" in second["evidence"]["matched_listings"]


def test_first_to_list_keeps_its_uniqueness_when_copied_later(tmp_path):
    """A copycat's later listing lowers the copycat's score, never the original provider's."""
    texts = _texts(6, 300)
    tokens = np.array([len(t.split()) for t in texts])
    sig = signatures(texts)
    index = CatalogIndex(tmp_path / "lsh")
    index.add("L-carol", "carol", "vc", signatures(texts[:60]))  # carol listed 60 of them first
    index.add("L-alice", "alice", "va", sig)
    index.add("L-bob", "bob", "vb", sig)  # bob copies alice's whole version afterwards
    alice = uniqueness(sig, tokens, index, owner="alice")
    share_carol = tokens[:60].sum() / tokens.sum()
    assert abs(alice["score"] - (1 - share_carol)) < 0.02  # only what carol had before her counts
    assert alice["evidence"]["records_first_listed_by_owner"] >= 235
    assert set(alice["evidence"]["matched_listings"]) == {"L-carol"}
    bob = uniqueness(sig, tokens, index, owner="bob")
    assert bob["score"] < 0.05
    assert set(bob["evidence"]["matched_listings"]) == {"L-carol", "L-alice"}
    # the index gives the earliest listing of each record, whichever band or segment finds it
    index.compact()
    assert np.array_equal(index.query(sig, earliest=True)[:60], np.full(60, 1))
    assert (index.query(sig, earliest=True)[60:] == 2).mean() > 0.98


def test_partial_overlap_and_light_edits(tmp_path):
    base = _texts(2, 300)
    index = CatalogIndex(tmp_path / "lsh")
    index.add("L1", "alice", "v1", signatures(base[:150]))
    index.add("L2", "carol", "v2", signatures(_texts(3, 200)))
    # half copied with a small edit each, half new
    edited = [t + " extra" for t in base[:150]] + _texts(4, 150)
    tokens = np.ones(300, dtype=np.int64)
    u = uniqueness(signatures(edited), tokens, index, exclude_providers=["bob"])
    assert 0.45 <= u["score"] <= 0.55
    before = index.query(signatures(edited))
    index.compact()
    assert np.array_equal(before, index.query(signatures(edited)))
    assert index.size() == 350


def test_near_duplicates_within_a_version():
    texts = _texts(5, 100)
    texts += [texts[3] + " tail", texts[10]]
    dup = near_duplicates_within(signatures(texts))
    assert dup[100] and dup[101] and dup[:100].sum() == 0


def test_appraisal_and_near_dedup_share_one_minhash(tmp_path):
    """Signatures, band keys and the Jaccard estimate come from ciyuan.curate.minhash for both users."""
    import ciyuan.appraise.uniqueness as uq
    from ciyuan.curate import minhash
    from ciyuan.curate.steps import make_step

    sig = signatures(_texts(3, 50))
    assert np.array_equal(uq.band_keys(sig), minhash.band_keys(sig, 16, 8))
    step = make_step("near_dedup", {"bands": 16, "rows": 8})
    assert np.array_equal(step.band_keys(sig), uq.band_keys(sig))
    assert not hasattr(uq, "rensa")  # no second MinHash behind appraisal's back


def test_a_segment_keyed_by_an_older_formula_is_rekeyed_from_its_signatures(tmp_path):
    """An index written before the shared band keys still finds its copies (keys are rebuilt once)."""
    import json

    texts = _texts(8, 200)
    sig = signatures(texts)
    index = CatalogIndex(tmp_path / "lsh")
    index.add("L-1", "alice", "v1", sig)
    (seg,) = index._segments()
    keys = np.load(seg / "keys.npy")
    np.save(seg / "keys.npy", keys ^ np.uint64(0x5555))  # what another band-key formula wrote
    meta = json.loads((seg / "meta.json").read_text())
    del meta["band_hash"]
    (seg / "meta.json").write_text(json.dumps(meta))
    found = index.query(sig)
    assert (found == 1).all()
    assert json.loads((seg / "meta.json").read_text())["band_hash"] == "fnv1a-mix64/1"
