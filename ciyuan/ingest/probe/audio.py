"""Audio facts from the decoded stream: every sample is decoded and counted, the header only compared.

WAV, FLAC and Ogg (Vorbis, Opus) are decoded with soundfile (libsndfile), MP3, AAC and M4A with
PyAV (FFmpeg); a file libsndfile cannot open goes to PyAV too. Decoding runs block by block (64 Ki
frames, int16), so memory is bounded by the block, not the file. The duration is the decoded
sample count over the sample rate. The header's own claim is kept as ``header_duration_s``; a file
that decodes to fewer samples than a WAV or FLAC header declares, or an Ogg stream whose last page
is not marked end-of-stream, or an MP3 whose Xing header (or a container whose index) declares more
than 1 % + 50 ms beyond what decodes, is truncated; a decoding error midway is ``corrupt``. A CBR MP3
without a Xing header has no claim but its size, so a cut one is read as the shorter file it is.
Audio that decodes to no samples is an error.
"""

from __future__ import annotations

import contextlib
from typing import BinaryIO

from ciyuan.ingest.probe.base import Limits, MediaError, Opened, Source, display_name, no_signature, open_source
from ciyuan.ingest.probe.sniff import sniff

BLOCK = 65536  # frames decoded at a time
MAX_RATE = 768_000  # Hz: the highest sample rate real recorders write
MAX_CHANNELS = 255
_SOUNDFILE = ("wav", "flac", "ogg")


def probe_audio(src: Source, *, name: str | None = None, member: str | None = None,
                limits: Limits | None = None) -> dict:
    """The probed facts of one audio file, for ``meta["audio"]`` (keys in docs/ingest.md).

    Raises ``MediaError`` (``empty_audio``, ``truncated``, ``corrupt``, ``absurd_duration``,
    ``absurd_dimension``, ``no_audio_stream``, ``not_media``, ``wrong_modality``) naming the file.
    """
    name = display_name(src, name)
    limits = limits or Limits.from_settings()
    with open_source(src, name, member) as op:
        found = sniff(op.head)
        if found is None:
            raise MediaError("not_media", name, no_signature(op.head),
                             member=member)
        modality, fmt = found
        if modality != "audio":
            raise MediaError("wrong_modality", name, f"the bytes are {modality} ({fmt}), not audio", member=member)
        facts = None
        if fmt in _SOUNDFILE:
            facts = _with_soundfile(op, fmt, name, member, limits)
        if facts is None:
            op.fh.seek(0)
            facts = _with_av(op, fmt, name, member, limits)
    facts["format"] = fmt
    facts["bytes"] = op.size
    return {k: facts[k] for k in ("format", "codec", "sample_rate", "channels", "frames", "duration_s",
                                  "header_duration_s", "bytes")}


def _check_shape(rate: int, channels: int, name: str, member: str | None) -> None:
    if not 1 <= rate <= MAX_RATE or not 1 <= channels <= MAX_CHANNELS:
        raise MediaError("absurd_dimension", name, f"header declares {rate} Hz, {channels} channel(s)",
                         member=member)


def _check_duration(seconds: float, limits: Limits, name: str, member: str | None, what: str) -> None:
    if seconds > limits.max_duration_s:
        raise MediaError("absurd_duration", name, f"{what} {seconds:,.1f} s, above media_max_duration_s "
                         f"{limits.max_duration_s:,}", member=member)


