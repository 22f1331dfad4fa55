"""Generated images for the media tests and the benchmark: shapes, gradients and noise textures,
varied by a seed so that distinct seeds give pictures far apart; and their near copies."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


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
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(15, w // 2)), y0 + int(rng.integers(15, h // 2))
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
