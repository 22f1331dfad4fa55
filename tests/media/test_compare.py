"""compare_declared: a provider's numbers against the probe's, one row per disagreement."""

from __future__ import annotations

from ciyuan.ingest.probe import compare_declared

IMAGE = {"format": "jpeg", "width": 640, "height": 480, "mode": "RGB", "orientation": 6, "display_width": 480,
         "display_height": 640, "frames": 1, "bytes": 1000}
VIDEO = {"format": "mp4", "codec": "h264", "width": 1280, "height": 720, "fps": 29.97, "frames": 300,
         "duration_s": 10.01, "header_duration_s": 10.01, "audio_codec": None, "bytes": 1}


def test_agreement_is_silent():
    assert compare_declared({"width": 640, "height": 480, "format": "JPG", "language": "zh"}, IMAGE) == []
    assert compare_declared({"width": 480, "height": 640}, {"image": IMAGE}) == []  # the displayed size
    assert compare_declared({"fps": 30, "duration_s": 10, "codec": "avc1", "frames": 300}, VIDEO) == []
    assert compare_declared({"video": {"width": 1280}}, {"video": VIDEO}) == []


def test_each_disagreement_is_a_row():
    rows = compare_declared({"width": 4096, "height": 480}, IMAGE)
    assert rows == [{"field": "width", "declared": 4096, "probed": 640}]
    rows = compare_declared({"duration_s": 60, "fps": 60, "codec": "vp9", "num_frames": "lots"}, VIDEO)
    assert {r["field"] for r in rows} == {"duration_s", "fps", "codec", "num_frames"}
    assert compare_declared({"duration_s": float("nan")}, VIDEO)[0]["field"] == "duration_s"


def test_extension():
    assert compare_declared({}, IMAGE, name="a.png") == [{"field": "extension", "declared": "png", "probed": "jpeg"}]
    assert compare_declared({}, IMAGE, name="a.JPEG") == []
    assert compare_declared({}, VIDEO, name="clip.mov") == []  # one container, two names
    assert compare_declared({}, VIDEO, name="clip") == []
