"""Small media versions for the selling tests: real PNG/WAV/MP4 bytes, facts from the real probe.

Each record carries its bytes inline (``media``), the probe's facts under ``meta[modality]`` and
``meta.sha256`` of the bytes, as the media ingest writes them; images are smooth gradients so a
1024-pixel PNG stays a few kilobytes.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
from PIL import Image


def gradient_png(w: int, h: int, shade: int = 0) -> bytes:
    """A ``w`` x ``h`` RGB gradient as PNG (``shade`` makes different images of the same size)."""
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    arr = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)),
                          np.full((h, w, 1), shade % 256, np.float32)], axis=2).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def tone_wav(seconds: float, rate: int = 16000, freq: float = 440.0) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def media_record(rid: str, data: bytes, name: str, *, text: str | None = None, extra: dict | None = None) -> dict:
    """A record as the media ingest writes it: bytes inline, probed facts, sha256, source name."""
    from ciyuan.ingest.probe import probe

    modality, facts = probe(data, name=name)
    meta = {modality: facts, "sha256": hashlib.sha256(data).hexdigest(), "source": name, **(extra or {})}
    return {"id": rid, "modality": modality, "text": text, "media": data, "meta": meta}


IMAGE_SIZES = [(640, 480), (100, 50), (512, 512), (1024, 256), (300, 900), (511, 700)]


def image_records() -> list[dict]:
    """Six images (three at least 512 wide), captions on four, the last a byte-exact copy of the first."""
    out = []
    for i, (w, h) in enumerate(IMAGE_SIZES[:5]):
        out.append(media_record(f"img{i}", gradient_png(w, h, i), f"img{i}.png",
                                text=f"a gradient {w} by {h}" if i % 2 == 0 or i == 1 else None))
    out.append(media_record("img5", gradient_png(640, 480, 0), "img5.png", text=None))
    return out


AUDIO_SECONDS = [(2.0, 16000), (31.0, 8000), (0.5, 16000), (12.0, 8000)]


def audio_records() -> list[dict]:
    """Four recordings of 2, 31, 0.5 and 12 seconds; transcripts on two; one declared a wrong duration."""
    out = []
    for i, (sec, rate) in enumerate(AUDIO_SECONDS):
        extra = {"mismatch": [{"field": "duration_s", "declared": 99, "probed": sec}]} if i == 3 else None
        out.append(media_record(f"wav{i}", tone_wav(sec, rate, 300 + 50 * i), f"wav{i}.wav",
                                text=f"transcript {i}" if i < 2 else "", extra=extra))
    return out


def build(name: str, records: list[dict], schedules: tuple[str, ...] = (), **kw):
    """Commit ``records`` as dataset ``name`` with the store's builder and count them under
    ``schedules`` (what ``ciyuan tokens NAME --schedule S`` does); returns the version."""
    from ciyuan.store import VersionBuilder
    from ciyuan.store.token_cache import ensure_counts

    b = VersionBuilder(name, made_by={"tool": "tests"}, **kw)
    for r in records:
        b.add(r)
    v = b.commit()
    for s in schedules:
        ensure_counts(v, s)
    return v
