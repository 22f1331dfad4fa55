"""What every media probe shares: the typed error, the limits, and opening a source as a seekable file.

A source is a path, the bytes themselves, or a seekable binary file (a tar member from
``TarFile.extractfile``); the error names the file and, inside a tar, the member, so the quarantine
can say where the bad item sits.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ciyuan.errors import InvalidInput

Source = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

# why a media item was refused: stable codes, used as quarantine reasons (``media.<reason>``)
REASONS = {
    "not_media": "the bytes are no media format ciyuan reads",
    "wrong_modality": "the bytes are another modality than the one asked for",
    "unsupported": "a media format ciyuan recognises but cannot read",
    "bomb": "the header declares more pixels than media_max_pixels (decompression bomb)",
    "truncated": "the file ends before its data does",
    "corrupt": "the data does not decode",
    "absurd_dimension": "a width, height, sample rate or channel count no real media has",
    "absurd_duration": "a duration above media_max_duration_s or a frame rate above media_max_fps",
    "empty_audio": "the audio decodes to no samples",
    "empty_video": "the video stream holds no frames",
    "no_video_stream": "a video container without a video stream",
    "no_audio_stream": "an audio container without an audio stream",
    "unreadable": "the file cannot be read",
}


class MediaError(InvalidInput):
    """A media item refused by a probe: ``reason`` is one of ``REASONS``; the message names the file."""

    code = "invalid_media"

    def __init__(self, reason: str, name: str, detail: str, *, member: str | None = None, hint: str = ""):
        assert reason in REASONS, reason
        where = f"{name} (member {member})" if member else name
        super().__init__(f"{where}: {REASONS[reason]}: {detail}", hint=hint or _HINTS.get(reason, ""))
        self.reason = reason
        self.file = name
        self.member = member
        self.detail = detail


_HINTS = {
    "bomb": "if the image is genuine, raise media_max_pixels (config.toml or CIYUAN_MEDIA_MAX_PIXELS)",
    "truncated": "copy the file again from its origin: it was cut short",
    "corrupt": "re-export the file from its origin, or remove it",
    "not_media": "check the file: its bytes are not an image, audio or video the probe knows",
    "absurd_duration": "if the media is genuine, raise media_max_duration_s or media_max_fps",
    "absurd_dimension": "if the video is genuine, raise media_max_video_side",
}


def no_signature(head: bytes) -> str:
    if not head:
        return "the file is empty (0 bytes)"
    return f"first bytes {head[:8].hex(' ')} match no media signature"


@dataclass(frozen=True)
class Limits:
    """The probe's refusals, from the settings (``media_*``); tests and benches pass their own."""

    max_pixels: int = 80_000_000
    max_video_side: int = 16_384
    max_duration_s: int = 86_400
    max_fps: int = 1_000

    @classmethod
    def from_settings(cls) -> Limits:
        from ciyuan.config import settings

        s = settings()
        return cls(s.media_max_pixels, s.media_max_video_side, s.media_max_duration_s, s.media_max_fps)


def display_name(src: Source, name: str | None) -> str:
    if name:
        return name
    if isinstance(src, str | os.PathLike):
        return str(src)
    return getattr(src, "name", None) or "<bytes>"


@dataclass
class Opened:
    """An open source: the file, its size in bytes, and the first bytes (for ``sniff``)."""

    fh: BinaryIO
    size: int
    head: bytes
    path: str | None  # a real path when there is one (PyAV and libsndfile read it natively: faster)


HEAD = 4096  # enough for every signature sniff knows (an EBML DocType, a second MP3 frame)


@contextmanager
def open_source(src: Source, name: str, member: str | None) -> Iterator[Opened]:
    """Open ``src`` for reading at offset 0; errors reading it become ``MediaError("unreadable")``."""
    own = None
    try:
        if isinstance(src, str | os.PathLike):
            path: str | None = os.fspath(src)
            own = fh = Path(path).open("rb")  # noqa: SIM115 (closed below, after the yield)
            size = os.fstat(fh.fileno()).st_size
        else:
            path = None
            if isinstance(src, bytes | bytearray | memoryview):
                fh = io.BytesIO(bytes(src))
            else:
                fh = src
                if fh.tell():  # probes seek to 0: give them a view that starts where the caller's file stood
                    fh = io.BytesIO(fh.read())
            size = fh.seek(0, io.SEEK_END)
        fh.seek(0)
        head = fh.read(HEAD)
        fh.seek(0)
    except OSError as exc:
        if own:
            own.close()
        raise MediaError("unreadable", name, str(exc), member=member) from exc
    try:
        yield Opened(fh, size, head, path)
    finally:
        if own:
            own.close()
