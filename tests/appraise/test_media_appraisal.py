"""Appraisal of media versions: resolution and duration distributions, corrupt, mismatch,
duplicate and caption rates, from the probe's facts and the ingest quarantine; in the stored
appraisal JSON and in the HTML report in English and Chinese.

Real PNG and WAV bytes probed by the ingest probe; the builder's own quarantine holds two files
the probe refused, as the media ingest files them (``media.<reason>``).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "media"))

import media_sets  # noqa: E402

from ciyuan.appraise import engine, report  # noqa: E402
from ciyuan.appraise.media import DURATION_EDGES, SIDE_EDGES, scan  # noqa: E402


def _version(name: str = "mix"):
    from ciyuan.store import VersionBuilder

    b = VersionBuilder(name, made_by={"tool": "tests"}, rows_per_shard=4, batch_rows=2)
    for r in media_sets.image_records() + media_sets.audio_records():
        b.add(r)
    b.add({"id": "note", "text": "plain text is not media"})
    b.quarantine("bad.png", 0, "media.truncated", b"\x89PNG\r\n\x1a\n")
    b.quarantine("bad.wav", 0, "media.corrupt", b"RIFF")
    b.quarantine("notes.jsonl", 3, "malformed JSON", b"{")  # not a media refusal
    b.quarantine_unlisted("many.tar", 40, Counter({"media.bomb": 3}), 1000)  # past the per-file cap
    return b.commit()


def test_media_summary_counts_exactly(home) -> None:
    m = scan(_version())
    assert m["media_records"] == 10 and m["by_modality"] == {"image": 6, "audio": 4}
    assert m["formats"] == {"image": {"png": 6}, "audio": {"wav": 4}}
    assert m["encoding_formats"] == ["audio/wav", "image/png"]
    # 5 of 15 media items were refused (10 records + 5 quarantined, 3 of them past the cap); the
    # malformed JSON line is not media
    assert m["corrupt"] == {"rate": 5 / 15, "count": 5, "of": 15,
                            "by_reason": {"media.bomb": 3, "media.corrupt": 1, "media.truncated": 1}}  # fmt: skip
    assert m["mismatch"]["count"] == 1 and m["mismatch"]["by_field"] == {"duration_s": 1}
    assert m["duplicates"] == {"rate": 0.1, "count": 1, "of": 10, "groups": 1, "without_sha256": 0}  # img5 = img0
    # captions: img0, img1, img2, img4 and wav0, wav1 (wav2 and wav3 have empty text, img3 and img5 none)
    assert m["captions"] == {"rate": 0.6, "count": 6, "of": 10}
    side = m["resolution"]["long_side_px"]
    longs = sorted(max(w, h) for w, h in media_sets.IMAGE_SIZES[:5]) + [640]
    assert side["n"] == 6 and side["min"] == min(longs) and side["max"] == max(longs)
    want = [sum(1 for x in longs if lo <= x < hi) for lo, hi in zip(SIDE_EDGES, SIDE_EDGES[1:], strict=False)]
    assert side["counts"] == want and side["quantiles"]["p50"] == 640
    assert m["resolution"]["top"]["640x480"] == 2
    dur = m["duration_s"]["audio"]
    secs = [s for s, _ in media_sets.AUDIO_SECONDS]
    assert dur["n"] == 4 and dur["max"] == 31.0 and sum(dur["counts"]) + dur["above"] == 4
    assert dur["counts"] == [sum(1 for x in secs if lo <= x < hi)
                             for lo, hi in zip(DURATION_EDGES, DURATION_EDGES[1:], strict=False)]  # fmt: skip


def test_appraisal_json_and_html_show_media_in_both_languages(home, tmp_path) -> None:
    v = _version()
    ap = engine.appraise(v.ref, seeds=(0,))
    assert ap["media"]["media_records"] == 10 and ap["media"]["duplicates"]["count"] == 1
    stored = json.loads((Path(v.location) / "appraisal.json").read_text())
    assert stored["media"] == json.loads(json.dumps(ap["media"]))
    en = report.render(ap, "en")
    assert "Image resolution (long side, pixels)" in en and "Duration of audio (seconds)" in en
    assert "Exact duplicates (same sha256 of the bytes)" in en and "1 / 10" in en and "5 / 15" in en
    assert "png 6" in en and "640x480 (2)" in en
    zh = report.render(ap, "zh")
    assert "图像分辨率（长边，像素）" in zh and "音频时长（秒）" in zh and "带有描述或转写文本" in zh and "6 / 10" in zh


def test_text_version_has_no_media_section(home) -> None:
    v = media_sets.build("plain", [{"id": f"t{i}", "text": f"text {i}"} for i in range(30)])
    ap = engine.appraise(v.ref, seeds=(0,))
    assert "media" not in ap and "Image resolution" not in report.render(ap, "en")


def test_media_only_report_leaves_out_what_reads_text(home) -> None:
    v = media_sets.build("pictures", media_sets.image_records(), schedules=("qwen2-vl-image",))
    ap = engine.appraise(v.ref, tokenizer="qwen2-vl-image", seeds=(0,))
    ind = ap["quality"]["indicators"]
    for name in ("language_consistency", "diversity"):
        assert ind[name]["score"] is None and ind[name]["applies"] is False
    assert ind["completeness"]["score"] == 1.0  # the bytes are there (sha256), though the scan reads none
    assert ap["price"]["modality"] == "image"
    en = report.render(ap, "en")
    assert "language consistency" not in en and "diversity" not in en
    assert "A media-only version" in en and "Image resolution (long side, pixels)" in en
    assert "Learning curve" not in en and "Uniqueness against the catalog by perceptual hash" in en
    # a mixed version keeps its text indicators
    mixed = engine.appraise(_version().ref, seeds=(0,))
    assert mixed["quality"]["indicators"]["language_consistency"].get("applies", True)
    assert "A media-only version" not in report.render(mixed, "en")
