"""Media curation on real decoded media: each step, then ``ciyuan curate`` with each media recipe.

Every medium is made here (Pillow, soundfile, PyAV) and probed by ``ciyuan.ingest.probe`` as
ingest would, so the filters read the facts ingest writes.
"""

from __future__ import annotations

import curate_gen as cg
import numpy as np
import pytest
from clihelp import cli
from media_gen import encode, near_copies, picture
from typer.testing import CliRunner

from ciyuan.curate.phash import all_pairs, choose_layout
from ciyuan.curate.pipeline import run_steps
from ciyuan.curate.steps import make_step
from ciyuan.ingest.probe import probe

runner = CliRunner()


def rec(rid: str, data: bytes, text: str | None = "a small picture of shapes") -> dict:
    modality, facts = probe(data)
    return {"id": rid, "modality": modality, "text": text, "media": data, "meta": {modality: facts}}


def rejected(out: list[dict]) -> dict[str, dict]:
    return {r["id"]: r["_rejected"] for r in out if "_rejected" in r}


# exact duplicates by decoded content ---------------------------------------------------------------


def test_png_and_lossless_webp_of_the_same_pixels_are_exact_duplicates_a_jpeg_is_not():
    v = cg.image_variants(1)
    other = cg.image_variants(2)
    recs = [rec("png", v["png"]), rec("webp", v["webp"]), rec("jpeg", v["near"]), rec("other", other["png"])]
    assert recs[0]["media"] != recs[1]["media"]  # different files ...
    step = make_step("media_exact_dedup")
    out = rejected(run_steps(recs, [step]))
    assert set(out) == {"webp"}  # ... the same pixels
    assert out["webp"]["code"] == "media_exact_dedup.exact_duplicate" and "png" in out["webp"]["reason"]
    assert step.stats.seen == 4 and step.stats.counters["groups"] == 1


def test_wav_and_flac_of_the_same_samples_are_exact_duplicates_and_mp3_or_other_audio_are_not():
    x = cg.melody(1)
    recs = [rec("wav", cg.audio_file(x)), rec("flac", cg.audio_file(x, fmt="FLAC")),
            rec("wav24", cg.audio_file(x, subtype="PCM_24")), rec("louder", cg.audio_file(x * 1.5)),
            rec("other", cg.audio_file(cg.melody(2)))]  # fmt: skip
    out = rejected(run_steps(recs, [make_step("media_exact_dedup")]))
    assert set(out) == {"flac", "wav24"}
    assert all("decoded audio content as wav" in r["reason"] for r in out.values())


def test_a_remuxed_video_is_an_exact_duplicate_a_reencoded_one_is_not():
    mp4 = cg.video_file(cg.clip_frames(0))
    mkv = cg.remux(mp4)
    again = cg.video_file(cg.clip_frames(0), crf=35)
    recs = [rec("mp4", mp4), rec("mkv", mkv), rec("crf35", again), rec("other", cg.video_file(cg.clip_frames(1)))]
    assert recs[1]["meta"]["video"]["format"] == "mkv"
    out = rejected(run_steps(recs, [make_step("media_exact_dedup")]))
    assert set(out) == {"mkv"}


# near duplicates -----------------------------------------------------------------------------------


def test_image_near_duplicates_by_hamming_distance_are_removed_beside_what_they_duplicate():
    recs, copies = [], {}
    for s in range(8):
        im = picture(s)
        recs.append(rec(f"p{s}", encode(im, "PNG")))
        if s < 4:
            for kind, c in near_copies(im, s):
                rid = f"p{s}-{kind}"
                copies[rid] = f"p{s}"
                recs.append(rec(rid, encode(c.convert("RGB"), "JPEG", quality=85)))
    step = make_step("media_near_dedup", {"threshold": 12})
    out = rejected(run_steps(recs, [step]))
    assert set(out) == set(copies)
    pairs = step.stats.extra["near_duplicates"]["pairs"]
    assert {p["removed"]: p["kept"] for p in pairs} == copies
    assert all(0 <= p["distance"] <= 12 and p["modality"] == "image" for p in pairs)
    for rid, keeper in copies.items():
        r = next(x for x in recs if x["id"] == rid)
        assert r["meta"]["near_dup_of"] == keeper and out[rid]["code"] == "media_near_dedup.near_duplicate"
    hist = step.stats.extra["distance_histogram"]["image"]
    assert sum(hist["counts"][:13]) >= len(copies) and len(hist["counts"]) == 21


