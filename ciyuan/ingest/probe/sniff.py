"""Which media a file holds, from its first bytes (never from its name).

``sniff(head)`` looks at magic numbers and, where one signature covers several formats, one step
further: the RIFF form type (WebP, WAV, AVI), the ISO-BMFF ``ftyp`` brand (MP4, MOV, M4A, AVIF),
the first Ogg packet (Vorbis, Opus, FLAC, Theora), the EBML ``DocType`` (WebM, Matroska), the tag
an ID3 header hides (MP3, FLAC, AAC), and for a bare MPEG audio frame a second frame where the
first one says it starts (a single sync word is too weak: ``0xFFE`` is common in random bytes).
"""

from __future__ import annotations

import struct

# the format names the probes and ``meta[...]["format"]`` use, by modality
IMAGE_FORMATS = ("jpeg", "png", "webp", "gif", "tiff", "bmp", "avif", "heic")
AUDIO_FORMATS = ("wav", "flac", "ogg", "mp3", "aac", "m4a")
VIDEO_FORMATS = ("mp4", "mov", "webm", "mkv", "avi", "ogv")

_EXTENSIONS = {
    "jpg": "jpeg", "jpeg": "jpeg", "jpe": "jpeg", "jfif": "jpeg", "png": "png", "apng": "png", "webp": "webp",
    "gif": "gif", "tif": "tiff", "tiff": "tiff", "bmp": "bmp", "dib": "bmp", "avif": "avif", "heic": "heic",
    "heif": "heic", "wav": "wav", "wave": "wav", "flac": "flac", "ogg": "ogg", "oga": "ogg", "opus": "ogg",
    "mp3": "mp3", "aac": "aac", "m4a": "m4a", "mp4": "mp4", "m4v": "mp4", "mov": "mov", "qt": "mov",
    "webm": "webm", "mkv": "mkv", "avi": "avi", "ogv": "ogv",
}
# formats one container covers: a name from one group for bytes of another is no lie worth recording
_FAMILY = {"mov": "isobmff", "mp4": "isobmff", "m4a": "isobmff", "webm": "matroska", "mkv": "matroska",
           "ogg": "ogg", "ogv": "ogg"}


def format_of_name(name: str) -> str | None:
    """The media format a file name claims by its extension (``None``: no media extension)."""
    stem, dot, ext = name.rpartition(".")
    return _EXTENSIONS.get(ext.lower()) if dot and stem else None


def same_family(a: str, b: str) -> bool:
    """``a`` and ``b`` name the same format or two faces of one container (``mov``/``mp4``)."""
    return a == b or (_FAMILY.get(a, a) == _FAMILY.get(b, b))


def modality_of(fmt: str) -> str:
    if fmt in IMAGE_FORMATS:
        return "image"
    if fmt in AUDIO_FORMATS:
        return "audio"
    return "video"


def sniff(head: bytes) -> tuple[str, str] | None:
    """``(modality, format)`` of the media whose file starts with ``head``, or ``None``.

    A few hundred bytes decide every format but an ID3-tagged file (the tag may be long: then
    ``mp3`` is assumed) and an MPEG frame whose successor lies beyond ``head``.
    """
    fmt = _sniff(bytes(head))
    return (modality_of(fmt), fmt) if fmt else None


