"""Media filters: limits on probed facts, audio silence and clipping from decoded samples, caption length.

``media_filter`` reads only what the probe wrote at ingest (``meta["image"|"audio"|"video"]``, see
docs/ingest.md), never a provider's declared numbers; a limit that needs a fact the record lacks
rejects it as ``media_filter.no_probed_facts`` rather than letting an unmeasured item through.
Every limit is off at 0. ``audio_quality`` decodes the samples (the probe does not keep them) and
writes what it measured to ``meta["audio_quality"]``. ``caption_length`` judges the record's text
(a caption or transcript) by characters and by words as the text steps count them (CJK fairly).
"""

from __future__ import annotations

import numpy as np

from ciyuan.curate import media
from ciyuan.curate.steps.base import Param, Step, modality_of
from ciyuan.curate.steps.media_dedup import MEDIA
from ciyuan.curate.text import words as text_words


def _dims(modality: str, facts: dict) -> tuple[int, int] | None:
    """Width and height as shown (an image's EXIF orientation applied)."""
    if modality == "image":
        w, h = facts.get("display_width", facts.get("width")), facts.get("display_height", facts.get("height"))
    else:
        w, h = facts.get("width"), facts.get("height")
    return (int(w), int(h)) if w and h else None


class MediaFilter(Step):
    name = "media_filter"
    kind = "filter"
    modalities = MEDIA
    description = (
        "Reject media outside limits on probed facts: side length, aspect ratio, duration, file size, frame rate "
        "(0 disables a limit)."
    )
    params = (
        Param("min_side", "int", 0, "Reject images and video whose shorter side has fewer pixels."),
        Param("max_side", "int", 0, "Reject images and video whose longer side has more pixels."),
        Param("min_aspect", "float", 0.0, "Reject images and video narrower than this width/height."),
        Param("max_aspect", "float", 0.0, "Reject images and video wider than this width/height."),
        Param("min_duration_s", "float", 0.0, "Reject audio and video shorter than this many seconds."),
        Param("max_duration_s", "float", 0.0, "Reject audio and video longer than this many seconds."),
        Param("min_bytes", "int", 0, "Reject media files smaller than this many bytes."),
        Param("max_bytes", "int", 0, "Reject media files larger than this many bytes."),
        Param("min_fps", "float", 0.0, "Reject video below this frame rate."),
        Param("max_fps", "float", 0.0, "Reject video above this frame rate."),
    )

    def _missing(self, record: dict, fact: str) -> None:
        m = modality_of(record)
        hint = "ingest the file so the probe measures it"
        self.reject(record, "no_probed_facts", f"media_filter: no probed {fact} in meta.{m} ({hint})")

    def process(self, record: dict) -> None:
        m = modality_of(record)
        facts = (record.get("meta") or {}).get(m) or {}
        if m in ("image", "video") and (self.min_side or self.max_side or self.min_aspect or self.max_aspect):
            dims = _dims(m, facts)
            if dims is None:
                return self._missing(record, "width and height")
            w, h = dims
            if self.min_side and min(w, h) < self.min_side:
                return self.reject(record, "too_small", f"media_filter: {w}x{h}, shorter side < {self.min_side} px")
            if self.max_side and max(w, h) > self.max_side:
                return self.reject(record, "too_large", f"media_filter: {w}x{h}, longer side > {self.max_side} px")
            ratio = w / h
            if self.min_aspect and ratio < self.min_aspect:
                return self.reject(record, "aspect_ratio",
                                   f"media_filter: aspect {ratio:.3f} ({w}x{h}) < {self.min_aspect}")  # fmt: skip
            if self.max_aspect and ratio > self.max_aspect:
                return self.reject(record, "aspect_ratio",
                                   f"media_filter: aspect {ratio:.3f} ({w}x{h}) > {self.max_aspect}")  # fmt: skip
        if m in ("audio", "video") and (self.min_duration_s or self.max_duration_s):
            dur = facts.get("duration_s")
            if dur is None:
                return self._missing(record, "duration_s")
            if self.min_duration_s and dur < self.min_duration_s:
                return self.reject(record, "too_short", f"media_filter: {dur:g} s < {self.min_duration_s:g} s")
            if self.max_duration_s and dur > self.max_duration_s:
                return self.reject(record, "too_long", f"media_filter: {dur:g} s > {self.max_duration_s:g} s")
        if m == "video" and (self.min_fps or self.max_fps):
            fps = facts.get("fps")
            if not fps:
                return self._missing(record, "fps")
            if self.min_fps and fps < self.min_fps:
                return self.reject(record, "low_fps", f"media_filter: {fps:g} fps < {self.min_fps:g}")
            if self.max_fps and fps > self.max_fps:
                return self.reject(record, "high_fps", f"media_filter: {fps:g} fps > {self.max_fps:g}")
        if self.min_bytes or self.max_bytes:
            size = facts.get("bytes")
            if size is None and record.get("media"):
                size = len(record["media"])
            if size is None:
                return self._missing(record, "bytes")
            if self.min_bytes and size < self.min_bytes:
                return self.reject(record, "file_too_small", f"media_filter: {size} bytes < {self.min_bytes}")
            if self.max_bytes and size > self.max_bytes:
                return self.reject(record, "file_too_large", f"media_filter: {size} bytes > {self.max_bytes}")
        return None


