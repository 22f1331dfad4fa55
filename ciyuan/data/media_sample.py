"""The demo's media sample: wind-farm pictures with captions and alarm sounds with transcripts.

Drawn with Pillow and written with soundfile from fixed seeds when the demo is built, so the repo
carries no binary media and every run writes the same bytes (the same version ids, so re-running
the demo reuses what it made). We made every file here and dedicate them to the public domain
(CC0-1.0); ``LICENSE.txt`` beside the folders says so.

Planted for curation to find, as in the text sample: in the pictures a lossless WebP of the first
(an exact duplicate by pixels), a half-size JPEG of the second (a near duplicate by perceptual
hash), a 48x36 thumbnail (too small) and a one-word caption (too short); in the sounds a FLAC of
the first (an exact duplicate by samples), a clip of 0.3 s (too short) and one mostly silent.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

IMAGES = 20  # distinct pictures
SOUNDS = 8  # distinct sounds
RATE = 16_000
LICENSE = "CC0-1.0"
LICENSE_TEXT = """\
The files in images/ and speech/ were drawn (Pillow) and synthesised (numpy, soundfile) by ciyuan's
demo (ciyuan/data/media_sample.py) from fixed seeds. No photograph, recording or person is in them.

To the extent possible under law, the ciyuan authors have waived all copyright and related or
neighbouring rights to these files: Creative Commons CC0 1.0 Universal,
https://creativecommons.org/publicdomain/zero/1.0/
"""

IMAGE_CARD = {
    "description": "Drawings of wind farms (turbines, hills, skies) with one-line English captions, made by "
    "ciyuan's demo from fixed seeds: a small image-caption set to try media ingest, curation and pricing.",
    "creator": "ciyuan demo provider (windco)",
    "keywords": ["wind power", "image captioning", "synthetic images"],
    "inLanguage": ["en"],
    "rai:dataCollection": "Drawn with Pillow by ciyuan/data/media_sample.py; no photograph is used.",
    "rai:dataCollectionType": ["Synthetic"],
    "rai:hasSyntheticData": True,
}
SPEECH_CARD = {
    "description": "Synthetic turbine alarm sounds (beeps, sweeps, warbles) with English transcripts of what "
    "they are, made by ciyuan's demo from fixed seeds: a small audio-transcript set for the speech-asr recipe.",
    "creator": "ciyuan demo provider (windco)",
    "keywords": ["wind power", "alarm sounds", "synthetic audio"],
    "inLanguage": ["en"],
    "rai:dataCollection": "Synthesised with numpy and written with soundfile by ciyuan/data/media_sample.py.",
    "rai:dataCollectionType": ["Synthetic"],
    "rai:hasSyntheticData": True,
}

_SKIES = [("clear blue", (90, 150, 230), (200, 225, 250)), ("grey", (120, 125, 135), (190, 190, 195)),
          ("orange evening", (230, 120, 60), (250, 200, 120)), ("dark night", (10, 15, 50), (40, 50, 100)),
          ("pale morning", (180, 200, 230), (250, 240, 220))]  # fmt: skip
_GROUNDS = [("green", (60, 140, 60)), ("brown", (130, 95, 60)), ("snowy", (235, 235, 240)),
            ("yellow", (200, 180, 80))]  # fmt: skip
_NUMBERS = ["one", "two", "three", "four"]


def _turbine(draw, x: float, base: float, height: float, angle: float, color: tuple) -> None:
    hub = (x, base - height)
    draw.line([(x, base), hub], fill=color, width=max(2, int(height / 25)))
    blade = height * 0.45
    for k in range(3):
        a = angle + k * 2 * math.pi / 3
        tip = (hub[0] + blade * math.cos(a), hub[1] + blade * math.sin(a))
        draw.line([hub, tip], fill=color, width=max(2, int(height / 30)))
    r = max(2, height / 25)
    draw.ellipse([hub[0] - r, hub[1] - r, hub[0] + r, hub[1] + r], fill=color)


def picture(seed: int, size: tuple[int, int] = (320, 240)):
    """One drawing and its caption: sky, hills, 1-4 turbines, maybe the sun or the moon, clouds."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(4242 + seed)
    w, h = size
    sky_name, top, bottom = _SKIES[seed % len(_SKIES)]
    ground_name, ground = _GROUNDS[(seed // len(_SKIES)) % len(_GROUNDS)]
    t = np.linspace(0, 1, h)[:, None, None]
    sky = (np.array(top)[None, None, :] * (1 - t) + np.array(bottom)[None, None, :] * t)
    im = Image.fromarray(np.broadcast_to(sky, (h, w, 3)).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    light = rng.random() < 0.6
    if light:
        r = int(rng.integers(18, 40))
        cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h // 3))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(250, 240, 200) if sky_name == "dark night" else
                     (255, 220, 80))  # fmt: skip
    for _ in range(int(rng.integers(0, 4))):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(10, h // 2))
        rw, rh = int(rng.integers(30, 90)), int(rng.integers(10, 25))
        draw.ellipse([cx - rw, cy - rh, cx + rw, cy + rh], fill=(245, 245, 245))
    xs = np.linspace(0, w, 7)
    ys = h * (0.55 + 0.3 * rng.random(7))
    hill = [(0, h)] + [(float(x), float(y)) for x, y in zip(xs, ys, strict=True)] + [(w, h)]
    draw.polygon(hill, fill=ground)
    n = int(rng.integers(1, 5))
    for k in range(n):
        x = w * (k + 0.5 + rng.uniform(-0.2, 0.2)) / n
        base = float(np.interp(x, xs, ys)) + 4
        _turbine(draw, x, base, h * rng.uniform(0.35, 0.6), rng.uniform(0, 2 * math.pi), (245, 245, 245)
                 if ground_name != "snowy" else (60, 60, 70))  # fmt: skip
    what = "wind turbine" if n == 1 else "wind turbines"
    extra = ""
    if light:
        extra = ", with the moon" if sky_name == "dark night" else ", with the sun"
    article = "an" if sky_name[0] in "aeiou" else "a"
    caption = f"{_NUMBERS[n - 1]} {what} on {ground_name} hills under {article} {sky_name} sky{extra}"
    return im, caption


def sound(seed: int) -> tuple[np.ndarray, str]:
    """One alarm sound (float32 at ``RATE``) and its transcript: beeps, a sweep, a warble or a chord."""
    rng = np.random.default_rng(7000 + seed)
    kind = seed % 4
    secs = float(rng.uniform(1.5, 3.5))
    t = np.arange(int(secs * RATE)) / RATE
    f = float([880, 660, 330, 440, 1320, 520, 990, 600][seed % 8])
    if kind == 0:
        n = int(rng.integers(3, 7))
        gate = np.floor(t * n / secs * 2) % 2 == 0  # on, off, on ... n beeps
        x = np.sin(2 * np.pi * f * t) * np.where(gate, 1.0, 0.15)
        text = f"{n} beeps at {int(f)} hertz over a low hum"
    elif kind == 1:
        f2 = f * (0.5 if seed % 8 == 1 else 1.5)
        x = np.sin(2 * np.pi * (f * t + (f2 - f) * t**2 / (2 * secs)))
        text = f"a tone sweeping from {int(f)} to {int(f2)} hertz"
    elif kind == 2:
        rate = 3.0 if seed % 8 == 2 else 7.0
        x = np.sin(2 * np.pi * f * t + 20 * np.sin(2 * np.pi * rate * t))
        text = f"a warbling alarm around {int(f)} hertz, {rate:.0f} wobbles a second"
    else:
        ratio = float(rng.choice([1.25, 1.5]))
        x = np.sin(2 * np.pi * f * t) + np.sin(2 * np.pi * f * ratio * t)
        text = f"a steady chord of {int(f)} and {int(f * ratio)} hertz"
    x = 0.4 * x / max(float(np.abs(x).max()), 1e-9)
    return x.astype(np.float32), text


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", optimize=False)
    return buf.getvalue()


def _write(folder: Path, stem: str, ext: str, data: bytes, text: str) -> None:
    (folder / f"{stem}.{ext}").write_bytes(data)
    (folder / f"{stem}.txt").write_text(text + "\n", encoding="utf-8")


def _audio(x: np.ndarray, fmt: str) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, x, RATE, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def write_media_sample(root: Path | str) -> dict[str, Path]:
    """Write ``images/``, ``speech/`` and ``LICENSE.txt`` under ``root``; returns the two folders.

    Files already there with the same bytes are left alone (a re-run writes nothing new).
    """
    from PIL import Image

    root = Path(root)
    images, speech = root / "images", root / "speech"
    images.mkdir(parents=True, exist_ok=True)
    speech.mkdir(parents=True, exist_ok=True)
    (root / "LICENSE.txt").write_text(LICENSE_TEXT, encoding="utf-8")
    pics = [picture(i) for i in range(IMAGES)]
    for i, (im, cap) in enumerate(pics):
        _write(images, f"farm{i:02d}", "png", _png(im), cap)
    first, second = pics[0][0], pics[1][0]
    webp = io.BytesIO()
    first.save(webp, "WEBP", lossless=True)
    _write(images, "farm00-copy", "webp", webp.getvalue(), "the same picture again, stored as WebP")
    small = io.BytesIO()
    second.resize((second.width // 2, second.height // 2), Image.Resampling.BICUBIC).save(small, "JPEG", quality=70)
    _write(images, "farm01-small", "jpg", small.getvalue(), pics[1][1] + ", smaller")
    _write(images, "thumb", "png", _png(picture(IMAGES)[0].resize((48, 36))), "a tiny thumbnail of a wind farm")
    _write(images, "oneword", "png", _png(picture(IMAGES + 1)[0]), "turbines")
    clips = [sound(i) for i in range(SOUNDS)]
    for i, (x, text) in enumerate(clips):
        _write(speech, f"alarm{i:02d}", "wav", _audio(x, "WAV"), text)
    _write(speech, "alarm00-copy", "flac", _audio(clips[0][0], "FLAC"), clips[0][1])
    _write(speech, "blip", "wav", _audio(clips[1][0][: int(0.3 * RATE)], "WAV"), "a short blip")
    quiet = np.zeros(3 * RATE, np.float32)
    quiet[: RATE // 2] = clips[2][0][: RATE // 2]
    _write(speech, "mostly-silence", "wav", _audio(quiet, "WAV"), "half a second of alarm, then silence")
    return {"images": images, "speech": speech}


__all__ = ["IMAGE_CARD", "LICENSE", "SPEECH_CARD", "picture", "sound", "write_media_sample"]
