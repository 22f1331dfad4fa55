"""Generated images for the media tests and the benchmark: shapes, gradients and noise textures,
varied by a seed so that distinct seeds give pictures far apart; and their near copies."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def picture(seed: int, size: tuple[int, int] = (256, 192)) -> Image.Image:
    """One distinct RGB picture: a gradient background, a low-frequency noise texture, shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi)
    grad = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    coarse = rng.random((rng.integers(3, 7), rng.integers(3, 7)))  # blobs: a coarse grid upsampled
    blobs = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC),
                       dtype=np.float64) / 255
    fine = rng.random((h, w)) * rng.uniform(0, 0.3)  # fine noise texture on top
    base = np.stack([grad * rng.uniform(-1, 1) + blobs * rng.uniform(-1, 1) + fine for _ in range(3)], axis=-1)
    base -= base.min()
    base = (255 * base / max(base.max(), 1e-9)).astype(np.uint8)
    im = Image.fromarray(base, "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(2, 7))):
        x0, y0 = int(rng.integers(0, max(1, w - 20))), int(rng.integers(0, max(1, h - 20)))
        x1, y1 = x0 + int(rng.integers(15, max(16, w // 2))), y0 + int(rng.integers(15, max(16, h // 2)))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.rectangle([x0, y0, x1, y1], fill=color)
        elif kind == 1:
            draw.ellipse([x0, y0, x1, y1], fill=color)
        else:
            draw.line([x0, y0, x1, y1], fill=color, width=int(rng.integers(3, 12)))
    return im


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def near_copies(im: Image.Image, seed: int) -> list[tuple[str, Image.Image]]:
    """Resized, recompressed, lightly cropped (1-3 % off each side) and resized-and-recompressed
    copies, as a provider's duplicates are."""
    rng = np.random.default_rng(10_000 + seed)
    w, h = im.size
    scale = float(rng.choice([0.5, 0.75, 1.5]))
    q = int(rng.choice([30, 50, 75]))
    left, top, right, bottom = (float(f) for f in rng.uniform(0.01, 0.03, 4))
    crop = im.crop((int(w * left), int(h * top), w - int(w * right), h - int(h * bottom)))
    small = im.resize((w // 2, h // 2), Image.Resampling.BICUBIC)
    return [
        ("resized", im.resize((int(w * scale), int(h * scale)), Image.Resampling.BILINEAR)),
        (f"jpeg{q}", Image.open(io.BytesIO(encode(im, "JPEG", quality=q)))),
        ("cropped", crop),
        ("resized+jpeg", Image.open(io.BytesIO(encode(small, "JPEG", quality=60)))),
    ]


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG whose header declares ``width`` x ``height`` and whose pixel data is a few bytes:
    the shape of a decompression bomb (it would inflate to width x height x 3 bytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def image_bytes(fmt: str, size=(96, 64), *, orientation: int | None = None, frames: int = 1) -> bytes:
    """An image in ``fmt`` (Pillow's name), optionally EXIF-oriented or with several frames."""
    ims = [picture(i, size) for i in range(frames)]
    kw: dict = {}
    if orientation:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif.tobytes()
    if frames > 1:
        kw.update(save_all=True, append_images=ims[1:])
    return encode(ims[0], fmt, **kw)


def audio_bytes(fmt: str, subtype: str, *, seconds: float = 1.0, rate: int = 16000, channels: int = 1) -> bytes:
    """A tone written by soundfile (``fmt`` WAV, FLAC, OGG, MP3; ``subtype`` PCM_16, VORBIS, OPUS...)."""
    import soundfile as sf

    n = int(seconds * rate)
    t = np.arange(n) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t))[:, None].repeat(channels, axis=1)
    buf = io.BytesIO()
    sf.write(buf, x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def video_bytes(fmt: str = "mp4", codec: str | None = "libx264", *, frames: int = 20, size=(64, 48), fps: int = 10,
                audio: bool = False, options: dict | None = None) -> bytes:
    """A clip written by PyAV: noise frames in ``codec`` (``None``: no video stream), an AAC track if ``audio``."""
    import av

    w, h = size
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        vs = None
        if codec:
            vs = c.add_stream(codec, rate=fps, options=options or {})
            vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        a = c.add_stream("aac", rate=16000) if audio else None
        rng = np.random.default_rng(0)
        if vs is not None:
            for i in range(frames):
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
                frame.pts = i
                c.mux(vs.encode(frame))
            c.mux(vs.encode())
        if a is not None:
            for i in range(max(1, int(frames / fps * 16000 / 1024))):
                af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
                af.sample_rate, af.pts = 16000, i * 1024
                c.mux(a.encode(af))
            c.mux(a.encode())
    return buf.getvalue()


def repeat_video(src: bytes, dst: str, times: int, fmt: str = "matroska") -> None:
    """Write ``src``'s video packets ``times`` over into ``dst`` (timestamps shifted, no re-encoding):
    a large file in the time it takes to write it."""
    import av

    with av.open(io.BytesIO(src)) as inp, av.open(dst, "w", format=fmt) as out:
        ins = inp.streams.video[0]
        outs = out.add_stream_from_template(ins)
        packets = [p for p in inp.demux(ins) if p.size]
        span = max(p.pts + (p.duration or 1) for p in packets) - min(p.pts for p in packets)
        for t in range(times):
            for p in packets:
                q = av.Packet(bytes(p))
                q.pts, q.dts = p.pts + t * span, p.dts + t * span
                q.duration, q.time_base, q.is_keyframe = p.duration, p.time_base, p.is_keyframe
                q.stream = outs
                out.mux(q)