def silence_and_clipping(x: np.ndarray, sr: int, silence_db: float, clip_level: float,
                         frame_s: float = 0.02) -> tuple[float, float]:  # fmt: skip
    """``(share of silent frames, share of clipped samples)`` of float samples ``x[frames, channels]``.

    A frame (``frame_s`` long, all channels) is silent when its RMS is below ``silence_db`` dBFS; a
    sample is clipped when its magnitude reaches ``clip_level`` of full scale, in any channel.
    """
    if not len(x):
        return 1.0, 0.0
    n = max(1, int(sr * frame_s))
    frames = len(x) // n
    if frames:
        body = x[: frames * n].reshape(frames, n * x.shape[1]).astype(np.float64)
        rms = np.sqrt((body**2).mean(axis=1))
    else:
        rms = np.sqrt((x.astype(np.float64) ** 2).mean(keepdims=True))
    silent = float((20 * np.log10(np.maximum(rms, 1e-12)) < silence_db).mean())
    clipped = float((np.abs(x) >= clip_level).any(axis=1).mean())
    return silent, clipped


class AudioQuality(Step):
    name = "audio_quality"
    kind = "filter"
    modalities = frozenset({"audio"})
    description = "Reject audio that is mostly silence or clipped, measured on the decoded samples."
    params = (
        Param("silence_db", "float", -40.0, "A 20 ms frame quieter than this RMS (dBFS) is silence."),
        Param("max_silence_ratio", "float", 0.5, "Reject when more than this share of frames is silence (1 disables)."),
        Param("clip_level", "float", 0.999, "A sample at or above this share of full scale is clipped."),
        Param("max_clipping_ratio", "float", 0.001,
              "Reject when more than this share of samples is clipped (1 disables)."),  # fmt: skip
    )

    def process(self, record: dict) -> None:
        try:
            with media.open_media(record) as src:
                x, sr = media.decode_audio(src)
        except media.NoMedia as exc:
            self.stats.counters[f"skipped_{exc.reason}"] += 1
            self.stats.extra.setdefault("skipped", {})[record["id"]] = str(exc)
            return
        silent, clipped = silence_and_clipping(x, sr, self.silence_db, self.clip_level)
        record.setdefault("meta", {})["audio_quality"] = {"silence_ratio": round(silent, 4),
                                                          "clipping_ratio": round(clipped, 6)}  # fmt: skip
        if silent > self.max_silence_ratio:
            self.reject(record, "silence",
                        f"audio_quality: {silent:.1%} of 20 ms frames below {self.silence_db:g} dBFS "
                        f"> {self.max_silence_ratio:.1%}")  # fmt: skip
        elif clipped > self.max_clipping_ratio:
            self.reject(record, "clipping",
                        f"audio_quality: {clipped:.3%} of samples at >= {self.clip_level:g} of full scale "
                        f"> {self.max_clipping_ratio:.3%}")  # fmt: skip


class CaptionLength(Step):
    name = "caption_length"
    kind = "filter"
    modalities = MEDIA
    description = "Reject media whose caption or transcript (the record's text) is missing, too short or too long."
    params = (
        Param("min_chars", "int", 1, "Reject captions with fewer characters, end spaces not counted (0 disables)."),
        Param("max_chars", "int", 0, "Reject captions with more characters (0 disables)."),
        Param("min_words", "int", 0, "Reject captions with fewer words, as the text steps count words (0 disables)."),
        Param("max_words", "int", 0, "Reject captions with more words (0 disables)."),
    )

    @staticmethod
    def words(text: str) -> int:
        """Words as every text step measures them (:func:`ciyuan.curate.text.words`: CJK fairly)."""
        return len(text_words(text))

    def process(self, record: dict) -> None:
        text = (record.get("text") or "").strip()
        if not text:
            if self.min_chars or self.min_words:
                self.reject(record, "no_caption", f"caption_length: {modality_of(record)} record has no caption text")
            return
        n = len(text)
        if self.min_chars and n < self.min_chars:
            return self.reject(record, "too_short", f"caption_length: {n} characters < {self.min_chars}")
        if self.max_chars and n > self.max_chars:
            return self.reject(record, "too_long", f"caption_length: {n} characters > {self.max_chars}")
        if self.min_words or self.max_words:
            w = self.words(text)
            if self.min_words and w < self.min_words:
                return self.reject(record, "too_few_words", f"caption_length: {w} words < {self.min_words}")
            if self.max_words and w > self.max_words:
                return self.reject(record, "too_many_words", f"caption_length: {w} words > {self.max_words}")
        return None
