"""Media for the curation tests: distinct recordings and clips, and their exact and near copies.

Audio is written from int16 samples so that two lossless containers hold the very same PCM (a float
signal is rounded differently by libsndfile's WAV and FLAC writers).
"""

from __future__ import annotations

import io

import numpy as np
from media_gen import encode, picture
from PIL import Image


def melody(seed: int, seconds: float = 3.0, rate: int = 16000) -> np.ndarray:
    """A distinct signal: six notes of seeded pitch and level, with a little noise (float, mono)."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    t = np.arange(n) / rate
    x = np.zeros(n)
    notes = 6
    span = n // notes
    for k in range(notes):
        f = rng.uniform(150, 2000)
        seg = slice(k * span, (k + 1) * span)
        x[seg] = np.sin(2 * np.pi * f * t[seg]) * rng.uniform(0.2, 0.6)
    return x + rng.normal(0, 0.01, n)


def pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def audio_file(x: np.ndarray, rate: int = 16000, fmt: str = "WAV", subtype: str = "PCM_16") -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, pcm16(x) if subtype.startswith("PCM") else x, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    at = np.linspace(0, len(x) - 1, int(len(x) * to / rate))
    return np.interp(at, np.arange(len(x)), x)


def clip_frames(seed: int, frames: int = 24, size: tuple[int, int] = (96, 64)) -> list[Image.Image]:
    """A distinct clip: a seeded picture panning slowly (so frames differ, as in real footage)."""
    big = picture(seed, (size[0] + frames * 2, size[1]))
    return [big.crop((2 * i, 0, 2 * i + size[0], size[1])) for i in range(frames)]


def video_file(images: list[Image.Image], fps: int = 12, fmt: str = "mp4", codec: str = "libx264",
               size: tuple[int, int] | None = None, crf: int = 23) -> bytes:  # fmt: skip
    import av

    w, h = size or images[0].size
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as c:
        vs = c.add_stream(codec, rate=fps, options={"crf": str(crf)} if codec == "libx264" else {})
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        for i, im in enumerate(images):
            frame = av.VideoFrame.from_image(im.resize((w, h)) if (w, h) != im.size else im)
            frame.pts = i
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
    return buf.getvalue()


def remux(data: bytes, fmt: str = "matroska") -> bytes:
    """The same encoded packets in another container: other bytes, the same decoded frames."""
    import av

    buf = io.BytesIO()
    with av.open(io.BytesIO(data)) as inp, av.open(buf, "w", format=fmt) as out:
        ins = inp.streams.video[0]
        outs = out.add_stream_from_template(ins)
        for p in inp.demux(ins):
            if p.dts is None:
                continue
            p.stream = outs
            out.mux(p)
    return buf.getvalue()


def image_variants(seed: int) -> dict[str, bytes]:
    """One picture as PNG, as a lossless WebP (same pixels), and as a half-size JPEG (a near copy)."""
    im = picture(seed, (160, 120))
    return {
        "png": encode(im, "PNG"),
        "webp": encode(im, "WEBP", lossless=True),
        "near": encode(im.resize((80, 60), Image.Resampling.BICUBIC), "JPEG", quality=60),
    }
