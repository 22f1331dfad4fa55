"""Every frame of a video decoded, for the episode checks: how many frames, at which times, at what rate.

The media probe (``video.py``) counts packets and decodes only the first frames; an episode's
cameras must match the data table frame for frame, and "every video decodes" means every frame, so
this decodes the whole stream once (frames are dropped as they come: memory stays flat). A LeRobot
v3.0 file holds many episodes; the caller decodes it once and cuts the frame times by episode.
"""

from __future__ import annotations

import bisect
import contextlib
from dataclasses import dataclass, field


@dataclass
class DecodedVideo:
    """What decoding a whole video found; ``error`` (and ``error_at_s``, the last good frame's time)
    when a frame would not decode, the frames before it still listed."""

    width: int = 0
    height: int = 0
    fps: float = 0.0
    codec: str = ""
    format: str = ""
    times: list[float] = field(default_factory=list)
    error: str | None = None
    error_at_s: float | None = None

    def facts(self) -> dict:
        return {"width": self.width, "height": self.height, "fps": round(self.fps, 6), "codec": self.codec,
                "format": self.format}

    def frames_between(self, start_s: float, end_s: float | None) -> int:
        """Frames whose time falls in [start_s, end_s) with half a frame of slack at both ends."""
        half = 0.5 / self.fps if self.fps else 0.0
        lo = start_s - half
        hi = float("inf") if end_s is None else end_s - half
        return bisect.bisect_left(self.times, hi) - bisect.bisect_left(self.times, lo)  # times are sorted


def decode_all(path: str) -> DecodedVideo:
    """Decode every frame of the first video stream of ``path`` (a file on disk)."""
    import av

    out = DecodedVideo()
    try:
        container = av.open(path, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        out.error = f"does not open: {exc}"
        return out
    with contextlib.closing(container):
        if not container.streams.video:
            out.error = "holds no video stream"
            return out
        vs = container.streams.video[0]
        vs.thread_type = "AUTO"
        cc = vs.codec_context
        out.width, out.height, out.codec = cc.width or 0, cc.height or 0, cc.name
        names = container.format.name.split(",") if container.format else []
        out.format = "mp4" if "mp4" in names else (names[0] if names else "")
        rate = vs.average_rate or vs.guessed_rate
        out.fps = float(rate) if rate else 0.0
        try:
            for frame in container.decode(vs):
                t = frame.time
                out.times.append(float(t) if t is not None else len(out.times) / (out.fps or 1.0))
        except (av.error.FFmpegError, ValueError) as exc:
            out.error = f"frame {len(out.times)} does not decode: {exc}"
            out.error_at_s = out.times[-1] if out.times else 0.0
        listed = vs.frames or 0
        if out.error is None and listed and len(out.times) < listed:  # FFmpeg stops quietly at a cut
            out.error = f"is cut short: its index lists {listed} frames, {len(out.times)} decode"
            out.error_at_s = max(out.times) if out.times else 0.0
    out.times.sort()  # presentation order (a decoder may hand frames out of it around B-frames)
    if not out.times and out.error is None:
        out.error = "has no frames"
    return out
