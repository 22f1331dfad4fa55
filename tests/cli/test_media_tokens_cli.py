"""`ciyuan schedules`, `ciyuan tokens NAME --schedule S` and `ciyuan export` on media records.

The dataset is made with the store's real builder: PNG images and WAV recordings written by Pillow
and soundfile, each record carrying the bytes and the facts read back from them under
``meta.image`` / ``meta.audio`` (what the ingest probe writes), a video record with probed facts,
and a text record. Expected counts are worked out by hand in the comments.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from PIL import Image
from typer.testing import CliRunner

from ciyuan.cli.main import app

runner = CliRunner()


def _cli(*args: str) -> tuple[int, dict]:
    r = runner.invoke(app, [*args, "--json"])
    return r.exit_code, json.loads(r.stdout)


def _png(w: int, h: int) -> tuple[bytes, dict]:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (10, 120, 200)).save(buf, format="PNG")
    data = buf.getvalue()
    with Image.open(io.BytesIO(data)) as im:  # read back from the bytes, as the probe does
        return data, {"width": im.width, "height": im.height, "mode": im.mode, "format": "PNG"}


def _wav(seconds: float, rate: int) -> tuple[bytes, dict]:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(int(seconds * rate), dtype=np.int16), rate, format="WAV", subtype="PCM_16")
    data = buf.getvalue()
    info = sf.info(io.BytesIO(data))
    return data, {"duration_s": info.duration, "sample_rate": info.samplerate, "channels": info.channels,
                  "samples": info.frames, "codec": "pcm_s16le"}  # fmt: skip


@pytest.fixture
def media_dataset(home: Path) -> str:
    from ciyuan.store import VersionBuilder

    b = VersionBuilder("media-mix", made_by={"tool": "tests"}, rows_per_shard=2, batch_rows=2)
    for rid, (w, h) in {"img-640x480": (640, 480), "img-100x50": (100, 50)}.items():
        data, facts = _png(w, h)
        b.add({"id": rid, "modality": "image", "text": None, "media": data,
               "meta": {"image": facts, "source": f"{rid}.png"}})  # fmt: skip
    for rid, (sec, rate) in {"wav-31s": (31, 16000), "wav-2.5s": (2.5, 8000)}.items():
        data, facts = _wav(sec, rate)
        b.add({"id": rid, "modality": "audio", "text": None, "media": data,
               "meta": {"audio": facts, "source": f"{rid}.wav"}})  # fmt: skip
    b.add({"id": "clip", "modality": "video", "text": None,
           "meta": {"video": {"duration_s": 10.0, "frames": 250, "fps": 25, "width": 640, "height": 360,
                              "codec": "h264"}, "source": "clip.mp4"}})  # fmt: skip
    b.add({"id": "note", "modality": "text", "text": "a caption", "meta": {"source": "notes.txt"}})
    b.commit()
    return "media-mix"


def test_schedules_lists_name_version_modality_description(home: Path) -> None:
    from ciyuan.tokens import get_schedule

    code, out = _cli("schedules")
    assert code == 0
    rows = {r["name"]: r for r in out["schedules"]}
    for name, modality in [("qwen2-vl-image", "image"), ("gpt-4o-image", "image"), ("claude-image", "image"),
                           ("whisper-audio", "audio"), ("qwen2-audio", "audio"), ("qwen2.5-vl-video", "video"),
                           ("image-patch28-declared", "image"), ("cl100k_base", "text")]:  # fmt: skip
        assert rows[name]["modality"] == modality
        assert rows[name]["version"] == get_schedule(name).version
        assert rows[name]["description"]
    assert rows["qwen2-vl-image"]["params"]["max_pixels"] == 16384 * 28 * 28
    assert rows["image-patch28"]["alias_of"] == "image-patch28-declared"
    assert rows["image-patch28"]["version"] == rows["image-patch28-declared"]["version"] == "402ff4635f451c39"
    table = runner.invoke(app, ["schedules"])
    assert table.exit_code == 0 and "qwen2.5-vl-video" in table.stdout


def test_tokens_with_a_schedule_counts_stores_and_export_shows_it(media_dataset: str, tmp_path: Path) -> None:
    code, out = _cli("tokens", media_dataset, "--schedule", "qwen2-vl-image")
    assert code == 0, out
    # 640x480 -> 644x476 = 23*17 = 391 (+2); 100x50 -> 112x56 = 4*2 = 8 (+2); audio, video, text: 0
    assert (out["tokens"], out["records"], out["computed"], out["modality"]) == (393 + 10, 6, True, "image")
    code, again = _cli("tokens", media_dataset, "--schedule", "qwen2-vl-image")
    assert (code, again["tokens"], again["computed"]) == (0, 403, False)  # stored: not counted twice
    shown = runner.invoke(app, ["tokens", media_dataset, "--schedule", "qwen2-vl-image"])
    assert shown.exit_code == 0 and "qwen2-vl-image" in shown.stdout and "403" in shown.stdout

    code, out = _cli("tokens", media_dataset, "--schedule", "whisper-audio")
    assert (code, out["tokens"]) == (0, 3000 + 1500)  # 31 s: two padded windows; 2.5 s at 8 kHz: one
    code, out = _cli("tokens", media_dataset, "--schedule", "qwen2.5-vl-video")
    # 250 frames at 25 fps -> 20 sampled; 640x360 -> 644x364 (within 768*28*28): 10 * 23 * 13 + 2
    assert (code, out["tokens"]) == (0, 10 * 23 * 13 + 2)

    code, out = _cli("export", media_dataset, "--format", "jsonl", "--out", str(tmp_path / "out.jsonl"))
    assert code == 0, out
    assert "tokens__qwen2_vl_image" in out["columns"] and out["tokens"]["whisper-audio"] == 4500
    recs = {r["id"]: r for r in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines())}
    assert recs["img-640x480"]["tokens"]["qwen2-vl-image"] == 393
    assert recs["img-100x50"]["tokens"]["qwen2-vl-image"] == 10
    assert recs["wav-31s"]["tokens"]["whisper-audio"] == 3000 and recs["wav-31s"]["tokens"]["qwen2-vl-image"] == 0
    assert recs["clip"]["tokens"]["qwen2.5-vl-video"] == 2992
    assert recs["note"]["tokens"]["cl100k_base"] == 2

    code, out = _cli("export", media_dataset, "--format", "parquet", "--out", str(tmp_path / "out.parquet"))
    assert code == 0, out
    t = pq.read_table(tmp_path / "out.parquet")
    by_id = dict(zip(t["id"].to_pylist(), t["tokens__qwen2_vl_image"].to_pylist(), strict=True))
    assert by_id["img-640x480"] == 393 and sum(by_id.values()) == 403
    assert sum(t["tokens__whisper_audio"].to_pylist()) == 4500


def test_declared_only_records_need_the_declared_schedule(home: Path) -> None:
    from ciyuan.store import VersionBuilder

    b = VersionBuilder("declared-only", made_by={"tool": "tests"})
    b.add({"id": "d1", "modality": "image", "text": None, "meta": {"width": 640, "height": 480}})
    b.commit()
    code, out = _cli("tokens", "declared-only", "--schedule", "qwen2-vl-image")
    assert code == 2
    assert "record d1: meta.image is missing" in out["error"]["message"]
    assert "image-patch28-declared" in out["error"]["hint"]
    code, new = _cli("tokens", "declared-only", "--schedule", "image-patch28-declared")
    assert (code, new["tokens"]) == (0, 23 * 18)  # ceil(640/28) * ceil(480/28)
    code, old = _cli("tokens", "declared-only", "--schedule", "image-patch28")  # an old listing's name
    assert (code, old["tokens"], old["tokenizer_version"]) == (0, 23 * 18, new["tokenizer_version"])


def test_unknown_schedule_and_both_flags(media_dataset: str) -> None:
    code, out = _cli("tokens", media_dataset, "--schedule", "no-such")
    assert code == 2 and "unknown token schedule" in out["error"]["message"]
    code, out = _cli("tokens", media_dataset, "--schedule", "qwen2-vl-image", "--tokenizer", "qwen")
    assert code == 2 and "not both" in out["error"]["message"]


def test_a_listing_is_priced_under_a_media_schedule(media_dataset: str) -> None:
    code, out = _cli("account", "create", "studio", "--role", "provider")
    assert code == 0, out
    code, out = _cli("publish", media_dataset, "--price", "10", "--schedule", "claude-image", "--provider", "studio")
    assert code == 2 and "--schedule claude-image" in out["error"]["hint"]  # count it first
    code, out = _cli("tokens", media_dataset, "--schedule", "claude-image")
    # 640x480: ceil(307200/750) = 410; 100x50: ceil(5000/750) = 7
    assert (code, out["tokens"]) == (0, 417)
    code, out = _cli("publish", media_dataset, "--price", "10", "--schedule", "claude-image", "--provider", "studio")
    assert code == 0, out
    assert (out["schedule"], out["tokens"], out["records"]) == ("claude-image", 417, 6)
