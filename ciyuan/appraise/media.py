"""Media facts of a version, for its appraisal and its Croissant card, from the probe's facts alone.

One pass over the ``modality``, ``text``, ``media_ref`` and ``meta`` columns (never the bytes):
the probe already measured every file at ingest, so resolution, duration and format come from
``meta.image`` / ``meta.audio`` / ``meta.video``, exact duplicates from ``meta.sha256``, and
disagreements with what the provider declared from ``meta.mismatch``. Files the probe refused are
not records: they are in the version's quarantine with a reason starting ``media.<reason>``,
which gives the corrupt rate (refused / (media records + refused)).

Rates are exact counts over the whole version with their numerators and denominators beside
them, so a buyer can check them; distributions are fixed-edge histograms (the same edges for
every version, so two versions compare bin by bin) plus quantiles.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import numpy as np

MEDIA = ("image", "audio", "video")

# encodingFormat (IANA media type) of each format name the probe writes
MIME = {
    "png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
    "bmp": "image/bmp", "tiff": "image/tiff", "avif": "image/avif", "heif": "image/heif", "heic": "image/heic",
    "wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg", "opus": "audio/ogg",
    "m4a": "audio/mp4", "aac": "audio/aac", "aiff": "audio/aiff",
    "mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm", "mkv": "video/x-matroska",
    "matroska": "video/x-matroska", "avi": "video/x-msvideo",
}  # fmt: skip
SCHEMA_TYPE = {"image": "sc:ImageObject", "audio": "sc:AudioObject", "video": "sc:VideoObject"}

# histogram edges: the long side of an image in pixels, a duration in seconds
SIDE_EDGES = [0, 64, 128, 256, 512, 768, 1024, 1536, 2048, 4096, 8192]
DURATION_EDGES = [0, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600]
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)


def mime_of(modality: str, fmt: str | None) -> str:
    """The IANA media type of a probed format (``application/octet-stream`` when unknown)."""
    if fmt and fmt.lower() in MIME:
        return MIME[fmt.lower()]
    return {"image": "image/*", "audio": "audio/*", "video": "video/*"}.get(modality, "application/octet-stream")


def _hist(values: list[float], edges: list[float]) -> dict[str, Any]:
    if not values:
        return {"edges": edges, "counts": [0] * (len(edges) - 1), "above": 0, "n": 0}
    arr = np.asarray(values, dtype=np.float64)
    counts, _ = np.histogram(arr[arr < edges[-1]], bins=edges)
    q = np.quantile(arr, QUANTILES)
    return {"edges": edges, "counts": [int(c) for c in counts], "above": int((arr >= edges[-1]).sum()),
            "n": int(arr.size), "min": float(arr.min()), "max": float(arr.max()),
            "quantiles": {f"p{int(p * 100)}": float(v) for p, v in zip(QUANTILES, q, strict=True)}}


def _rate(num: int, den: int) -> dict[str, Any]:
    return {"rate": (num / den) if den else 0.0, "count": num, "of": den}


_MEDIA_REASON = re.compile(r"^(media\.[a-z_]+)")
_CAPPED = re.compile(r"(media\.[a-z_]+): (\d+)")


def refused_media(version: Any) -> dict[str, int]:
    """Media items the probe refused at ingest, by reason (``media.<reason>``), from the quarantine.

    Read from the quarantine rows themselves (their reason starts with the code), not from the
    manifest's counts by kind, whose patterns are for text inputs; rows past the per-file cap are
    one summary row whose "by reason" list still counts them.
    """
    if not (version.manifest.get("quarantine") or []):
        return {}
    out: Counter[str] = Counter()
    for batch in version.iter_batches(["reason"], partition="quarantine"):
        for reason in batch.column("reason").to_pylist():
            reason = reason or ""
            m = _MEDIA_REASON.match(reason)
            if m:
                out[m[1]] += 1
            elif reason.startswith("quarantine cap reached"):
                for kind, n in _CAPPED.findall(reason):
                    out[kind] += int(n)
    return dict(sorted(out.items()))


def pa_any_media(batch: Any) -> bool:
    """Whether an Arrow batch's ``modality`` column holds image, audio or video."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if "modality" not in batch.schema.names or not batch.num_rows:
        return False
    return bool(pc.any(pc.is_in(batch.column("modality"), value_set=pa.array(list(MEDIA)))).as_py())


