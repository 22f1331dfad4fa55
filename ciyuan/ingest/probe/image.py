"""Image facts from the header (Pillow), with the bomb refused before a pixel is decoded.

``probe_image`` opens the file with the Pillow plugin of the format its bytes show (so a ``.png``
that is a JPEG is read as the JPEG it is), reads the size, mode, frame count and EXIF orientation
from the headers, and refuses a size above ``media_max_pixels`` right there, before any pixel is
decoded. Pillow's own limit (it refuses above twice ``Image.MAX_IMAGE_PIXELS``, 179 MP) is kept as
a floor: a ``media_max_pixels`` set higher cannot lift it. GIF frames are counted by walking the
blocks (on a memory map of the file, not a copy), which also finds a GIF cut before its trailer.

Truncation and corruption, two levels (``check``):

- ``"structure"`` (default, constant cost: one seek and at most 4 KiB read): the file must reach the
  end its format marks: JPEG's EOI marker, PNG's IEND chunk, GIF's trailer byte, the RIFF size of a
  WebP, the BMP file size field, the end of every TIFF strip or tile. A file cut short fails it.
- ``"decode"``: also decodes the first frame. Memory stays bounded because the size was checked
  first: at most ``media_max_pixels`` x 4 bytes (320 MB at the default) for the 4-byte modes, and
  JPEG is decoded at 1/8 scale (``draft``: libjpeg still entropy-decodes every block, so damage
  anywhere is found, for 1/64 of the memory). PNG chunk CRCs are checked too.
"""

from __future__ import annotations

import contextlib
import io
import mmap
from struct import error as struct_error  # Pillow raises it on short headers
from typing import BinaryIO

from PIL import Image

from ciyuan.ingest.probe.base import Limits, MediaError, Opened, Source, display_name, no_signature, open_source
from ciyuan.ingest.probe.sniff import sniff

_PIL_FORMAT = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "tiff": "TIFF", "bmp": "BMP",
               "avif": "AVIF"}
_TAIL = 4096
_SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that turn the image a quarter


def probe_image(
    src: Source,
    *,
    name: str | None = None,
    member: str | None = None,
    check: str = "structure",
    limits: Limits | None = None,
) -> dict:
    """The probed facts of one image, for ``meta["image"]`` (keys in docs/ingest.md).

    Raises ``MediaError`` with a reason (``bomb``, ``truncated``, ``corrupt``, ``not_media``,
    ``wrong_modality``, ``unsupported``, ``absurd_dimension``) naming the file and tar member.
    """
    if check not in ("structure", "decode"):
        raise ValueError(f"check must be 'structure' or 'decode', not {check!r}")
    name = display_name(src, name)
    limits = limits or Limits.from_settings()
    with open_source(src, name, member) as op:
        return _probe(op, name, member, check, limits)


def _probe(op: Opened, name: str, member: str | None, check: str, limits: Limits) -> dict:
    found = sniff(op.head)

    def fail(reason: str, detail: str) -> MediaError:
        return MediaError(reason, name, detail, member=member)

    if found is None:
        raise fail("not_media", no_signature(op.head))
    modality, fmt = found
    if modality != "image":
        raise fail("wrong_modality", f"the bytes are {modality} ({fmt}), not an image")
    factory = _factory(fmt)
    if factory is None:
        raise fail("unsupported", f"{fmt} images cannot be read here")
    try:
        im = factory(op.fh, name)
    except Image.DecompressionBombError as exc:
        raise fail("bomb", f"Pillow refused the header ({exc})") from exc
    except (OSError, SyntaxError, ValueError, TypeError, struct_error, IndexError, EOFError) as exc:
        short = _short_by(op, fmt, None)
        if short:
            raise fail("truncated", short) from exc
        raise fail("corrupt", f"{fmt} header does not parse: {exc}") from exc
    with im:
        w, h = im.size
        if fmt == "tiff":  # Pillow reports a TIFF's size turned by its orientation tag: keep the stored one
            w, h = im.tag_v2.get(256, w), im.tag_v2.get(257, h)
        if w <= 0 or h <= 0:
            raise fail("absurd_dimension", f"header declares {w}x{h}")
        if w * h > limits.max_pixels:
            raise fail("bomb", f"header declares {w}x{h} = {w * h:,} pixels, above media_max_pixels "
                               f"{limits.max_pixels:,}")
        floor = 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else None
        if floor and w * h > floor:
            raise fail("bomb", f"header declares {w}x{h} = {w * h:,} pixels, above Pillow's limit {floor:,}")
        try:
            frames = _gif_frames(op, name, member) if fmt == "gif" else _frames(im)
            orientation = _orientation(im, fmt)
        except (OSError, SyntaxError, ValueError, struct_error, EOFError) as exc:
            raise fail("corrupt", f"{fmt} headers do not parse: {exc}") from exc
        short = _short_by(op, fmt, im)
        if short:
            raise fail("truncated", short)
        if check == "decode":
            _decode(im, fmt, op.fh, fail)
        mode = im.mode
    dw, dh = (h, w) if orientation in _SWAPS_SIDES else (w, h)
    return {"format": fmt, "width": w, "height": h, "mode": mode, "orientation": orientation,
            "display_width": dw, "display_height": dh, "frames": frames, "bytes": op.size}


