"""One episode's frames out of a video file that holds many (LeRobot v3.0 -> v2.1), re-encoding only
when it cannot be helped.

v2.1 wants one file per episode and camera; a v3.0 file holds many episodes one after the other. When
the episode's first frame is a keyframe (and the stream has no B-frames reordering across the cut), its
packets are copied into a new MP4 as they are, timestamps shifted to start at 0: the compressed bytes
of every frame are the original ones (``remux``). Otherwise the frames of the range are decoded and
encoded again with the same codec, pixel format and size (``reencode``): the caller says so in the
export's note, since those pixels are no longer the provider's bytes.
"""

from __future__ import annotations

from fractions import Fraction
from typing import BinaryIO


def _in_range(t: float, start_s: float, end_s: float, half: float) -> bool:
    return start_s - half <= t < end_s - half


def cut(src: BinaryIO, start_s: float, end_s: float, out_path: str, fps: float) -> dict:
    """Write the frames of ``[start_s, end_s)`` of ``src`` to ``out_path`` (MP4); ``{"method", "frames"}``."""
    import av

    half = 0.5 / fps
    with av.open(src, mode="r") as inp:
        stream = inp.streams.video[0]
        tb = stream.time_base
        packets = []
        for pkt in inp.demux(stream):
            if pkt.pts is None or pkt.size == 0:
                continue
            t = float(pkt.pts * tb)
            if _in_range(t, start_s, end_s, half):
                packets.append(pkt)
        if packets and packets[0].is_keyframe and all(p.dts is not None and p.dts <= p.pts for p in packets) \
                and [p.pts for p in packets] == sorted(p.pts for p in packets):
            shift = packets[0].pts
            with av.open(out_path, mode="w", format="mp4") as out:
                ost = out.add_stream_from_template(stream)
                ost.time_base = stream.time_base
                for pkt in packets:
                    pkt.pts -= shift
                    pkt.dts -= shift
                    pkt.stream = ost
                    out.mux(pkt)
            return {"method": "remux", "frames": len(packets)}
    return _reencode(src, start_s, end_s, out_path, fps)


def _reencode(src: BinaryIO, start_s: float, end_s: float, out_path: str, fps: float) -> dict:
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
            if frame.time is None or not _in_range(float(frame.time), start_s, end_s, 0.5 / fps):
                continue
            frame.pts, frame.time_base = n, 1 / rate
            frame.pict_type = av.video.frame.PictureType.NONE
            n += 1
            out.mux(ost.encode(frame))
        out.mux(ost.encode())
    return {"method": "reencode", "frames": n, "codec": encoder}
