"""Uniqueness of media against the catalog by perceptual hash, on real generated pictures.

Provider A lists eight pictures; provider B's version holds resized, recompressed and lightly
cropped copies of three of them (re-captioned, every byte different) and five pictures of its own.
B's uniqueness is 1 - tokens of the three copies / all tokens, with the pairs naming A's listing;
A, first to list, keeps 1.0 after B lists. A video re-encoded at another size is found by its
keyframe hashes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "media"))

import curate_gen  # noqa: E402
import media_gen  # noqa: E402
import media_sets  # noqa: E402

from ciyuan.appraise import engine, media_uniqueness  # noqa: E402
from ciyuan.store import resolve  # noqa: E402

SCHEDULE = "qwen2-vl-image"


def _pictures(name: str, items: list[tuple[str, bytes, str]]):
    recs = [media_sets.media_record(rid, data, f"{rid}.{fname}", text=caption) for rid, data, fname, caption in
            [(rid, data, "jpg" if data[:2] == b"\xff\xd8" else "png", cap) for rid, data, cap in items]]
    return media_sets.build(name, recs, schedules=(SCHEDULE,))


def _copies(seed: int) -> bytes:
    kind, im = media_gen.near_copies(media_gen.picture(seed), seed)[seed % 4]
    return media_gen.encode(im.convert("RGB"), "JPEG", quality=70)


@pytest.fixture
def two_providers(home):
    a = _pictures("pictures-a", [(f"a{i}", media_gen.encode(media_gen.picture(i)), f"picture {i} of A")
                                 for i in range(8)])  # fmt: skip
    b = _pictures("pictures-b", [(f"b{i}", _copies(i), f"another caption {i}") for i in range(3)]
                  + [(f"b{i}", media_gen.encode(media_gen.picture(100 + i)), f"own picture {i}") for i in range(3, 8)])
    return a, b


def test_copies_of_another_providers_listed_pictures_lower_uniqueness(two_providers) -> None:
    a, b = two_providers
    ap_a = engine.appraise(a.ref, provider="prov-a", tokenizer=SCHEDULE, seeds=(0,))
    assert ap_a["uniqueness"]["score"] == 1.0
    engine.register_listing(a.ref, "lst_a", "prov-a")
    ap_b = engine.appraise(b.ref, provider="prov-b", tokenizer=SCHEDULE, seeds=(0,))
    ev = ap_b["uniqueness"]["evidence"]["media"]
    ids = [r["id"] for r in b.iter_records(columns=["id"])]
    counts = [c for arr in resolve(b.ref).iter_token_counts(SCHEDULE) for c in arr.to_pylist()]
    tokens = dict(zip(ids, counts, strict=True))
    copied = tokens["b0"] + tokens["b1"] + tokens["b2"]
    assert ev["records"] == 8 and ev["records_near_duplicated"] == 3
    assert ev["tokens_near_duplicated"] == copied
    assert ap_b["uniqueness"]["score"] == pytest.approx(1 - copied / sum(tokens.values()))
    assert ev["matched_listings"] == {"lst_a": {"provider": "prov-a", "records": 3}}
    assert {(p["record"], p["listed_record"]) for p in ev["pairs"]} == {("b0", "a0"), ("b1", "a1"), ("b2", "a2")}
    assert all(0 <= p["distance"] <= media_uniqueness.THRESHOLDS["image"] for p in ev["pairs"])
    # the captions differ, so the text MinHash saw nothing: the pictures are the evidence
    engine.register_listing(b.ref, "lst_b", "prov-b")
    again = engine.appraise(a.ref, provider="prov-a", tokenizer=SCHEDULE, seeds=(0,))
    assert again["uniqueness"]["score"] == 1.0  # first to list keeps it
    media = again["uniqueness"]["evidence"]["media"]
    assert media["records_first_listed_by_owner"] == 8 and media["matched_listings"] == {}  # its own listing
    assert len(engine.media_catalog().listings()) == 2


def test_same_provider_and_same_caption_are_not_copies(home) -> None:
    # eight different pictures, one caption: MinHash would call them copies, the hashes do not
    v = _pictures("one-caption", [(f"c{i}", media_gen.encode(media_gen.picture(200 + i)), "a picture")
                                  for i in range(8)])  # fmt: skip
    ap = engine.appraise(v.ref, provider="p", tokenizer=SCHEDULE, seeds=(0,))
    assert ap["tokens"]["near_duplicate_records"] == 0
    engine.register_listing(v.ref, "lst_1", "p")
    w = _pictures("one-caption-2", [(f"d{i}", _copies(200 + i), "x") for i in range(2)])
    ap = engine.appraise(w.ref, provider="p", tokenizer=SCHEDULE, seeds=(0,))
    assert ap["uniqueness"]["score"] == 1.0  # own listing: not a copy


def test_near_duplicates_inside_a_version_by_hash(home) -> None:
    im = media_gen.picture(7)
    items = [("o", media_gen.encode(im), "original")]
    items += [(f"n{k}", media_gen.encode(c.convert("RGB"), "JPEG", quality=80), kind)
              for k, (kind, c) in enumerate(media_gen.near_copies(im, 7))]
    v = _pictures("inside", items)
    ap = engine.appraise(v.ref, tokenizer=SCHEDULE, seeds=(0,))
    assert ap["tokens"]["near_duplicate_records"] == 4


def test_video_copy_found_by_keyframes(home) -> None:
    frames = curate_gen.clip_frames(3)
    orig = curate_gen.video_file(frames)
    copy = curate_gen.video_file([f.resize((144, 96)) for f in frames])
    other = curate_gen.video_file(curate_gen.clip_frames(50))
    a = media_sets.build("clips-a", [media_sets.media_record("v0", orig, "v0.mp4")], schedules=("qwen2.5-vl-video",))
    b = media_sets.build("clips-b", [media_sets.media_record("w0", copy, "w0.mp4"),
                                     media_sets.media_record("w1", other, "w1.mp4")],
                         schedules=("qwen2.5-vl-video",))  # fmt: skip
    engine.appraise(a.ref, provider="a", tokenizer="qwen2.5-vl-video", seeds=(0,))
    engine.register_listing(a.ref, "lst_v", "a")
    ev = engine.appraise(b.ref, provider="b", tokenizer="qwen2.5-vl-video", seeds=(0,))["uniqueness"]["evidence"]
    assert [(p["record"], p["listed_record"], p["modality"]) for p in ev["media"]["pairs"]] == [("w0", "v0", "video")]
