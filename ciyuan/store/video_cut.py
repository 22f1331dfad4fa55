"""An episode's frames out of a video file that holds more (a LeRobot v3.0 file of many episodes, or a
file whose idle stretches curation cut), re-encoding only when it cannot be helped.

The frames wanted are one or more time ranges of the file (``segments``, in file time). When each
range starts on a keyframe (and the stream has no B-frames reordering across a cut), the packets of the
ranges are copied into a new MP4 as they are, one range after the other, timestamps shifted so the
frames run on without a gap from 0: the compressed bytes of every frame are the original ones
(``remux``). Otherwise the frames of the ranges are decoded and encoded again with the same codec,
pixel format and size (``reencode``): the caller says so in the export's note, since those pixels are
no longer the provider's bytes.
"""

from __future__ import annotations

from fractions import Fraction
from typing import BinaryIO


def _in_range(t: float, start_s: float, end_s: float, half: float) -> bool:
    return start_s - half <= t < end_s - half


def _which(t: float, segments: list[tuple[float, float]], half: float) -> int | None:
    for k, (a, b) in enumerate(segments):
        if _in_range(t, a, b, half):
            return k
    return None


def cut(src: BinaryIO, start_s: float, end_s: float, out_path: str, fps: float) -> dict:
    """Write the frames of ``[start_s, end_s)`` of ``src`` to ``out_path`` (MP4); ``{"method", "frames"}``."""
    return cut_segments(src, [(start_s, end_s)], out_path, fps)


def cut_segments(src: BinaryIO, segments: list[tuple[float, float]], out_path: str, fps: float) -> dict:
    """Write the frames of every ``[a, b)`` of ``segments`` (file time, in order) of ``src`` to
    ``out_path`` (MP4) one after the other; ``{"method": "remux" | "reencode", "frames", ...}``."""
    import av

    segs = [(float(a), float(b)) for a, b in segments]
    half = 0.5 / fps
    with av.open(src, mode="r") as inp:
        stream = inp.streams.video[0]
        tb = stream.time_base
        parts: list[list] = [[] for _ in segs]
        for pkt in inp.demux(stream):
            if pkt.pts is None or pkt.size == 0:
                continue
            k = _which(float(pkt.pts * tb), segs, half)
            if k is not None:
                parts[k].append(pkt)
        parts = [p for p in parts if p]
        packets = [p for part in parts for p in part]
        remuxable = bool(parts) and all(part[0].is_keyframe for part in parts) and \
            all(p.dts is not None and p.dts <= p.pts for p in packets) and \
            all([p.pts for p in part] == sorted(p.pts for p in part) for part in parts)
        if remuxable:
            step = max(1, round(1 / (fps * tb)))  # one frame in the stream's time base
            with av.open(out_path, mode="w", format="mp4") as out:
                ost = out.add_stream_from_template(stream)
                ost.time_base = stream.time_base
                at = 0
                for part in parts:
                    shift = part[0].pts - at
                    for pkt in part:
                        pkt.pts -= shift
                        pkt.dts -= shift
                        pkt.stream = ost
                        out.mux(pkt)
                    at = part[-1].pts + step  # shifted already: the next range follows on
            return {"method": "remux", "frames": len(packets), "segments": len(parts)}
    return _reencode(src, segs, out_path, fps)


def _reencode(src: BinaryIO, segments: list[tuple[float, float]], out_path: str, fps: float) -> dict:
    import av

    src.seek(0)
    n = 0
    with av.open(src, mode="r") as inp, av.open(out_path, mode="w", format="mp4") as out:
        stream = inp.streams.video[0]
        name = stream.codec_context.name
        encoder = {"h264": "libx264", "av1": "libaom-av1" if "libaom-av1" in av.codecs_available else "libsvtav1",
                   "hevc": "libx265"}.get(name, name)
        rate = Fraction(fps).limit_denominator(1001)
        # no B-frames and the headers in-band: a cut file that tools join with remuxed ones (lerobot's
        # v2.1 -> v3.0 converter concatenates the packets) keeps dts monotonic and decodes
        opts = {"bf": "0", "x264-params": "repeat-headers=1"} if encoder == "libx264" else {}
        ost = out.add_stream(encoder, rate=rate, options=opts)
        ost.time_base = stream.time_base
        ost.width, ost.height = stream.codec_context.width, stream.codec_context.height
        ost.pix_fmt = stream.codec_context.pix_fmt or "yuv420p"
        for frame in inp.decode(stream):
            if frame.time is None or _which(float(frame.time), segments, 0.5 / fps) is None:
                continue
            frame.pts, frame.time_base = n, 1 / rate
            frame.pict_type = av.video.frame.PictureType.NONE
            n += 1
            out.mux(ost.encode(frame))
        out.mux(ost.encode())
    return {"method": "reencode", "frames": n, "codec": encoder, "segments": len(segments)}