def _sniff(h: bytes) -> str | None:
    if h.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if h.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if h[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if h[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if h[:2] == b"BM" and len(h) >= 18 and struct.unpack_from("<I", h, 14)[0] in (12, 16, 40, 52, 56, 64, 108, 124):
        return "bmp"
    if h[:4] in (b"RIFF", b"RF64", b"BW64") and len(h) >= 12:
        return {b"WEBP": "webp", b"WAVE": "wav", b"AVI ": "avi"}.get(h[8:12])
    if h.startswith(b"fLaC"):
        return "flac"
    if h.startswith(b"OggS"):
        return _ogg(h)
    if h.startswith(b"\x1a\x45\xdf\xa3"):
        return _ebml(h)
    if h[4:8] == b"ftyp":
        return _ftyp(h)
    if h[4:8] in (b"moov", b"mdat", b"wide", b"free", b"skip") and (h[0] == 0 or h[:4] == b"\x00\x00\x00\x01"):
        return "mov"  # a QuickTime file from before ftyp; the size's top byte 0 keeps text out
    if h.startswith(b"ID3") and len(h) >= 10:
        return _id3(h)
    if _mpeg_audio(h, 0, confirm=True):
        return "mp3"
    if len(h) >= 7 and h[0] == 0xFF and h[1] & 0xF6 == 0xF0 and _adts_confirmed(h):
        return "aac"
    return None


def _ogg(h: bytes) -> str | None:
    if len(h) < 27:
        return None
    body = 27 + h[26]  # the segment table follows the 27-byte page header
    packet = h[body : body + 8]
    if packet.startswith(b"\x01vorbis") or packet.startswith(b"OpusHead") or packet.startswith(b"\x7fFLAC"):
        return "ogg"
    if packet.startswith(b"\x80theora"):
        return "ogv"
    return None


def ebml_vint(h: bytes, i: int, *, keep_marker: bool) -> tuple[int, int]:
    """An EBML variable-length integer at ``i``: (value, next index); raises IndexError/ValueError."""
    first = h[i]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8:
        raise ValueError("bad EBML vint")
    value = first if keep_marker else first & (0xFF >> length)
    for b in h[i + 1 : i + length]:
        value = value << 8 | b
    if i + length > len(h):
        raise IndexError
    return value, i + length


def _ebml(h: bytes) -> str:
    """WebM or Matroska, from the EBML header's DocType; ``mkv`` when it cannot be found."""
    try:
        _, i = ebml_vint(h, 0, keep_marker=True)
        size, i = ebml_vint(h, i, keep_marker=False)
        end = min(len(h), i + size)
        while i < end:
            eid, i = ebml_vint(h, i, keep_marker=True)
            n, i = ebml_vint(h, i, keep_marker=False)
            if eid == 0x4282:  # DocType
                return "webm" if h[i : i + n].rstrip(b"\x00") == b"webm" else "mkv"
            i += n
    except (IndexError, ValueError):
        pass
    return "mkv"


def _ftyp(h: bytes) -> str | None:
    brand = h[8:12]
    compatible = {h[i : i + 4] for i in range(16, min(len(h), struct.unpack_from(">I", h, 0)[0]), 4)}
    if brand in (b"avif", b"avis"):
        return "avif"
    if brand in (b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"):
        return "avif" if b"avif" in compatible else "heic"
    if brand == b"qt  ":
        return "mov"
    if brand in (b"M4A ", b"M4B ", b"M4P ", b"F4A "):
        return "m4a"
    return "mp4"


def _id3(h: bytes) -> str:
    """The format behind an ID3v2 tag (tag size is 4 bytes of 7 bits each)."""
    size = (h[6] & 0x7F) << 21 | (h[7] & 0x7F) << 14 | (h[8] & 0x7F) << 7 | (h[9] & 0x7F)
    after = 10 + size + (10 if h[5] & 0x10 else 0)
    rest = h[after : after + 4]
    if len(rest) < 4:
        return "mp3"  # a long tag (cover art): the sniffed head ends inside it
    if rest == b"fLaC":
        return "flac"
    if rest[0] == 0xFF and rest[1] & 0xF6 == 0xF0:
        return "aac"
    return "mp3"


_BITRATES = {  # kbit/s by (version is MPEG-1, layer) and bitrate index 1..14
    (True, 1): (32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448),
    (True, 2): (32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384),
    (True, 3): (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
    (False, 1): (32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256),
    (False, 2): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
    (False, 3): (8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),
}
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mpeg_frame_len(h: bytes, i: int) -> int | None:
    """Length of the MPEG audio frame whose header is at ``i``, or None when it is no valid header."""
    if len(h) < i + 4 or h[i] != 0xFF or h[i + 1] & 0xE0 != 0xE0:
        return None
    version = h[i + 1] >> 3 & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
    layer = 4 - (h[i + 1] >> 1 & 3)  # 4 means reserved
    bitrate_index = h[i + 2] >> 4
    rate_index = h[i + 2] >> 2 & 3
    if version == 1 or layer == 4 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    padding = h[i + 2] >> 1 & 1
    bitrate = _BITRATES[(version == 3, layer)][bitrate_index - 1] * 1000
    rate = _RATES[version][rate_index]
    if layer == 1:
        return (12 * bitrate // rate + padding) * 4
    per_frame = 144 if layer == 2 or version == 3 else 72
    return per_frame * bitrate // rate + padding


def _mpeg_audio(h: bytes, i: int, *, confirm: bool) -> bool:
    n = _mpeg_frame_len(h, i)
    if n is None:
        return False
    if not confirm or len(h) < i + n + 4:
        return not confirm or len(h) <= i + n  # a single frame that fills the head: accept
    return _mpeg_frame_len(h, i + n) is not None


def _adts_confirmed(h: bytes) -> bool:
    n = (h[3] & 3) << 11 | h[4] << 3 | h[5] >> 5
    if n < 7:
        return False
    if len(h) < n + 2:
        return len(h) <= n
    return h[n] == 0xFF and h[n + 1] & 0xF6 == 0xF0
