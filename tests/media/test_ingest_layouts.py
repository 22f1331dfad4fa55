"""Media ingest end to end through ``ciyuan ingest``: every layout a provider has, records by their
bytes, sidecars joined, declared lies recorded, bad items quarantined with file, member and reason.
Every media file is made here (Pillow, soundfile, PyAV)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clihelp import cli, quarantine, records
from media_gen import audio_bytes, image_bytes, png_header_only, video_bytes
from typer.testing import CliRunner

from ciyuan.cli.main import app

runner = CliRunner()


def reasons(items: list[dict]) -> dict[str, str]:
    """``{file or member: reason code}`` of quarantine rows."""
    return {it.get("member") or Path(it["source"]).name: it["reason"].split(":", 1)[0] for it in items}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_folder_with_sidecars(home: Path, tmp_path: Path) -> None:
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    a, b = image_bytes("PNG", (96, 64)), image_bytes("JPEG", (120, 80))
    lying = image_bytes("PNG", (40, 30))
    (d / "a.png").write_bytes(a)
    (d / "a.txt").write_text("a red square on a gradient", encoding="utf-8")
    (d / "a.json").write_text(json.dumps({"width": 4096, "height": 64, "licence": "CC-BY-4.0"}))
    (d / "sub" / "b.jpg").write_bytes(b)
    (d / "sub" / "b.txt").write_text("second", encoding="utf-8")
    (d / "c.jpg").write_bytes(lying)  # PNG bytes under a JPEG name: read as PNG, the lie recorded
    (d / "notes.png").write_bytes(b"this is just text, not a picture\n")  # named as media, no media at all
    (d / "bomb.png").write_bytes(png_header_only(100_000, 100_000))
    (d / "cut.jpg").write_bytes(b[: len(b) // 2])
    (d / "empty.png").write_bytes(b"")
    (d / "orphan.txt").write_text("a caption without its picture", encoding="utf-8")
    (d / "README.md").write_text("# Photos\nCC-BY-4.0", encoding="utf-8")  # the dataset's card: not an item
    (d / "LICENSE").write_text("CC-BY-4.0", encoding="utf-8")

    out = cli("ingest", str(d), "--dataset", "photos")
    assert (out["records"], out["modality"]) == (3, "image")
    assert out["quarantined_by_reason"] == {"media.bomb": 1, "media.not_media": 2, "media.orphan_sidecar": 1,
                                            "media.truncated": 1}
    assert out["mismatches"] == {"records": 2, "by_field": {"extension": 1, "width": 1}}
    assert list(out["tokens"]) == ["qwen2-vl-image"] and out["tokens"]["qwen2-vl-image"] > 0

    recs = {r["meta"]["source"]: r for r in records("photos")}
    assert set(recs) == {"photos/a.png", "photos/sub/b.jpg", "photos/c.jpg"}
    ra = recs["photos/a.png"]
    assert ra["text"] == "a red square on a gradient" and ra["media"] == a and ra["modality"] == "image"
    assert ra["meta"]["sha256"] == sha(a) and ra["meta"]["licence"] == "CC-BY-4.0"
    facts = ra["meta"]["image"]
    assert (facts["width"], facts["height"], facts["format"]) == (96, 64, "png")
    assert ra["meta"]["mismatch"] == [{"field": "width", "declared": 4096, "probed": 96}]
    assert ra["tokens"]["qwen2_vl_image"] == 3 * 2 + 2  # 96x64 -> 84x56, from the probe, not the declared 4096
    rc = recs["photos/c.jpg"]
    assert rc["meta"]["image"]["format"] == "png" and rc["media"] == lying
    assert rc["meta"]["mismatch"] == [{"field": "extension", "declared": "jpg", "probed": "png"}]
    assert recs["photos/sub/b.jpg"]["text"] == "second" and recs["photos/sub/b.jpg"]["meta"]["path"] == "sub/b.jpg"

    bad = reasons(quarantine("photos"))
    assert bad == {"notes.png": "media.not_media", "empty.png": "media.not_media", "bomb.png": "media.bomb",
                   "cut.jpg": "media.truncated", "orphan.txt": "media.orphan_sidecar"}
    full = {Path(it["source"]).name: it for it in quarantine("photos")}
    assert full["bomb.png"]["source"] == str(d / "bomb.png")  # the quarantine keeps where it sat
    assert "10,000,000,000 pixels" in full["bomb.png"]["reason"]  # refused from the header


def test_hf_imagefolder_with_splits(home: Path, tmp_path: Path) -> None:
    root = tmp_path / "hfimg"
    train, test = root / "train", root / "test"
    train.mkdir(parents=True)
    test.mkdir()
    imgs = {name: image_bytes("PNG", (56 + 28 * i, 56)) for i, name in enumerate(["x0.png", "x1.png", "x2.png"])}
    for n in ("x0.png", "x1.png"):
        (train / n).write_bytes(imgs[n])
    (test / "x2.png").write_bytes(imgs["x2.png"])
    (tmp_path / "outside.png").write_bytes(imgs["x0.png"])
    rows = [{"file_name": "x0.png", "text": "zero", "label": 3}, {"file_name": "x1.png", "caption": "one"},
            {"file_name": "../../outside.png", "text": "escapes"}, {"file_name": "gone.png", "text": "missing"}]
    (train / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    with (test / "metadata.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", "text", "height"])
        w.writerow(["x2.png", "two", "999"])

    out = cli("ingest", str(root), "--dataset", "hfimg")
    assert (out["records"], out["modality"]) == (3, "image")
    assert out["quarantined_by_reason"] == {"media.escaping_path": 1, "media.missing_file": 1}
    assert out["mismatches"] == {"records": 1, "by_field": {"height": 1}}
    recs = {r["meta"]["source"]: r for r in records("hfimg")}
    assert set(recs) == {"hfimg/train/x0.png", "hfimg/train/x1.png", "hfimg/test/x2.png"}
    assert {s: (r["text"], r["meta"]["split"]) for s, r in recs.items()} == {
        "hfimg/train/x0.png": ("zero", "train"), "hfimg/train/x1.png": ("one", "train"),
        "hfimg/test/x2.png": ("two", "test")}
    assert recs["hfimg/train/x0.png"]["meta"]["label"] == 3
    assert recs["hfimg/test/x2.png"]["meta"]["image"]["width"] == 112
    for r in recs.values():
        assert r["media"] == imgs[Path(r["meta"]["source"]).name] and r["meta"]["sha256"] == sha(r["media"])


def test_hf_audiofolder(home: Path, tmp_path: Path) -> None:
    root = tmp_path / "speech"
    root.mkdir()
    clips = {"a.wav": audio_bytes("WAV", "PCM_16", seconds=1.0), "b.flac": audio_bytes("FLAC", "PCM_16", seconds=2.5)}
    for n, data in clips.items():
        (root / n).write_bytes(data)
    (root / "silent.wav").write_bytes(audio_bytes("WAV", "PCM_16", seconds=0.0))
    with (root / "metadata.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file_name", "transcription", "duration_s"])
        w.writerow(["a.wav", "hello", "1.0"])
        w.writerow(["b.flac", "world", "60"])
        w.writerow(["silent.wav", "nothing", "0"])
    out = cli("ingest", str(root), "--dataset", "speech")
    assert (out["records"], out["modality"]) == (2, "audio")
    assert out["quarantined_by_reason"] == {"media.empty_audio": 1}
    assert out["tokens"] == {"whisper-audio": 1500 + 1500}  # each under 30 s: one window of 1500
    assert out["mismatches"] == {"records": 1, "by_field": {"duration_s": 1}}
    recs = {r["meta"]["source"]: r for r in records("speech")}
    assert recs["speech/b.flac"]["meta"]["audio"]["duration_s"] == 2.5 and recs["speech/b.flac"]["text"] == "world"
    assert recs["speech/a.wav"]["media"] == clips["a.wav"]


def _tar(path: Path, members: list[tuple[str, bytes]]) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_webdataset_tar(home: Path, tmp_path: Path) -> None:
    k1, k2 = image_bytes("JPEG", (64, 64)), image_bytes("WEBP", (84, 28))
    shard = tmp_path / "shard-000.tar"
    _tar(shard, [
        ("s/k1.jpg", k1), ("s/k1.txt", b"a cat"), ("s/k1.json", json.dumps({"height": 64}).encode()),
        ("s/k1.cls", b"7"),
        ("s/k2.webp", k2), ("s/k2.txt", b"a dog"),
        ("../evil.jpg", k1), ("/abs/k9.jpg", k1),
        ("s/k3.txt", b"caption only"),
        ("s/k4.jpg", b"GIF? no, text"),
    ])
    with tarfile.open(shard, "a") as tf:  # a link member: never followed
        link = tarfile.TarInfo("s/k5.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    out = cli("ingest", str(shard), "--dataset", "wds")
    assert (out["records"], out["modality"]) == (2, "image")
    assert out["quarantined_by_reason"] == {"media.escaping_member": 2, "media.no_media_member": 1,
                                            "media.not_media": 1, "media.special_member": 1}
    recs = {r["meta"]["source"]: r for r in records("wds")}
    assert set(recs) == {"shard-000.tar/s/k1.jpg", "shard-000.tar/s/k2.webp"}
    r1 = recs["shard-000.tar/s/k1.jpg"]
    assert (r1["text"], r1["meta"]["cls"], r1["meta"]["key"], r1["media"]) == ("a cat", 7, "s/k1", k1)
    assert "mismatch" not in r1["meta"] and r1["meta"]["height"] == 64
    assert recs["shard-000.tar/s/k2.webp"]["meta"]["image"]["format"] == "webp"
    items = quarantine("wds")
    assert reasons(items) == {"../evil.jpg": "media.escaping_member", "/abs/k9.jpg": "media.escaping_member",
                              "s/k3.txt": "media.no_media_member", "s/k4.jpg": "media.not_media",
                              "s/k5.jpg": "media.special_member"}
    assert all(it["source"] == str(shard) for it in items)  # file and member, both named


def test_webdataset_truncated_tar_keeps_what_came_before(home: Path, tmp_path: Path) -> None:
    k1 = image_bytes("PNG", (64, 64))
    big = image_bytes("PNG", (300, 300))
    full = tmp_path / "full.tar"
    _tar(full, [("k1.png", k1), ("k2.png", big)])
    data = full.read_bytes()
    cut = tmp_path / "cut.tar"
    cut.write_bytes(data[: 512 + len(k1) + 512 + 512 + 100 + 512])  # k1 whole, k2 cut inside its data
    out = cli("ingest", str(cut), "--dataset", "cut")
    assert out["records"] == 1 and out["quarantined_by_reason"] == {"media.truncated": 1}
    (item,) = quarantine("cut")
    assert item["member"] == "k2.png" and "ends" in item["reason"]


def test_hf_parquet_image_column(home: Path, tmp_path: Path) -> None:
    imgs = [image_bytes("PNG", (28 * (i + 1), 28)) for i in range(3)]
    wav = audio_bytes("WAV", "PCM_16", seconds=0.5)
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "image": pa.array([{"bytes": imgs[0], "path": "a.png"}, {"bytes": imgs[1], "path": "b.jpg"},
                           {"bytes": None, "path": "elsewhere.png"}, {"bytes": imgs[2], "path": "c.png"},
                           {"bytes": wav, "path": "d.png"}], type=struct),
        "caption": ["one", "two", "three", "four", "five"],
        "width": [28, 56, 0, 1000, 10],
    })
    src = tmp_path / "train-00000.parquet"
    pq.write_table(table, src, row_group_size=2)
    out = cli("ingest", str(src), "--dataset", "hfpq")
    assert (out["records"], out["modality"]) == (3, "image")
    assert out["quarantined_by_reason"] == {"media.no_bytes": 1, "media.wrong_modality": 1}
    assert out["mismatches"] == {"records": 2, "by_field": {"extension": 1, "width": 1}}
    recs = records("hfpq")
    assert [r["media"] for r in recs] == imgs and [r["text"] for r in recs] == ["one", "two", "four"]
    assert [r["meta"]["source"] for r in recs] == ["train-00000.parquet"] * 3
    assert [r["meta"]["line"] for r in recs] == [1, 2, 4] and recs[1]["meta"]["path"] == "b.jpg"
    assert {it["line"]: it["reason"].split(":")[0] for it in quarantine("hfpq")} == {3: "media.no_bytes",
                                                                                     5: "media.wrong_modality"}
    # a Parquet file without such a column is still the text reader's
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"text": ["hello"]}), plain)
    assert cli("ingest", str(plain), "--dataset", "plain")["tokens"] == {"cl100k_base": 1}


def test_modality_forced_and_picked(home: Path, tmp_path: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "p1.png").write_bytes(image_bytes("PNG"))
    (d / "p2.png").write_bytes(image_bytes("PNG", (30, 30)))
    wav = audio_bytes("WAV", "PCM_16", seconds=1.0)
    (d / "voice.png").write_bytes(wav)  # audio bytes under a picture's name
    out = cli("ingest", str(d), "--dataset", "auto")  # most files are images: the audio one is set aside
    assert (out["records"], out["modality"], out["quarantined_by_reason"]) == (2, "image", {"media.wrong_modality": 1})
    out = cli("ingest", str(d), "--dataset", "speech", "--modality", "audio")
    assert (out["records"], out["modality"]) == (1, "audio")
    assert out["quarantined_by_reason"] == {"media.wrong_modality": 2}
    (rec,) = records("speech")
    assert rec["media"] == wav and rec["meta"]["audio"]["format"] == "wav"
    assert rec["meta"]["mismatch"] == [{"field": "extension", "declared": "png", "probed": "wav"}]
    res = runner.invoke(app, ["ingest", str(d), "--dataset", "x", "--modality", "smell", "--json"])
    assert res.exit_code == 2 and "--modality" in json.loads(res.stdout)["error"]["message"]


def test_video_folder(home: Path, tmp_path: Path) -> None:
    d = tmp_path / "clips"
    d.mkdir()
    clip = video_bytes("mp4", "libx264", frames=20, size=(64, 48), fps=10)
    (d / "clip.mp4").write_bytes(clip)
    (d / "clip.txt").write_text("noise", encoding="utf-8")
    (d / "webm.mkv").write_bytes(video_bytes("webm", "libvpx-vp9", frames=10, size=(64, 48), fps=10))
    (d / "sound-only.mp4").write_bytes(video_bytes("mp4", None, frames=20, audio=True))
    out = cli("ingest", str(d), "--dataset", "clips", "--modality", "video")
    assert (out["records"], out["modality"]) == (2, "video")
    assert out["quarantined_by_reason"] == {"media.no_video_stream": 1}
    assert list(out["tokens"]) == ["qwen2.5-vl-video"] and out["tokens"]["qwen2.5-vl-video"] > 0
    recs = {r["meta"]["source"]: r for r in records("clips")}
    v = recs["clips/clip.mp4"]
    facts = v["meta"]["video"]
    assert (v["text"], v["media"], facts["frames"], facts["codec"]) == ("noise", clip, 20, "h264")
    assert recs["clips/webm.mkv"]["meta"]["video"]["format"] == "webm"  # a .mkv name for WebM bytes: same family


@pytest.mark.parametrize("layout", ["folder", "tar"])
def test_one_media_file_and_text_folders_unchanged(home: Path, tmp_path: Path, layout: str) -> None:
    data = image_bytes("PNG", (28, 28))
    if layout == "folder":
        src = tmp_path / "one.png"
        src.write_bytes(data)
        (tmp_path / "one.txt").write_text("just one", encoding="utf-8")
    else:
        src = tmp_path / "one.tar"
        _tar(src, [("one.png", data), ("one.txt", b"just one")])
    out = cli("ingest", str(src), "--dataset", "one")
    assert out["records"] == 1
    (rec,) = records("one")
    assert (rec["text"], rec["media"]) == ("just one", data)
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("plain text stays text", encoding="utf-8")
    assert cli("ingest", str(texts), "--dataset", "texts")["tokens"] == {"cl100k_base": 4}


def test_absurd_values_refused_by_the_settings(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ciyuan.config import settings

    monkeypatch.setenv("CIYUAN_MEDIA_MAX_DURATION_S", "2")
    settings.cache_clear()
    d = tmp_path / "long"
    d.mkdir()
    (d / "short.wav").write_bytes(audio_bytes("WAV", "PCM_16", seconds=1.0))
    (d / "long.wav").write_bytes(audio_bytes("WAV", "PCM_16", seconds=3.0))
    out = cli("ingest", str(d), "--dataset", "long")
    assert (out["records"], out["quarantined_by_reason"]) == (1, {"media.absurd_duration": 1})
    (item,) = quarantine("long")
    assert Path(item["source"]).name == "long.wav" and "media_max_duration_s" in item["reason"]


def test_a_large_member_is_probed_and_stored_not_loaded(home: Path, tmp_path: Path) -> None:
    """A 20 MB WAV inside a tar: read from its offset in 64 Ki-frame blocks and streamed into a blob in
    1 MiB steps; Python's traced memory never holds it (the peak stays a fraction of its size)."""
    import tracemalloc

    from ciyuan.ingest.run import ingest
    from ciyuan.store import resolve

    wav = audio_bytes("WAV", "PCM_16", seconds=110.0, rate=48000, channels=2)
    assert len(wav) > 20 << 20
    src = tmp_path / "w.wav"
    src.write_bytes(wav)
    shard = tmp_path / "long.tar"
    with tarfile.open(shard, "w") as tf:
        tf.add(src, arcname="talk.wav")
    del wav
    warm = tmp_path / "warm.tar"  # a first ingest loads modules and the database: not what is measured
    _tar(warm, [("w.wav", audio_bytes("WAV", "PCM_16", seconds=0.5))])
    ingest([str(warm)], "warm")
    tracemalloc.start()
    try:
        out = ingest([str(shard)], "talks")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (out["records"], out["blobs"], out["modality"]) == (1, 1, "audio")
    assert peak < 8 << 20, f"traced peak {peak:,} bytes for a {src.stat().st_size:,}-byte member"
    (rec,) = resolve("talks").iter_records()
    assert rec["media"] is None and rec["meta"]["sha256"] == sha(src.read_bytes())
    assert rec["meta"]["audio"]["duration_s"] == 110.0


def test_counting_in_worker_processes_gives_the_same_counts(home: Path, tmp_path: Path) -> None:
    d = tmp_path / "many"
    d.mkdir()
    for i in range(12):
        (d / f"p{i:02d}.png").write_bytes(image_bytes("PNG", (28 * (i + 1), 56)))
    one = cli("ingest", str(d), "--dataset", "w1")
    two = cli("ingest", str(d), "--dataset", "w2", "--workers", "2")
    assert one["tokens"] == two["tokens"] and one["records"] == two["records"] == 12
    by_path = [{r["meta"]["path"]: r["tokens"] for r in records(name)} for name in ("w1", "w2")]
    assert by_path[0] == by_path[1]