def _factory(fmt: str):
    """Pillow's opener for ``fmt``, called directly: the format is known from the bytes, so the
    plugin loop and Image.open's own pixel check (with its warning) are skipped; ours runs next."""
    pil = _PIL_FORMAT.get(fmt)
    if pil is None:
        return None
    if pil not in Image.OPEN:
        Image.init()
    entry = Image.OPEN.get(pil)
    return entry[0] if entry else None


def _gif_frames(op: Opened, name: str, member: str | None) -> int:
    """Image descriptors in a GIF, by walking its blocks on the bytes (Pillow's own walk reads
    each 255-byte sub-block from the file: ten times slower). A GIF that stops before its trailer
    is truncated; a byte that starts no block is corrupt."""
    fh = op.fh
    if op.path:
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if op.size else b""
    else:
        fh.seek(0)
        data = fh.read()
        fh.seek(0)
    try:
        return _walk_gif(data, name, member)
    finally:
        if isinstance(data, mmap.mmap):
            with contextlib.suppress(BufferError):  # a numpy view still held by a traceback: GC closes it
                data.close()


def _walk_gif(data, name: str, member: str | None) -> int:
    import numpy as np

    size = len(data)
    arr = np.frombuffer(data, dtype=np.uint8) if size else np.empty(0, np.uint8)

    def sub_blocks(j: int) -> int:
        while j < size:
            n = data[j]
            if n == 255:  # writers fill 255-byte sub-blocks: jump the whole run at once
                run = arr[j::256]
                t = int(np.argmax(run != 255))
                if run[t] == 255:
                    break
                j += 256 * t
                continue
            j += 1 + n
            if n == 0:
                return j
        raise MediaError("truncated", name, f"a GIF data block runs past the end of its {size:,} bytes",
                         member=member)

    i = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    frames = 0
    while i < size:
        b = data[i]
        if b == 0x3B:
            return frames
        if b == 0x2C:
            if i + 10 > size:
                break
            flags = data[i + 9]
            i += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            i = sub_blocks(i + 1)  # after the LZW code size
            frames += 1
        elif b == 0x21:
            i = sub_blocks(i + 2)
        elif b == 0 and frames:
            i += 1  # stray padding between blocks, which some writers leave
        else:
            raise MediaError("corrupt", name, f"byte 0x{b:02x} at offset {i:,} starts no GIF block", member=member)
    raise MediaError("truncated", name, f"no GIF trailer in its {size:,} bytes", member=member)


def _frames(im: Image.Image) -> int:
    """Frame count (WebP, TIFF pages) from Pillow's headers."""
    n = getattr(im, "n_frames", 1)
    if n > 1:
        im.seek(0)
    return int(n)


