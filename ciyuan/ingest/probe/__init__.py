"""Media probing: what an image, audio or video file is, read from its bytes and never trusted from
its name or its declared meta.

``probe(src)`` sniffs the format from the first bytes and returns ``(modality, facts)``; the facts
go into the record's meta under ``meta["image"]``, ``meta["audio"]`` or ``meta["video"]`` (keys in
docs/ingest.md). Bad input raises ``MediaError`` with a ``reason`` code and a message naming the
file and tar member. ``compare_declared`` lists where a provider's meta disagrees with the probe.
"""

from __future__ import annotations

from ciyuan.ingest.probe.audio import probe_audio
from ciyuan.ingest.probe.base import REASONS, Limits, MediaError, Source, display_name, no_signature, open_source
from ciyuan.ingest.probe.compare import compare_declared
from ciyuan.ingest.probe.image import probe_image
from ciyuan.ingest.probe.sniff import format_of_name, sniff
from ciyuan.ingest.probe.video import probe_video

__all__ = ["REASONS", "Limits", "MediaError", "compare_declared", "format_of_name", "probe", "probe_audio",
           "probe_image", "probe_video", "sniff"]


def probe(src: Source, *, name: str | None = None, member: str | None = None, modality: str | None = None,
          limits: Limits | None = None, image_check: str = "structure") -> tuple[str, dict]:
    """``(modality, facts)`` of one media file, by its bytes.

    ``modality`` forces one (``--modality``): bytes of another modality are then a
    ``wrong_modality`` error rather than read as what they are.
    """
    name = display_name(src, name)
    start = src.tell() if hasattr(src, "seek") else 0
    with open_source(src, name, member) as op:
        head = op.head
    if hasattr(src, "seek"):
        src.seek(start)  # each probe opens the source again from where the caller had it
    found = sniff(head)
    if found is None:
        raise MediaError("not_media", name, no_signature(head),
                         member=member)
    kind = modality or found[0]
    if kind == "image":
        return kind, probe_image(src, name=name, member=member, limits=limits, check=image_check)
    if kind == "audio":
        return kind, probe_audio(src, name=name, member=member, limits=limits)
    if kind == "video":
        return kind, probe_video(src, name=name, member=member, limits=limits)
    raise ValueError(f"modality must be image, audio or video, not {kind!r}")
