"""Image and video token schedules from probed pixels: what Qwen2-VL, GPT-4o and Claude count.

Each one reproduces the resize the model's own pipeline applies before patching, because a model
is billed (and trained) on the resized image, not the file: Qwen's ``smart_resize`` snaps both
sides to multiples of 28 inside a pixel budget; GPT-4o fits the image in 2048 px, shrinks its short
side to 768 px and counts 512 px tiles; Claude shrinks to a 1568 px long edge and about 1,600
tokens, then counts ``w*h/750``. Sources, rounding choices and the reference ports that the tests
compare against are in docs/tokens.md; the code here is ours, written from those descriptions.
"""

from __future__ import annotations

import math

from ciyuan.errors import InvalidInput
from ciyuan.tokens.probed import ProbedSchedule, ceil_div, exact, rid, whole
from ciyuan.tokens.schedule import register_schedule

# ----------------------------------------------------------------------------- Qwen2-VL / Qwen2.5-VL


def _snap_nearest(x: int, f: int) -> int:
    """x to the nearest multiple of f, a tie to the even multiple (Python's round), at least f."""
    q, r = divmod(x, f)
    if 2 * r > f or (2 * r == f and q % 2 == 1):
        q += 1
    return max(f, q * f)


def qwen_fit(h: int, w: int, *, factor: int, min_pixels: float, max_pixels: float) -> tuple[int, int]:
    """Qwen's resized (h, w): sides multiples of ``factor``, area inside [min_pixels, max_pixels].

    Outside the budget the scale is the float square root Qwen computes, so a boundary case rounds
    the way the model's preprocessor rounds it (compared size by size in tests/tokens).
    """
    hh, ww = _snap_nearest(h, factor), _snap_nearest(w, factor)
    area = hh * ww
    if area > max_pixels:
        shrink = math.sqrt(h * w / max_pixels)
        hh = max(factor, math.floor(h / shrink / factor) * factor)
        return hh, max(factor, math.floor(w / shrink / factor) * factor)
    if area < min_pixels:
        grow = math.sqrt(min_pixels / (h * w))
        return math.ceil(h * grow / factor) * factor, math.ceil(w * grow / factor) * factor
    return hh, ww


def _check_ratio(s: ProbedSchedule, record: dict, w: int, h: int) -> None:
    if max(w, h) > s.params["max_ratio"] * min(w, h):
        raise InvalidInput(
            f"record {rid(record)}: {s.modality} is {w}x{h} px, an aspect ratio over {s.params['max_ratio']}, "
            f"which {s.name} refuses (Qwen's smart_resize raises on it)",
            hint="crop or pad the media, or curate such records out with the aspect-ratio filter",
        )


