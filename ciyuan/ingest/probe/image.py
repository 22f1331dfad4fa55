"""Image facts from the header (Pillow), with the bomb refused before a pixel is decoded.

``probe_image`` opens the file with Pillow restricted to the format its bytes show (so a ``.png``
that is a JPEG is read as the JPEG it is), reads the size, mode, frame count and EXIF orientation
from the headers, and refuses a size above ``media_max_pixels`` right there: Pillow's own
``MAX_IMAGE_PIXELS`` check (it raises at twice its 89.5 MP) stays underneath as a floor, but the
setting is the guard. Its warning is silenced, the refusal is ours.

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

import io
import warnings
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
    pil_format = _PIL_FORMAT.get(fmt)
    if pil_format is None or pil_format not in Image.OPEN:
        Image.init()
        if pil_format is None or pil_format not in Image.OPEN:
            raise fail("unsupported", f"{fmt} images cannot be read here")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(op.fh, formats=[pil_format])
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
        try:
            frames = _frames(im)
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


def _frames(im: Image.Image) -> int:
    """Frame count (GIF, WebP, TIFF pages); Pillow walks GIF frames without decoding them."""
    n = getattr(im, "n_frames", 1)
    im.seek(0)
    return int(n)


def _orientation(im: Image.Image, fmt: str) -> int:
    """EXIF orientation 1..8 (1 when absent or invalid), without decoding pixels.

    Pillow's PNG ``getexif`` loads the image when no eXIf chunk came before the pixel data: skip it
    then (the PNG specification puts eXIf before IDAT).
    """
    if fmt == "png" and "exif" not in im.info:
        return 1
    value = im.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _tail(fh: BinaryIO, size: int) -> bytes:
    fh.seek(max(0, size - _TAIL))
    return fh.read(_TAIL)


def _short_by(op: Opened, fmt: str, im: Image.Image) -> str:
    """Why the file ends before its data does ('' when it reaches its end marker)."""
    fh, size = op.fh, op.size
    pos = fh.tell()
    try:
        if fmt == "jpeg":
            tail = _tail(fh, size)
            if not tail.rstrip(b"\x00").endswith(b"\xff\xd9") and b"\xff\xd9" not in tail:
                return f"no JPEG end-of-image marker in the last {len(tail)} bytes of {size:,}"
        elif fmt == "png":
            if b"IEND\xaeB`\x82" not in _tail(fh, size):
                return f"no PNG IEND chunk at the end of its {size:,} bytes"
        elif fmt == "gif":
            if not _tail(fh, size).rstrip(b"\x00").endswith(b";"):
                return f"no GIF trailer at the end of its {size:,} bytes"
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
        fh.seek(pos)


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