def test_keep_largest_keeps_the_biggest_copy():
    im = picture(3, (200, 150))
    recs = [rec("small", encode(im.resize((100, 75)), "PNG")), rec("big", encode(im, "PNG"))]
    out = rejected(run_steps(recs, [make_step("media_near_dedup", {"keep": "largest"})]))
    assert set(out) == {"small"} and "big" in out["small"]["reason"]


def test_the_step_finds_the_same_pairs_as_all_pairs_without_comparing_them_all():
    rng = np.random.default_rng(4)
    base = rng.integers(0, 2**63, 3000, dtype=np.uint64)
    flips = np.uint64(1) << rng.integers(0, 64, (3000, 6)).astype(np.uint64)
    near = base ^ np.bitwise_xor.reduce(flips, axis=1)  # a copy a few bits away from each
    h = np.concatenate([base, near])
    step = make_step("media_near_dedup", {"threshold": 8, "histogram_radius": 8})
    i, j, d = step._pairs(h[:, None], 1, 8)
    ref = all_pairs(h, 8)
    assert choose_layout(8, len(h)) is not None  # the step searched the multi-index, not all pairs
    assert np.array_equal(np.stack([i, j, d], axis=1)[np.lexsort((j, i))], ref)
    # video: the mean over aligned frames, found through each position's index
    frames = rng.integers(0, 2**63, (400, 4), dtype=np.uint64)
    frames[200:] = frames[:200] ^ (np.uint64(1) << rng.integers(0, 64, (200, 4)).astype(np.uint64))
    i, j, d = step._pairs(frames, 4, 8)
    brute = np.bitwise_count(frames[:, None, :] ^ frames[None, :, :]).sum(axis=2)
    want = {(a, b) for a, b in zip(*np.nonzero((2 * brute + 4) // 8 <= 8), strict=True) if a < b}
    assert set(zip(i.tolist(), j.tolist(), strict=True)) == want


def test_the_histogram_counts_every_pair_when_small_and_the_sampled_rows_pairs_when_large():
    rng = np.random.default_rng(8)
    h = rng.integers(0, 2**63, 300, dtype=np.uint64)
    h[150:] = h[:150] ^ (np.uint64(1) << rng.integers(0, 64, 150).astype(np.uint64))
    step = make_step("media_near_dedup", {"threshold": 10, "histogram_radius": 24})
    counts, k = step._histogram(h[:, None], 1)
    ref = all_pairs(h, 24)
    assert k == 300 and counts == np.bincount(ref[:, 2], minlength=25).tolist()
    small = make_step("media_near_dedup", {"threshold": 10, "histogram_radius": 24, "histogram_sample": 30})
    counts, k = small._histogram(h[:, None], 1)
    picked = set(np.unique(np.linspace(0, 299, 30).astype(np.int64)).tolist())
    want = [row for row in ref.tolist() if row[0] in picked or row[1] in picked]
    assert k == 30 and counts == np.bincount([d for _, _, d in want], minlength=25).tolist()


def test_video_near_duplicates_by_keyframe_hashes():
    recs = [rec(f"v{s}", cg.video_file(cg.clip_frames(s))) for s in range(5)]
    recs.append(rec("v0-small", cg.video_file(cg.clip_frames(0), size=(64, 44), crf=35)))
    recs.append(rec("v1-vp9", cg.video_file(cg.clip_frames(1), fmt="webm", codec="libvpx-vp9")))
    step = make_step("media_near_dedup")
    out = rejected(run_steps(recs, [step]))
    assert set(out) == {"v0-small", "v1-vp9"}
    assert {p["removed"]: p["kept"] for p in step.stats.extra["near_duplicates"]["pairs"]} == {
        "v0-small": "v0", "v1-vp9": "v1"}  # fmt: skip


def test_audio_near_duplicates_by_acoustic_fingerprint():
    x = cg.melody(7)
    recs = [rec(f"a{s}", cg.audio_file(cg.melody(s))) for s in range(8)]
    recs += [rec("a7-22k", cg.audio_file(cg.resample(x, 16000, 22050), rate=22050)),
             rec("a7-quiet", cg.audio_file(x * 0.4)),
             rec("a7-ogg", cg.audio_file(x, fmt="OGG", subtype="VORBIS"))]  # fmt: skip
    step = make_step("media_near_dedup", {"threshold": 8})
    out = rejected(run_steps(recs, [step]))
    assert set(out) == {"a7-22k", "a7-quiet", "a7-ogg"}
    assert all(r["reason"].endswith("of a7 (threshold 8)") for r in out.values())


def test_a_media_ref_that_cannot_be_read_is_skipped_with_its_reason(home):
    """Without the blob store the reference cannot be read; with it, a blob that is not there cannot."""
    import importlib.util

    with_store = importlib.util.find_spec("ciyuan.store.blobs") is not None
    missing = "sha256:" + "0" * 64
    reason, says = ("blob_unreadable", missing) if with_store else ("blob_unavailable", "ciyuan.store.blobs")
    png = cg.image_variants(1)["png"]
    ref = {"id": "big", "modality": "image", "media": None, "media_ref": missing, "meta": {}}
    for name in ("media_exact_dedup", "media_near_dedup"):
        step = make_step(name)
        out = run_steps([rec("a", png), dict(ref)], [step])
        assert not rejected(out)
        assert step.stats.counters[f"skipped_{reason}"] == 1
        assert says in step.stats.extra["skipped"]["big"]


# filters -------------------------------------------------------------------------------------------


def test_media_filter_reads_the_probed_facts():
    img = lambda w, h: rec(f"i{w}x{h}", encode(picture(1, (w, h)), "PNG"))  # noqa: E731
    recs = [img(200, 150), img(40, 150), img(900, 100), img(300, 290)]
    recs += [rec("short", cg.audio_file(cg.melody(1, seconds=0.3))), rec("ok", cg.audio_file(cg.melody(1)))]
    recs += [rec("slow", cg.video_file(cg.clip_frames(2), fps=5)), rec("fast", cg.video_file(cg.clip_frames(3)))]
    recs.append({"id": "unprobed", "modality": "image", "media": b"x", "meta": {}})
    step = make_step("media_filter", {"min_side": 64, "max_side": 800, "max_aspect": 3.0, "min_duration_s": 0.5,
                                      "min_fps": 8, "max_bytes": 10**7})  # fmt: skip
    out = rejected(run_steps(recs, [step]))
    assert {k: v["code"] for k, v in out.items()} == {
        "i40x150": "media_filter.too_small", "i900x100": "media_filter.too_large",
        "short": "media_filter.too_short", "slow": "media_filter.low_fps",
        "unprobed": "media_filter.no_probed_facts"}  # fmt: skip
    assert "40x150" in out["i40x150"]["reason"] and "0.3 s < 0.5 s" in out["short"]["reason"]
    wide = rejected(run_steps([img(500, 100)], [make_step("media_filter", {"max_aspect": 3.0})]))
    assert wide["i500x100"]["code"] == "media_filter.aspect_ratio" and "5.000" in wide["i500x100"]["reason"]
    big = rejected(run_steps([img(200, 150)], [make_step("media_filter", {"max_bytes": 1000})]))
    assert big["i200x150"]["code"] == "media_filter.file_too_large"


def test_audio_quality_measures_silence_and_clipping_on_the_samples():
    x = cg.melody(3)
    silent = x.copy()
    silent[: int(len(x) * 0.8)] = 0
    clipped = np.clip(x * 4, -1, 1)
    files = {"clean": cg.audio_file(x), "silent": cg.audio_file(silent), "clipped": cg.audio_file(clipped),
             "vorbis": cg.audio_file(x, fmt="OGG", subtype="VORBIS")}  # fmt: skip
    recs = [rec(k, v) for k, v in files.items()]
    step = make_step("audio_quality")
    out = rejected(run_steps(recs, [step]))
    assert {k: v["code"] for k, v in out.items()} == {"silent": "audio_quality.silence",
                                                      "clipped": "audio_quality.clipping"}  # fmt: skip
    assert 0.75 <= recs[1]["meta"]["audio_quality"]["silence_ratio"] <= 0.85
    assert recs[0]["meta"]["audio_quality"] == {"silence_ratio": 0.0, "clipping_ratio": 0.0}
    assert recs[2]["meta"]["audio_quality"]["clipping_ratio"] > 0.1


def test_caption_length_and_text_records_pass_media_steps_as_not_applicable():
    png = cg.image_variants(1)["png"]
    recs = [rec("none", png, None), rec("short", png, "ab"), rec("ok", png, "a red square"),
            rec("zh", png, "红色方块"), {"id": "t", "text": "", "meta": {}}]  # fmt: skip
    step = make_step("caption_length", {"min_chars": 3, "min_words": 2})
    out = rejected(run_steps(recs, [step]))
    assert {k: v["code"] for k, v in out.items()} == {"none": "caption_length.no_caption",
                                                      "short": "caption_length.too_short"}  # fmt: skip
    assert step.stats.not_applicable == {"text": 1}


# through ciyuan curate with each recipe -------------------------------------------------------------


def build(name: str, recs: list[dict]):
    from ciyuan.store import VersionBuilder

    b = VersionBuilder(name, made_by={"command": "test"}, rows_per_shard=4)
    for r in recs:
        b.add(r)
    return b.commit()


def test_image_caption_recipe_through_the_cli_and_its_report(home, tmp_path):
    recs = []
    for s in range(6):
        v = cg.image_variants(s)
        recs.append(rec(f"img{s}", v["png"], f"picture number {s} of shapes"))
    v0 = cg.image_variants(0)
    recs += [rec("img0-webp", v0["webp"], "the same picture again"),
             rec("img1-near", encode(picture(1, (160, 120)), "JPEG", quality=40), "a copy of picture one"),
             rec("tiny", encode(picture(9, (40, 40)), "PNG"), "a tiny picture here"),
             rec("nocap", cg.image_variants(7)["png"], "")]  # fmt: skip
    v = build("imgs", recs)
    out = cli("curate", v.ref, "--recipe", "image-caption", "--workers", "1")
    assert [s["step"] for s in out["steps"]] == ["media_filter", "caption_length", "media_exact_dedup",
                                                 "media_near_dedup"]  # fmt: skip
    assert out["kept"] == 6 and out["rejected"] == 4
    ref = f"imgs@{out['version'][:12]}"
    codes = {it["id"]: it["code"] for it in cli("show", ref, "--rejected", "--limit", "20")["items"]}
    assert codes == {"tiny": "media_filter.too_small", "nocap": "caption_length.no_caption",
                     "img0-webp": "media_exact_dedup.exact_duplicate",
                     "img1-near": "media_near_dedup.near_duplicate"}  # fmt: skip
    html_path = tmp_path / "r.html"
    rep = cli("report", ref, "--out", str(html_path))
    pairs = rep["media_near_duplicates"]["pairs"]
    assert [(p["removed"], p["kept"]) for p in pairs] == [("img1-near", "img1")]
    hist = rep["hash_distance_histogram"]["image"]
    assert sum(hist["counts"]) >= 1 and hist["threshold"] == 10
    page = html_path.read_text(encoding="utf-8")
    assert "Removed near-duplicate media" in page and "thumbnails" not in rep  # pictures on the page only
    row = page.split("<table class=dups>")[1].split("</table>")[0]
    assert row.count('<img src="data:image/jpeg;base64,') == 2  # the removed copy beside its original
    assert '<code>img1-near</code></td><td translate="no"><img' in row and "<code>img1</code></td>" in row
    assert "Hash distances between pairs (images)" in page
    # a media-only version: the text sections do not apply, the media ones take their place
    assert rep["modalities"] == {"kept": {"image": 6}, "rejected": {"image": 4}}
    assert "by_language" not in rep["sections"] and "pii" not in rep["sections"]
    assert {"media_kept", "media_duplicates"} <= set(rep["sections"])
    for text_only in ("Rejections by language", "Languages", "Personal information redacted", "Quality score (share"):
        assert text_only not in page, text_only
    assert "Kept media" in page and "the text sections (languages, text quality" in page
    zh = cli("report", ref, "--out", str(tmp_path / "zh.html"), "--lang", "zh")
    assert zh["version"] == rep["version"]
    zpage = (tmp_path / "zh.html").read_text(encoding="utf-8")
    assert "已去除的近似重复媒体" in zpage and "记录对的哈希距离（图像）" in zpage


def test_speech_asr_recipe_through_the_cli(home):
    x = cg.melody(5)
    silent = x.copy()
    silent[: int(len(x) * 0.9)] = 0
    recs = [rec(f"utt{s}", cg.audio_file(cg.melody(s)), f"transcript {s}") for s in range(5)]
    recs += [rec("utt5-flac", cg.audio_file(cg.melody(4), fmt="FLAC"), "transcript 4"),
             rec("utt5-22k", cg.audio_file(cg.resample(cg.melody(3), 16000, 22050), rate=22050), "transcript 3"),
             rec("silent", cg.audio_file(silent), "mostly nothing"),
             rec("long", cg.audio_file(cg.melody(8, seconds=31)), "a long one"),
             rec("notext", cg.audio_file(cg.melody(9)), None)]  # fmt: skip
    v = build("speech", recs)
    out = cli("curate", v.ref, "--recipe", "speech-asr", "--workers", "1")
    ref = f"speech@{out['version'][:12]}"
    codes = {it["id"]: it["code"] for it in cli("show", ref, "--rejected", "--limit", "20")["items"]}
    assert codes == {"utt5-flac": "media_exact_dedup.exact_duplicate", "utt5-22k": "media_near_dedup.near_duplicate",
                     "silent": "audio_quality.silence", "long": "media_filter.too_long",
                     "notext": "caption_length.no_caption"}  # fmt: skip
    assert out["kept"] == 5


def test_video_clips_recipe_through_the_cli(home):
    recs = [rec(f"clip{s}", cg.video_file(cg.clip_frames(s)), None) for s in range(4)]
    recs += [rec("clip0-mkv", cg.remux(cg.video_file(cg.clip_frames(0))), None),
             rec("clip2-small", cg.video_file(cg.clip_frames(2), size=(64, 44), crf=33), None),
             rec("clip3-big", cg.video_file(cg.clip_frames(3), size=(144, 96), crf=20), None),
             rec("slow", cg.video_file(cg.clip_frames(6), fps=4), None),
             rec("blip", cg.video_file(cg.clip_frames(7, frames=3)), None)]  # fmt: skip
    v = build("clips", recs)
    out = cli("curate", v.ref, "--recipe", "video-clips", "--workers", "1")
    ref = f"clips@{out['version'][:12]}"
    codes = {it["id"]: it["code"] for it in cli("show", ref, "--rejected", "--limit", "20")["items"]}
    # keep: largest keeps the bigger re-encode of clip 3 and drops the original
    assert codes == {"clip0-mkv": "media_exact_dedup.exact_duplicate", "clip2-small": "media_near_dedup.near_duplicate",
                     "clip3": "media_near_dedup.near_duplicate", "slow": "media_filter.low_fps",
                     "blip": "media_filter.too_short"}  # fmt: skip
    rep = cli("report", ref, "--out", str(home / "v.html"))
    assert (home / "v.html").read_text(encoding="utf-8").count('<img src="data:image/jpeg;base64,') == 4
    assert {p["removed"]: p["kept"] for p in rep["media_near_duplicates"]["pairs"]} == {
        "clip2-small": "clip2", "clip3": "clip3-big"}  # fmt: skip
    assert "video" in rep["hash_distance_histogram"]


def test_steps_and_recipes_are_listed():
    out = cli("steps")
    media = {s["name"]: s["modalities"] for s in out["steps"] if s["name"].startswith(("media", "audio", "caption"))}
    assert media == {"media_filter": ["audio", "image", "video"], "audio_quality": ["audio"],
                     "caption_length": ["audio", "image", "video"], "media_exact_dedup": ["audio", "image", "video"],
                     "media_near_dedup": ["audio", "image", "video"]}  # fmt: skip
    assert {"image-caption", "speech-asr", "video-clips"} <= set(out["recipes"])


def test_two_workers_make_the_same_version_as_one(home):
    """The media steps' scans and plans go through worker processes unchanged (same version id)."""
    from ciyuan.curate.curate import curate

    recs = [rec(f"img{s}", cg.image_variants(s)["png"]) for s in range(5)]
    near = encode(picture(2, (160, 120)), "JPEG", quality=50)
    recs += [rec("img0-webp", cg.image_variants(0)["webp"]), rec("img2-near", near)]
    v = build("two", recs)
    one = curate(v.ref, "image-caption", workers=1)
    two = curate(v.ref, "image-caption", workers=2)
    assert one["version"] == two["version"] and one["rejected"] == 2
    assert [s["rejected"] for s in two["steps"]] == [0, 0, 1, 1]


def test_media_in_the_blob_store_is_decoded_from_its_file(home):
    """A big object kept as a blob (``media_ref``) is compared by its decoded content like inline bytes."""
    blobs = pytest.importorskip("ciyuan.store.blobs", reason="the blob store is not on this branch yet")
    v = cg.image_variants(4)
    digest = blobs.BlobStore().put(v["webp"])
    big = dict(rec("blob", v["webp"]), media=None, media_ref=blobs.ref_of(digest))
    out = rejected(run_steps([rec("inline", v["png"]), big], [make_step("media_exact_dedup")]))
    assert set(out) == {"blob"}
    x = cg.melody(2)
    digest = blobs.BlobStore().put(cg.audio_file(x, fmt="FLAC"))
    audio = dict(rec("a", cg.audio_file(x, fmt="FLAC")), media=None, media_ref=blobs.ref_of(digest))
    step = make_step("audio_quality")
    run_steps([audio], [step])
    assert audio["meta"]["audio_quality"]["silence_ratio"] == 0.0 and not step.stats.counters


def test_media_steps_over_text_only_records_let_them_all_by():
    recs = [{"id": f"t{i}", "text": "the same words", "meta": {}} for i in range(3)]
    for name in ("media_exact_dedup", "media_near_dedup", "media_filter", "caption_length"):
        step = make_step(name)
        assert not rejected(run_steps([dict(r, meta={}) for r in recs], [step]))
        assert step.stats.seen == 0 and step.stats.not_applicable == {"text": 3}, name


def test_the_report_says_when_the_histogram_was_sampled():
    from ciyuan.curate.report import _media_html
    from ciyuan.i18n import Translator

    rep = {"media_near_duplicates": {"threshold": 10, "removed": 0, "pairs": []},
           "hash_distance_histogram": {"image": {"distances": [0, 1], "counts": [3, 4], "threshold": 10,
                                                 "records": 5000, "sampled": 1000}}}  # fmt: skip
    en, zh = _media_html(rep, Translator("en")), _media_html(rep, Translator("zh"))
    assert "1000 of the 5000 records" in en and "No near-duplicate media removed." in en
    assert "5000 条记录中均匀抽取的 1000 条" in zh and "<svg" in zh


def test_ingest_a_folder_with_captions_then_curate_it_with_image_caption(home, tmp_path):
    """What a provider does: a folder of pictures with .txt captions, ingested, then curated."""
    folder = tmp_path / "pics"
    folder.mkdir()
    for s in range(5):
        (folder / f"img{s}.png").write_bytes(cg.image_variants(s)["png"])
        (folder / f"img{s}.txt").write_text(f"a picture of shapes number {s}", encoding="utf-8")
    (folder / "dup.webp").write_bytes(cg.image_variants(0)["webp"])
    (folder / "dup.txt").write_text("the first picture again", encoding="utf-8")
    (folder / "near.jpg").write_bytes(encode(picture(1, (160, 120)), "JPEG", quality=40))
    (folder / "near.txt").write_text("a copy of picture one", encoding="utf-8")
    cli("ingest", str(folder), "--dataset", "pics")
    out = cli("curate", "pics", "--recipe", "image-caption", "--workers", "1")
    assert out["kept"] == 5 and out["rejected"] == 2
    ref = f"pics@{out['version'][:12]}"
    shown = cli("show", ref, "--rejected", "--limit", "20")["items"]
    codes = sorted(it["code"] for it in shown)
    assert codes == ["media_exact_dedup.exact_duplicate", "media_near_dedup.near_duplicate"]
