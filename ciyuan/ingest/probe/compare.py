"""What a provider declared against what the probe found: each disagreement is one mismatch row.

Tokens always come from the probe; a mismatch is recorded (and counted in the quality report) so a
provider who writes ``width: 4096`` for a 640-pixel image is seen, not paid.
"""

from __future__ import annotations

import math

from ciyuan.ingest.probe.sniff import format_of_name, same_family

MODALITIES = ("image", "audio", "video")
# declared key -> probed key (aliases providers use); a key absent from the probe is not compared
_ALIASES = {
    "width": "width", "height": "height", "duration_s": "duration_s", "duration": "duration_s",
    "fps": "fps", "frame_rate": "fps", "frames": "frames", "num_frames": "frames", "n_frames": "frames",
    "sample_rate": "sample_rate", "sampling_rate": "sample_rate", "channels": "channels",
    "mode": "mode", "format": "format", "codec": "codec", "orientation": "orientation",
}
_CODEC_ALIASES = {"avc": "h264", "avc1": "h264", "x264": "h264", "h.264": "h264", "h265": "hevc", "h.265": "hevc",
                  "hvc1": "hevc", "x265": "hevc", "av01": "av1", "libdav1d": "av1", "libaom-av1": "av1",
                  "mp3float": "mp3", "vp09": "vp9", "libvpx-vp9": "vp9", "pcm_16": "pcm_s16le"}


def _number(v) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _agrees(key: str, declared, probed) -> bool:
    if key in ("format", "codec", "mode"):
        d, p = str(declared).strip().lower().lstrip("."), str(probed).lower()
        if key == "format":
            d = format_of_name(f"x.{d}") or d
            return same_family(d, p)
        if key == "codec":
            return _CODEC_ALIASES.get(d, d) == _CODEC_ALIASES.get(p, p)
        return d == p
    d = _number(declared)
    if d is None:
        return False
    p = float(probed)
    if key == "duration_s":
        return abs(d - p) <= max(0.5, 0.01 * p)  # providers round durations to the second
    if key == "fps":
        return abs(d - p) <= 0.01 * p + 0.01  # 29.97 declared as 30 agrees
    return d == p


def _facts(probed: dict) -> tuple[str | None, dict]:
    """``(modality, facts)`` from a probe's facts or from a meta that holds them under their key."""
    for m in MODALITIES:
        if isinstance(probed.get(m), dict):
            return m, probed[m]
    return None, probed


def compare_declared(declared_meta: dict, probed: dict, *, name: str | None = None) -> list[dict]:
    """Disagreements between a record's declared meta and the probe: ``[{field, declared, probed}]``.

    ``declared_meta`` is the record's meta as the provider gave it: flat keys (``width``,
    ``duration_s``, ``fps``...), or the same nested under ``image``/``audio``/``video``. ``probed``
    is a probe's facts or ``{"image": facts}``. ``name``, when given, compares the file's extension
    with the format the bytes are (field ``extension``; ``.mov`` for an MP4 is no lie). A declared
    size agrees with the stored or the displayed (EXIF-turned) size.
    """
    modality, facts = _facts(probed)
    declared = dict(declared_meta or {})
    if modality and isinstance(declared.get(modality), dict):
        declared = {**declared, **declared[modality]}
    out: list[dict] = []
    if name is not None:
        claimed = format_of_name(name)
        if claimed and facts.get("format") and not same_family(claimed, facts["format"]):
            out.append({"field": "extension", "declared": name.rpartition(".")[2], "probed": facts["format"]})
    seen: set[str] = set()
    sizes = {}
    for key, value in declared.items():
        probed_key = _ALIASES.get(key)
        if probed_key is None or probed_key in seen or probed_key not in facts or facts[probed_key] is None:
            continue
        seen.add(probed_key)
        if probed_key in ("width", "height"):
            sizes[probed_key] = value
            continue
        if not _agrees(probed_key, value, facts[probed_key]):
            out.append({"field": key, "declared": value, "probed": facts[probed_key]})
    if sizes:
        out.extend(_size_mismatches(sizes, facts))
    return out


def _size_mismatches(sizes: dict, facts: dict) -> list[dict]:
    stored = (facts.get("width"), facts.get("height"))
    shown = (facts.get("display_width", stored[0]), facts.get("display_height", stored[1]))
    for w, h in (stored, shown):
        if all(_agrees(k, v, w if k == "width" else h) for k, v in sizes.items()):
            return []
    return [{"field": k, "declared": v, "probed": facts[k]} for k, v in sizes.items() if not _agrees(k, v, facts[k])]
