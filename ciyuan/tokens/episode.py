"""Robot episode token schedules from the measured episode (``meta.episode``, written by the episode
readers from the frame table and the decoded cameras), never from a dataset's declared meta.

* ``episode-openvla``: OpenVLA's action tokenizer maps every action dimension of every step to one of
  256 bins, one token each: ``length x action_dim``; plus each camera's frames under the video
  schedule (``qwen2.5-vl-video``) at the camera's resolution, frame rate and frame count.
* ``episode-raw``: every state and action number of every frame is one token,
  ``length x (state_dim + action_dim)``, plus the same camera tokens.

The video schedule's name, version and parameters are part of each schedule's parameters, so a
change there is a new version here too. A camera shorter than the video schedule's temporal patch
(Qwen2.5-VL pairs frames) is counted as that many frames, as Qwen pads a still image.
"""

from __future__ import annotations

from ciyuan.errors import InvalidInput
from ciyuan.tokens.probed import ProbedSchedule, rid, whole
from ciyuan.tokens.schedule import register_schedule
from ciyuan.tokens.vision import QWEN_VIDEO, SCHEDULES

VIDEO = next(s for s in SCHEDULES if s.name == "qwen2.5-vl-video")


def camera_tokens(s: ProbedSchedule, record: dict, facts: dict) -> int:
    """Tokens of every camera of the episode under the video schedule named in ``s.params``."""
    cams = facts.get("cameras") or {}
    if not isinstance(cams, dict):
        raise InvalidInput(f"record {rid(record)}: meta.episode.cameras must be an object",
                           hint="re-ingest the episode so the reader measures its cameras")
    total = 0
    tf = VIDEO.params["temporal_patch_size"]
    for key, cam in sorted(cams.items()):
        if not isinstance(cam, dict):
            raise InvalidInput(f"record {rid(record)}: meta.episode.cameras[{key!r}] must be an object")
        frames = max(whole(record, "episode", cam, "frames"), tf)
        total += VIDEO.per_item(VIDEO, record, {"width": cam.get("width"), "height": cam.get("height"),
                                                "fps": cam.get("fps"), "frames": frames})
    return total


def _openvla(s: ProbedSchedule, record: dict, facts: dict) -> int:
    n = whole(record, "episode", facts, "length")
    act = whole(record, "episode", facts, "action_dim", minimum=0)
    return n * act * s.params["tokens_per_action_dim"] + camera_tokens(s, record, facts)


def _raw(s: ProbedSchedule, record: dict, facts: dict) -> int:
    n = whole(record, "episode", facts, "length")
    act = whole(record, "episode", facts, "action_dim", minimum=0)
    state = whole(record, "episode", facts, "state_dim", minimum=0)
    return n * (act + state) * s.params["tokens_per_number"] + camera_tokens(s, record, facts)


CAMERAS = {"camera_schedule": VIDEO.name, "camera_schedule_version": VIDEO.version, "camera_params": QWEN_VIDEO}
EPISODE_SCHEDULES = [
    ProbedSchedule("episode-openvla", "episode", 1, {"action_bins": 256, "tokens_per_action_dim": 1, **CAMERAS},
                   _openvla, "robot episode: one token per action dimension per step (OpenVLA, 256 bins) + "
                   "each camera under qwen2.5-vl-video at its resolution and frame rate"),
    ProbedSchedule("episode-raw", "episode", 1, {"tokens_per_number": 1, **CAMERAS}, _raw,
                   "robot episode: one token per state and action number per frame + each camera under "
                   "qwen2.5-vl-video"),
]

for _s in EPISODE_SCHEDULES:
    register_schedule(_s.name, lambda s=_s: s, _s.description)
