"""Video facts from the container, streamed: packets are counted, never held, so memory stays flat.

PyAV (FFmpeg) opens the container (from its path when there is one: FFmpeg reads it in its own
32 KiB buffers), takes the first video stream and demuxes its packets one at a time: the frame
count is the number of packets, the duration runs from the first packet's timestamp to the end of
the last one. Only the first frames are decoded, to prove the codec reads the data. A 2 GB file is
read through once and never held (``bench/bench_media.py --video-mb 2048`` measures the peak).

Refused: no video stream (an audio-only MP4), no frames, a width or height of 0 or above
``media_max_video_side``, a duration above ``media_max_duration_s`` (the header's claim is checked
before reading on, the packets' as they come), a frame rate above ``media_max_fps``, fewer packets
than the container's index lists (truncated), data the decoder rejects (corrupt).
"""

from __future__ import annotations

import contextlib
from fractions import Fraction

from ciyuan.ingest.probe.base import Limits, MediaError, Source, display_name, no_signature, open_source
from ciyuan.ingest.probe.sniff import sniff

DECODE_PACKETS = 64  # packets fed to the decoder before it must have produced a frame


def probe_video(src: Source, *, name: str | None = None, member: str | None = None,
                limits: Limits | None = None) -> dict:
    """The probed facts of one video, for ``meta["video"]`` (keys in docs/ingest.md).

    Raises ``MediaError`` (``no_video_stream``, ``empty_video``, ``absurd_dimension``,
    ``absurd_duration``, ``truncated``, ``corrupt``, ``not_media``, ``wrong_modality``) naming the file.
    """
    import av

    name = display_name(src, name)
    limits = limits or Limits.from_settings()

    def fail(reason: str, detail: str) -> MediaError:
        return MediaError(reason, name, detail, member=member)

    with open_source(src, name, member) as op:
        found = sniff(op.head)
        if found is None:
            raise fail("not_media", no_signature(op.head))
        modality, fmt = found
        if modality != "video":
            raise fail("wrong_modality", f"the bytes are {modality} ({fmt}), not video")
        short = _container_short(op, fmt)
        if short:
            raise fail("truncated", short)
        try:
            container = av.open(op.path or op.fh, mode="r")
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            reason = "truncated" if isinstance(exc, av.error.EOFError) else "corrupt"
            raise fail(reason, f"{fmt} container does not open: {exc}") from exc
        with contextlib.closing(container):
            facts = _streamed(container, fmt, limits, fail)
    facts["bytes"] = op.size
    return facts


def _container_short(op, fmt: str) -> str:
    """Why the container ends before its own sizes say ('' when they fit): the top-level boxes of
    MP4/MOV, the Segment of WebM/Matroska. A few header reads, whatever the file's size."""
    fh, size = op.fh, op.size
    try:
        if fmt in ("mp4", "mov"):
            pos = 0
            while pos + 8 <= size:
                fh.seek(pos)
                head = fh.read(16)
                n = int.from_bytes(head[:4], "big")
                if n == 1 and len(head) == 16:
                    n = int.from_bytes(head[8:16], "big")
                elif n == 0:  # the last box runs to the end of the file
                    return ""
                if n < 8:
                    return f"box {head[4:8]!r} at byte {pos:,} declares {n} bytes"
                if pos + n > size:
                    return f"box {head[4:8].decode('latin-1')!r} at byte {pos:,} declares {n:,} bytes, " \
                           f"the file ends {pos + n - size:,} bytes early"
                pos += n
        elif fmt in ("webm", "mkv"):
            from ciyuan.ingest.probe.sniff import ebml_vint

            h = op.head
            _, i = ebml_vint(h, 0, keep_marker=True)
            n, i = ebml_vint(h, i, keep_marker=False)
            i += n
            eid, j = ebml_vint(h, i, keep_marker=True)
            width = j
            n, j = ebml_vint(h, j, keep_marker=False)
            unknown = n == (1 << (7 * (j - width))) - 1  # all ones: a live stream of unknown length
            if eid == 0x18538067 and not unknown and j + n > size:
                return f"the Segment declares {j + n:,} bytes, the file has {size:,}"
        return ""
    except (IndexError, ValueError):
        return ""
    finally:
        fh.seek(0)


def _streamed(container, fmt: str, limits: Limits, fail) -> dict:
    import av

    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        raise fail("no_video_stream", f"{fmt} container holds {kinds}")
    vs = container.streams.video[0]
    cc = vs.codec_context
    w, h = cc.width or 0, cc.height or 0
    if not (1 <= w <= limits.max_video_side and 1 <= h <= limits.max_video_side):
        raise fail("absurd_dimension", f"video stream declares {w}x{h} (media_max_video_side "
                                       f"{limits.max_video_side:,})")
    tb = vs.time_base or Fraction(1, 1000)
    claimed = None
    if vs.duration:
        claimed = float(vs.duration * tb)
    elif container.duration:
        claimed = container.duration / 1_000_000
    if claimed and claimed > limits.max_duration_s:
        raise fail("absurd_duration", f"the header declares {claimed:,.1f} s, above media_max_duration_s "
                                      f"{limits.max_duration_s:,}")
    listed = vs.frames or 0
    count, first, end, decoded, fed = 0, None, None, False, 0
    cap = limits.max_duration_s / tb
    try:
        for packet in container.demux(vs):
            if packet.size == 0:
                continue  # the flush packet demux yields at the end
            count += 1
            ts = packet.pts if packet.pts is not None else packet.dts
            if ts is not None:
                first = ts if first is None else min(first, ts)
                stop = ts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
                if end - first > cap:
                    raise fail("absurd_duration", f"packets run past media_max_duration_s {limits.max_duration_s:,}")
            if not decoded and fed < DECODE_PACKETS:
                fed += 1
                decoded = bool(vs.codec_context.decode(packet))
    except av.error.FFmpegError as exc:
        raise fail("corrupt", f"{fmt} data does not demux or decode after {count:,} packets: {exc}") from exc
    if count == 0:
        raise fail("empty_video", f"{fmt} video stream has no packets")
    if not decoded:
        with contextlib.suppress(av.error.FFmpegError):
            decoded = bool(vs.codec_context.decode(None))  # drain: a short clip may sit in the decoder
        if not decoded:
            raise fail("corrupt", f"{fmt} {cc.name} decoder produced no frame from {fed} packets")
    if listed and count < listed:
        raise fail("truncated", f"the index lists {listed:,} frames, {count:,} are in the file")
    duration = float((end - first) * tb) if first is not None and end is not None else 0.0
    rate = vs.average_rate or vs.guessed_rate
    fps = float(rate) if rate else (count / duration if duration else 0.0)
    if claimed and duration < claimed * 0.99 - 0.05 - (1 / fps if fps else 0):
        raise fail("truncated", f"the header declares {claimed:,.3f} s, the packets run {duration:,.3f} s")
    if fps > limits.max_fps:
        raise fail("absurd_duration", f"{fps:,.1f} frames a second, above media_max_fps {limits.max_fps:,}")
    audio = container.streams.audio
    return {"format": fmt, "codec": cc.name, "width": w, "height": h, "fps": round(fps, 6), "frames": count,
            "duration_s": round(duration, 6), "header_duration_s": round(claimed, 6) if claimed else None,
            "audio_codec": audio[0].codec_context.name if audio else None}