def _with_soundfile(op: Opened, fmt: str, name: str, member: str | None, limits: Limits) -> dict | None:
    """Decode with libsndfile; ``None`` when it cannot open the file (PyAV is tried next)."""
    import numpy as np
    import soundfile as sf

    try:
        f = sf.SoundFile(op.path or op.fh)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    with f:
        rate, channels = f.samplerate, f.channels
        _check_shape(rate, channels, name, member)
        claimed = f.frames if 0 < f.frames < 2**62 else 0  # libsndfile says "unknown" as a huge number
        declared = _wav_data_frames(op, f) if fmt == "wav" else claimed
        _check_duration((declared or claimed) / rate, limits, name, member, "the header declares")
        buf = np.empty((BLOCK, channels), dtype=np.int16)
        decoded = 0
        cap = limits.max_duration_s * rate
        try:
            while True:
                n = len(f.read(out=buf, dtype="int16"))
                decoded += n
                if n < BLOCK:
                    break
                if decoded > cap:
                    _check_duration(decoded / rate, limits, name, member, "decoded more than")
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise MediaError("corrupt", name, f"{fmt} data does not decode after {decoded:,} frames: {exc}",
                             member=member) from exc
        codec = f.subtype
    if decoded == 0:
        raise MediaError("empty_audio", name, f"{fmt} stream has no samples", member=member)
    if declared and decoded < declared:
        raise MediaError("truncated", name, f"the header declares {declared:,} frames, "
                         f"{decoded:,} decode", member=member)
    if fmt == "ogg" and not _ogg_ends(op):
        raise MediaError("truncated", name, "the last Ogg page is not marked end-of-stream", member=member)
    return {"codec": codec.lower(), "sample_rate": rate, "channels": channels, "frames": decoded,
            "duration_s": round(decoded / rate, 6),
            "header_duration_s": round(claimed / rate, 6) if claimed else None}


def _wav_data_frames(op: Opened, f) -> int:
    """Frames the WAV ``data`` chunk declares (libsndfile clamps it to the file: we want the claim)."""
    h = op.head
    if h[:4] != b"RIFF":
        return 0
    i = 12
    while i + 8 <= len(h):
        cid, size = h[i : i + 4], int.from_bytes(h[i + 4 : i + 8], "little")
        if cid == b"data":
            if size in (0, 0xFFFFFFFF):  # a stream written without knowing its length
                return 0
            frame_bytes = _bytes_per_frame(f)
            return size // frame_bytes if frame_bytes else 0
        i += 8 + size + (size & 1)
    return 0


def _bytes_per_frame(f) -> int:
    widths = {"PCM_U8": 1, "PCM_S8": 1, "PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8,
              "ULAW": 1, "ALAW": 1}
    return widths.get(f.subtype, 0) * f.channels


def _ogg_ends(op: Opened) -> bool:
    """The last Ogg page carries the end-of-stream flag (a cut file's last page does not)."""
    fh: BinaryIO = op.fh
    fh.seek(max(0, op.size - 65536))
    tail = fh.read()
    fh.seek(0)
    i = tail.rfind(b"OggS")
    return i >= 0 and len(tail) > i + 5 and bool(tail[i + 5] & 0x04)


def _with_av(op: Opened, fmt: str, name: str, member: str | None, limits: Limits) -> dict:
    import av

    try:
        container = av.open(op.path or op.fh, mode="r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        reason = "truncated" if isinstance(exc, av.error.EOFError) else "corrupt"
        raise MediaError(reason, name, f"{fmt} container does not open: {exc}", member=member) from exc
    with contextlib.closing(container):
        if not container.streams.audio:
            raise MediaError("no_audio_stream", name, f"{fmt} container has no audio stream", member=member)
        stream = container.streams.audio[0]
        cc = stream.codec_context
        rate, channels = cc.sample_rate or 0, cc.channels or 0
        _check_shape(rate, channels, name, member)
        claimed = None
        if stream.duration and stream.time_base:
            claimed = float(stream.duration * stream.time_base)
        elif container.duration:
            claimed = container.duration / 1_000_000
        if claimed:
            _check_duration(claimed, limits, name, member, "the header declares")
        decoded = 0
        cap = limits.max_duration_s * rate
        try:
            for frame in container.decode(stream):
                decoded += frame.samples
                if decoded > cap:
                    _check_duration(decoded / rate, limits, name, member, "decoded more than")
        except av.error.FFmpegError as exc:
            raise MediaError("corrupt", name, f"{fmt} data does not decode after {decoded:,} samples: {exc}",
                             member=member) from exc
        codec = cc.name
    if decoded == 0:
        raise MediaError("empty_audio", name, f"{fmt} stream has no samples", member=member)
    if claimed and decoded / rate < claimed * 0.99 - 0.05:  # an MP3's Xing frame count, a container's index
        raise MediaError("truncated", name, f"the header declares {claimed:,.3f} s, {decoded / rate:,.3f} s decode",
                         member=member)
    return {"codec": codec, "sample_rate": rate, "channels": channels, "frames": decoded,
            "duration_s": round(decoded / rate, 6),
            "header_duration_s": round(claimed, 6) if claimed else None}
