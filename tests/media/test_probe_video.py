"""Video probe: facts from the streamed container, refusals for audio-only, truncated, absurd and
non-video files, and memory that does not grow with the file. Every clip is written here by PyAV."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from media_gen import audio_bytes, repeat_video, video_bytes

from ciyuan.ingest.probe import Limits, MediaError, compare_declared, probe, probe_video

LIMITS = Limits()
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("fmt", "codec", "name", "probed_codec"), [
    ("mp4", "libx264", "mp4", "h264"), ("mp4", "libsvtav1", "mp4", "libdav1d"), ("webm", "libvpx-vp9", "webm", "vp9"),
    ("matroska", "libx264", "mkv", "h264"), ("mov", "libx264", "mov", "h264"), ("mp4", "hevc", "mp4", "hevc"),
])
def test_facts(fmt, codec, name, probed_codec):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"{codec} not in this PyAV build")
    data = video_bytes(fmt, codec, frames=20, size=(64, 48), fps=10)
    modality, facts = probe(data, name=f"clip.{name}", limits=LIMITS)
    assert modality == "video" and facts["format"] == name and facts["codec"] == probed_codec
    assert (facts["width"], facts["height"]) == (64, 48)
    assert facts["frames"] == 20 and facts["fps"] == pytest.approx(10)
    assert facts["duration_s"] == pytest.approx(2.0) and facts["audio_codec"] is None


def test_audio_track_noted():
    facts = probe_video(video_bytes("mp4", "libx264", audio=True), name="talk.mp4", limits=LIMITS)
    assert facts["audio_codec"] == "aac" and facts["frames"] == 20


def test_audio_only_mp4_is_an_error():
    data = video_bytes("mp4", None, audio=True)  # an MP4 (ftyp isom) with only an AAC track
    with pytest.raises(MediaError) as err:
        probe(data, name="song.mp4", limits=LIMITS)
    assert err.value.reason == "no_video_stream" and "audio" in err.value.message and "song.mp4" in err.value.message


@pytest.mark.parametrize(("fmt", "name"), [("mp4", "mp4"), ("matroska", "mkv"), ("webm", "webm")])
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated(fmt, name, keep):
    data = video_bytes(fmt, "libvpx-vp9" if fmt == "webm" else "libx264", frames=40, size=(96, 64))
    with pytest.raises(MediaError) as err:
        probe_video(data[: int(len(data) * keep)], name=f"cut.{name}", limits=LIMITS)
    assert err.value.reason == "truncated", err.value.message
    assert "cut." in err.value.message


def test_absurd_duration_and_dimension_and_rate():
    data = video_bytes("mp4", "libx264", frames=30, fps=10)  # 3 s
    with pytest.raises(MediaError) as err:
        probe_video(data, name="long.mp4", limits=Limits(max_duration_s=2))
    assert err.value.reason == "absurd_duration" and "media_max_duration_s" in err.value.message
    with pytest.raises(MediaError) as err:
        probe_video(data, name="wide.mp4", limits=Limits(max_video_side=32))
    assert err.value.reason == "absurd_dimension" and "64x48" in err.value.message
    with pytest.raises(MediaError) as err:
        probe_video(data, name="fast.mp4", limits=Limits(max_fps=5))
    assert err.value.reason == "absurd_duration" and "media_max_fps" in err.value.message


def test_not_video():
    with pytest.raises(MediaError) as err:
        probe_video(audio_bytes("WAV", "PCM_16"), name="film.mp4", limits=LIMITS)
    assert err.value.reason == "wrong_modality"
    with pytest.raises(MediaError) as err:
        probe_video(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 200, name="fake.mp4", limits=LIMITS)
    assert err.value.reason in ("corrupt", "truncated", "no_video_stream", "empty_video")


def test_mkv_named_mp4_read_as_mkv_with_mismatch():
    data = video_bytes("matroska", "libx264")
    modality, facts = probe(data, name="clip.mp4", limits=LIMITS)
    assert facts["format"] == "mkv"
    assert compare_declared({"fps": 10, "width": 64, "height": 48}, facts, name="clip.mp4") == [
        {"field": "extension", "declared": "mp4", "probed": "mkv"}]


def test_large_video_is_streamed_not_loaded(tmp_path):
    """A 100+ MB Matroska file probed in a child: its peak RSS grows by far less than the file."""
    big = tmp_path / "big.mkv"
    clip = video_bytes("mp4", "libx264", frames=50, size=(320, 240), options={"crf": "0"})  # ~6 MB of noise
    repeat_video(clip, str(big), 20)
    size = big.stat().st_size
    assert size > 100 << 20
    child = textwrap.dedent(f"""
        import json, resource, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from media_gen import video_bytes
        from ciyuan.ingest.probe import Limits, probe_video
        small = video_bytes("matroska", "libx264", frames=5)
        probe_video(small, name="warm.mkv", limits=Limits())   # imports and codec set-up counted before
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        facts = probe_video({str(big)!r}, limits=Limits())
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({{"facts": facts, "growth_kb": after - before}}))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["facts"]["frames"] == 1000 and result["facts"]["bytes"] == size
    assert result["growth_kb"] * 1024 < size / 10, result  # a 116 MB file, a few MB of growth