def scan(version: Any) -> dict[str, Any]:
    """The media summary of a version (``{"media_records": 0}`` and little else for text)."""
    if not any(pa_any_media(b) for b in version.iter_batches(["modality"])):
        return {"media_records": 0}  # a text version: one pass over a dictionary column, no meta parsed
    by_modality: Counter[str] = Counter()
    formats: dict[str, Counter[str]] = {m: Counter() for m in MEDIA}
    sides: list[float] = []
    pixels: list[float] = []
    resolutions: Counter[str] = Counter()
    durations: dict[str, list[float]] = {"audio": [], "video": []}
    hashes: Counter[str] = Counter()
    hashed = mismatched = captioned = by_ref = unprobed = 0
    mismatch_fields: Counter[str] = Counter()
    for batch in version.iter_batches(["modality", "text", "media_ref", "meta"]):
        cols = {n: batch.column(n).to_pylist() if n in batch.schema.names else [None] * batch.num_rows
                for n in ("modality", "text", "media_ref", "meta")}
        for mod, text, ref, raw in zip(cols["modality"], cols["text"], cols["media_ref"], cols["meta"], strict=True):
            if mod not in MEDIA:
                continue
            by_modality[mod] += 1
            try:
                meta = json.loads(raw) if raw else {}
            except ValueError:
                meta = {}
            meta = meta if isinstance(meta, dict) else {}
            facts = meta.get(mod) if isinstance(meta.get(mod), dict) else None
            if facts is None:
                unprobed += 1
                facts = {}
            formats[mod][str(facts.get("format") or "unknown")] += 1
            if mod in ("image", "video"):
                w, h = facts.get("display_width", facts.get("width")), facts.get("display_height", facts.get("height"))
                if isinstance(w, int | float) and isinstance(h, int | float) and w > 0 and h > 0:
                    if mod == "image":
                        sides.append(float(max(w, h)))
                        pixels.append(float(w) * float(h))
                    resolutions[f"{int(w)}x{int(h)}"] += 1
            if mod in ("audio", "video"):
                d = facts.get("duration_s")
                if isinstance(d, int | float) and d >= 0:
                    durations[mod].append(float(d))
            sha = meta.get("sha256")
            if isinstance(sha, str) and sha:
                hashes[sha] += 1
                hashed += 1
            mm = meta.get("mismatch")
            if mm:
                mismatched += 1
                for item in mm if isinstance(mm, list) else [mm]:
                    if isinstance(item, dict) and item.get("field"):
                        mismatch_fields[str(item["field"])] += 1
            if isinstance(text, str) and text.strip():
                captioned += 1
            if ref:
                by_ref += 1
    media = sum(by_modality.values())
    q_media = refused_media(version)
    refused = sum(q_media.values())
    copies = sum(n - 1 for n in hashes.values() if n > 1)
    return {
        "media_records": media,
        "by_modality": dict(by_modality),
        "formats": {m: dict(c) for m, c in formats.items() if c},
        "encoding_formats": sorted({mime_of(m, f) for m, c in formats.items() for f in c}),
        "resolution": {"long_side_px": _hist(sides, SIDE_EDGES),
                       "megapixels": _hist([p / 1e6 for p in pixels], [0, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8,
                                                                       16, 64]),
                       "top": dict(resolutions.most_common(10))},
        "duration_s": {m: _hist(v, DURATION_EDGES) for m, v in durations.items() if v},
        "corrupt": {**_rate(refused, media + refused), "by_reason": q_media},
        "mismatch": {**_rate(mismatched, media), "by_field": dict(mismatch_fields.most_common())},
        "duplicates": {**_rate(copies, hashed), "groups": sum(1 for n in hashes.values() if n > 1),
                       "without_sha256": media - hashed},
        "captions": _rate(captioned, media),
        "by_reference": by_ref,
        "unprobed": unprobed,
    }
