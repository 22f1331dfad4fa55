"""The robot episode schedules count what the episode readers measured (``meta.episode``), never what
a dataset declares: one token per action dimension per step (OpenVLA) or per state and action number
(raw), plus each camera under the video schedule."""

from __future__ import annotations

import pytest

from ciyuan.errors import InvalidInput
from ciyuan.tokens import default_schedule, get_schedule


def episode(length: int = 40, action_dim: int = 7, state_dim: int = 8, cameras: dict | None = None, **meta) -> dict:
    cams = {"top": {"width": 640, "height": 480, "fps": 30.0, "frames": length}} if cameras is None else cameras
    return {"id": "e", "modality": "episode", "meta": {**meta, "episode": {
        "length": length, "action_dim": action_dim, "state_dim": state_dim, "cameras": cams}}}


def video_tokens(w: int, h: int, fps: float, frames: int) -> int:
    video = get_schedule("qwen2.5-vl-video")
    return video.count_records([{"id": "v", "modality": "video",
                                 "meta": {"video": {"width": w, "height": h, "fps": fps, "frames": frames}}}])[0]


def test_openvla_is_one_token_per_action_dimension_per_step_plus_cameras() -> None:
    s = get_schedule("episode-openvla")
    assert s.modality == "episode" and s.params["action_bins"] == 256
    assert s.count_records([episode(cameras={})]) == [40 * 7]
    cam = video_tokens(640, 480, 30.0, 40)
    assert cam > 0
    assert s.count_records([episode()]) == [40 * 7 + cam]
    two = {"top": {"width": 640, "height": 480, "fps": 30.0, "frames": 40},
           "wrist": {"width": 320, "height": 240, "fps": 30.0, "frames": 40}}
    assert s.count_records([episode(cameras=two)]) == [40 * 7 + cam + video_tokens(320, 240, 30.0, 40)]


def test_raw_counts_state_and_action_numbers() -> None:
    s = get_schedule("episode-raw")
    assert s.count_records([episode(cameras={})]) == [40 * (7 + 8)]
    assert s.count_records([episode()]) == [40 * 15 + video_tokens(640, 480, 30.0, 40)]


def test_declared_numbers_do_not_count() -> None:
    s = get_schedule("episode-openvla")
    a = s.count_records([episode(cameras={})])
    b = s.count_records([episode(cameras={}, steps=10_000, action_tokens=99, total_frames=9)])  # declared: ignored
    assert a == b
    with pytest.raises(InvalidInput, match="meta.episode"):
        s.count_records([{"id": "x", "modality": "episode", "meta": {"steps": 10}}])


def test_a_one_frame_camera_counts_as_the_temporal_patch() -> None:
    s = get_schedule("episode-openvla")
    one = s.count_records([episode(length=1, cameras={"c": {"width": 448, "height": 448, "fps": 10, "frames": 1}})])
    assert one == [7 + video_tokens(448, 448, 10, 2)]


def test_versions_and_defaults() -> None:
    a, b = get_schedule("episode-openvla"), get_schedule("episode-raw")
    assert a.version != b.version and len(a.version) == 16
    assert a.params["camera_schedule"] == "qwen2.5-vl-video"
    assert a.params["camera_schedule_version"] == get_schedule("qwen2.5-vl-video").version
    assert default_schedule("episode").name == "episode-openvla"
    assert default_schedule("episode", with_bytes=False).name == "episode-steps"  # records without data


def test_other_modalities_count_zero() -> None:
    assert get_schedule("episode-raw").count_records([{"id": "t", "modality": "text", "text": "hi"}]) == [0]