def _qwen_image(s: ProbedSchedule, record: dict, facts: dict) -> int:
    p = s.params
    w, h = whole(record, "image", facts, "width"), whole(record, "image", facts, "height")
    _check_ratio(s, record, w, h)
    f = p["patch_size"] * p["merge_size"]
    hh, ww = qwen_fit(h, w, factor=f, min_pixels=p["min_pixels"], max_pixels=p["max_pixels"])
    return (hh // f) * (ww // f) + p["vision_tokens"]


# ----------------------------------------------------------------------------- GPT-4o tiles


def _gpt4o_image(s: ProbedSchedule, record: dict, facts: dict) -> int:
    p = s.params
    w, h = whole(record, "image", facts, "width"), whole(record, "image", facts, "height")
    if p["detail"] == "low":
        return p["base_tokens"]
    # Both resizes multiply every side by one factor c = num/den; kept exact as two integers.
    num, den = (p["fit_px"], max(w, h)) if max(w, h) > p["fit_px"] else (1, 1)  # fit in fit_px x fit_px
    if min(w, h) * num > p["short_side_px"] * den:  # short side down to short_side_px, never up
        num, den = p["short_side_px"], min(w, h)  # c * (768 / (min * c)) = 768 / min
    tile = p["tile_px"] * den
    return p["base_tokens"] + p["tile_tokens"] * ceil_div(w * num, tile) * ceil_div(h * num, tile)


# ----------------------------------------------------------------------------- Claude


def claude_fit(w: int, h: int, *, long_edge: int, max_pixels: int) -> tuple[int, int]:
    """Claude's (w, h) after its downscale: long edge <= long_edge and w*h <= max_pixels, aspect kept.

    One scale for both sides, the smaller of the two limits; each side is floored so both limits
    hold, and never below 1 px. Exact integers: floor(w*sqrt(P/(w*h))) is isqrt(P*w // h).
    """
    if max(w, h) <= long_edge and w * h <= max_pixels:
        return w, h
    longest = max(w, h)

    def side(a: int, b: int) -> int:  # a is this side, b the other
        return max(1, min(a, a * long_edge // longest, math.isqrt(max_pixels * a // b)))

    return side(w, h), side(h, w)


def _claude_image(s: ProbedSchedule, record: dict, facts: dict) -> int:
    p = s.params
    w, h = whole(record, "image", facts, "width"), whole(record, "image", facts, "height")
    ww, hh = claude_fit(w, h, long_edge=p["long_edge_px"], max_pixels=p["max_tokens"] * p["pixels_per_token"])
    return ceil_div(ww * hh, p["pixels_per_token"])


# ----------------------------------------------------------------------------- Qwen2.5-VL video


def qwen_video_frames(total: int, video_fps: float, *, fps: float, factor: int, min_frames: int,
                      max_frames: int) -> int:  # fmt: skip
    """How many frames Qwen2.5-VL samples: ``fps`` a second, clamped, floored to ``factor``.

    0 when the clip has fewer than ``factor`` frames (Qwen refuses those; the caller says so).
    """
    lo = ceil_div(min_frames, factor) * factor
    hi = (min(max_frames, total) // factor) * factor
    want = total / video_fps * fps
    n = min(max(want, lo), hi, total)
    return math.floor(n / factor) * factor


def _qwen_video(s: ProbedSchedule, record: dict, facts: dict) -> int:
    p = s.params
    w, h = whole(record, "video", facts, "width"), whole(record, "video", facts, "height")
    _check_ratio(s, record, w, h)
    rate = exact(record, "video", facts, "fps")
    if rate is None:
        raise InvalidInput(f"record {rid(record)}: meta.video.fps is missing",
                           hint="re-ingest the video so the probe fills it")  # fmt: skip
    total = facts.get("frames")
    if total in (None, 0):  # some containers do not say; fall back on the probed duration
        dur = exact(record, "video", facts, "duration_s", positive=False)
        if dur is None:
            raise InvalidInput(f"record {rid(record)}: meta.video.frames and duration_s are both missing",
                               hint="re-ingest the video so the probe fills them")  # fmt: skip
        total = round(dur * rate)
    else:
        total = whole(record, "video", facts, "frames")
    tf = p["temporal_patch_size"]
    n = qwen_video_frames(total, float(rate), fps=p["fps"], factor=tf, min_frames=p["min_frames"],
                          max_frames=p["max_frames"])  # fmt: skip
    if n < tf:
        raise InvalidInput(
            f"record {rid(record)}: the video has {total} frame(s); {s.name} needs at least {tf}",
            hint="curate out clips this short (the duration filter), or count them as images",
        )
    f = p["patch_size"] * p["merge_size"]
    cap = max(min(p["max_pixels"], p["total_pixels"] / n * tf), int(p["min_pixels"] * 1.05))
    hh, ww = qwen_fit(h, w, factor=f, min_pixels=p["min_pixels"], max_pixels=cap)
    return (n // tf) * (hh // f) * (ww // f) + p["vision_tokens"]


# ----------------------------------------------------------------------------- registration

QWEN_IMAGE = {"patch_size": 14, "merge_size": 2, "min_pixels": 4 * 28 * 28, "max_pixels": 16384 * 28 * 28,
              "max_ratio": 200, "vision_tokens": 2}  # fmt: skip
GPT4O = {"base_tokens": 85, "tile_tokens": 170, "tile_px": 512, "fit_px": 2048, "short_side_px": 768}
CLAUDE = {"long_edge_px": 1568, "max_tokens": 1600, "pixels_per_token": 750}
QWEN_VIDEO = {"patch_size": 14, "merge_size": 2, "temporal_patch_size": 2, "fps": 2.0, "min_frames": 4,
              "max_frames": 768, "min_pixels": 128 * 28 * 28, "max_pixels": 768 * 28 * 28,
              "total_pixels": int(128000 * 28 * 28 * 0.9), "max_ratio": 200, "vision_tokens": 2}  # fmt: skip

SCHEDULES = [
    ProbedSchedule("qwen2-vl-image", "image", 1, QWEN_IMAGE, _qwen_image,
                   "Qwen2-VL/Qwen2.5-VL: smart_resize to multiples of 28 within 3,136..12,845,056 px, "
                   "(h/28)*(w/28) tokens + 2 vision start/end; aspect ratio over 200 is an error"),
    ProbedSchedule("gpt-4o-image", "image", 1, {**GPT4O, "detail": "high"}, _gpt4o_image,
                   "GPT-4o detail=high: fit in 2048x2048, short side down to 768, 85 + 170 per 512-px tile"),
    ProbedSchedule("gpt-4o-image-low", "image", 1, {**GPT4O, "detail": "low"}, _gpt4o_image,
                   "GPT-4o detail=low: 85 tokens per image whatever its size"),
    ProbedSchedule("claude-image", "image", 1, CLAUDE, _claude_image,
                   "Claude: downscale to a 1568-px long edge and ~1,600 tokens keeping aspect, then ceil(w*h/750)"),
    ProbedSchedule("qwen2.5-vl-video", "video", 1, QWEN_VIDEO, _qwen_video,
                   "Qwen2.5-VL video: 2 fps, 4..768 frames in pairs, per-frame pixel cap shrinking with the "
                   "frame count, frames/2 * (h/28)*(w/28) + 2"),
]  # fmt: skip

for _s in SCHEDULES:
    register_schedule(_s.name, lambda s=_s: s, _s.description)