def _orientation(im: Image.Image, fmt: str) -> int:
    """EXIF orientation 1..8 (1 when absent or invalid), without decoding pixels.

    Read straight from IFD0 of the EXIF bytes (one tag wanted: Pillow's ``getexif`` parses them
    all, and its PNG version loads the pixels when no eXIf chunk came before them). TIFF keeps the
    tag among its own.
    """
    if fmt == "tiff":
        value = im.tag_v2.get(0x0112, 1)
    else:
        raw = im.info.get("exif")
        value = _ifd0_orientation(raw) if isinstance(raw, bytes | bytearray) else 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _ifd0_orientation(raw: bytes) -> int:
    """Tag 0x0112 of IFD0 in EXIF bytes (with or without the ``Exif\\0\\0`` prefix); 1 when absent."""
    if raw.startswith(b"Exif\x00\x00"):
        raw = raw[6:]
    if len(raw) < 8 or raw[:2] not in (b"II", b"MM"):
        return 1
    order = "little" if raw[:2] == b"II" else "big"
    ifd = int.from_bytes(raw[4:8], order)
    if ifd + 2 > len(raw):
        return 1
    count = int.from_bytes(raw[ifd : ifd + 2], order)
    for e in range(ifd + 2, min(ifd + 2 + 12 * count, len(raw) - 11), 12):
        if int.from_bytes(raw[e : e + 2], order) == 0x0112:
            return int.from_bytes(raw[e + 8 : e + 10], order)  # a SHORT, left-justified in the value field
    return 1


def _tail(fh: BinaryIO, size: int) -> bytes:
    fh.seek(max(0, size - _TAIL))
    return fh.read(_TAIL)


def _short_by(op: Opened, fmt: str, im: Image.Image) -> str:
    """Why the file ends before its data does ('' when it reaches its end marker)."""
    fh, size = op.fh, op.size
    try:
        if fmt == "jpeg":
            fh.seek(max(0, size - 2))
            if fh.read(2) != b"\xff\xd9":  # the usual end; else look further back (padding, trailers)
                tail = _tail(fh, size)
                if b"\xff\xd9" not in tail:
                    return f"no JPEG end-of-image marker in the last {len(tail)} bytes of {size:,}"
        elif fmt == "png":
            fh.seek(max(0, size - 8))
            if fh.read(8) != b"IEND\xaeB`\x82" and b"IEND\xaeB`\x82" not in _tail(fh, size):
                return f"no PNG IEND chunk at the end of its {size:,} bytes"
        elif fmt == "webp":
            declared = int.from_bytes(op.head[4:8], "little") + 8
            if declared > size:
                return f"the RIFF header declares {declared:,} bytes, the file has {size:,}"
        elif fmt == "bmp":
            declared = int.from_bytes(op.head[2:6], "little")
            if declared > size:
                return f"the BMP header declares {declared:,} bytes, the file has {size:,}"
        elif fmt == "tiff":
            tags = getattr(im, "tag_v2", None) or {}
            for offsets_tag, counts_tag in ((273, 279), (324, 325)):
                offsets, counts = tags.get(offsets_tag), tags.get(counts_tag)
                if offsets and counts:
                    offsets = offsets if isinstance(offsets, tuple) else (offsets,)
                    counts = counts if isinstance(counts, tuple) else (counts,)
                    end = max(o + c for o, c in zip(offsets, counts, strict=False))
                    if end > size:
                        return f"TIFF strips end at byte {end:,}, the file has {size:,}"
        return ""
    finally:
        fh.seek(0)


def _decode(im: Image.Image, fmt: str, fh: BinaryIO, fail) -> None:
    """Decode the first frame within bounded memory (see the module doc); damage becomes ``corrupt``."""
    try:
        if fmt == "jpeg":
            w, h = im.size
            im.draft(im.mode, ((w + 7) // 8, (h + 7) // 8))
        im.load()
        if fmt == "png":
            fh.seek(0)
            with Image.open(fh, formats=["PNG"]) as again:
                again.verify()  # chunk CRCs
    except (OSError, SyntaxError, ValueError, struct_error, EOFError, MemoryError) as exc:
        reason = "truncated" if "truncated" in str(exc) else "corrupt"
        raise fail(reason, f"{fmt} data does not decode: {exc}") from exc
    finally:
        fh.seek(0, io.SEEK_SET)
