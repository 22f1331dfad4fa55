"""What every media layout shares: one media object in, one ``Good`` record or one ``Bad`` out.

The bytes decide (``probe.sniff``), never the name: a ``.png`` holding a WAV is read as audio, with
the lie recorded in ``meta.mismatch``; bytes that are no media are quarantined ``media.not_media``.
A record keeps the bytes exactly: small ones loaded (``media``), large ones left on disk as a
``FileSpan`` (``media_src``) for the builder to stream into a blob, so a 2 GB video is probed, not
loaded. Quarantine reasons start with a stable code, ``media.<code>: <what and where>``
(docs/ingest.md lists them).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable
from typing import Any

from ciyuan.ingest.readers import Bad, Good, ReadOptions
from ciyuan.ingest.readers.common import check_tree, jsonable
from ciyuan.store.blobs import FileSpan

HEAD = 4096
TEXT_SIDECARS = (".txt",)
META_SIDECARS = (".json",)
MODALITIES = ("image", "audio", "video")
# meta keys ingest writes itself; a declared value under one of these names is kept as declared_<key>
OWN_KEYS = (*MODALITIES, "source", "line", "sha256", "mismatch")
TEXT_COLUMNS = ("caption", "transcription", "sentence", "text")  # HF's usual names for a record's text


def code(reason: str, detail: str) -> str:
    """A quarantine reason: the stable code first (counted by kind), then what a person needs."""
    return f"media.{reason}: {detail}"


def file_size(path: str) -> int:
    """The size of ``path``, 0 when it cannot be read (the item itself then says why)."""
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def head_of(data: bytes | None, span: FileSpan | None, path: str | None) -> bytes:
    if data is not None:
        return bytes(data[:HEAD])
    try:
        if span is not None:
            with span.open() as fh:
                return fh.read(HEAD)
        if path is not None:
            with open(path, "rb") as fh:
                return fh.read(HEAD)
    except OSError:
        return b""
    return b""


def majority(heads: Iterable[bytes], default: str = "image") -> str:
    """The modality most of ``heads`` sniff as (ties: image, audio, video order); ``default`` when none."""
    from ciyuan.ingest.probe.sniff import sniff

    seen: Counter[str] = Counter()
    for h in heads:
        found = sniff(h)
        if found:
            seen[found[0]] += 1
    if not seen:
        return default
    best = max(seen.values())
    return next(m for m in MODALITIES if seen[m] == best)


def parse_json_sidecar(raw: bytes, where: str) -> dict | str:
    """A ``.json`` sidecar's object, or why it cannot be one."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return f"{where}: not valid UTF-8 JSON: {exc}"
    if not isinstance(obj, dict):
        return f"{where}: a JSON sidecar must be an object"
    problem = check_tree(obj, depth_limit=True, surrogates=True)
    return f"{where}: {problem}" if problem else obj


def decode_text(raw: bytes, where: str) -> str | tuple[None, str]:
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"{where}: invalid UTF-8 at byte offset {exc.start}"


def media_item(
    source: str,
    line: int,
    *,
    name: str,
    options: ReadOptions,
    data: bytes | None = None,
    span: FileSpan | None = None,
    path: str | None = None,
    member: str | None = None,
    bad_source: str | None = None,
    text: str | None = None,
    declared: dict | None = None,
    extra_meta: dict | None = None,
) -> Good | Bad:
    """Probe one media object and make its record, or its quarantine row.

    Exactly one of ``data`` (bytes in memory), ``span`` (bytes on disk, not loaded) or ``path`` (a
    whole file: loaded when small, else a span) is given. ``name`` is the file or member name whose
    extension is compared with the bytes; ``source`` is what the record's ``meta.source`` is made from
    (``bad_source``, default ``source``, names the quarantine row, with ``member``).
    """
    from ciyuan.ingest.probe import MediaError, compare_declared, probe  # Pillow, PyAV: only when media is read

    where = bad_source or source
    if path is not None:
        try:
            size = os.path.getsize(path)
        except OSError as exc:
            return Bad(where, line, code("unreadable", f"{name}: {exc.strerror or exc}"), b"", member)
        if size <= options.media_inline_max_bytes:
            try:
                with open(path, "rb") as fh:
                    data = fh.read(size + 1)
            except OSError as exc:
                return Bad(where, line, code("unreadable", f"{name}: {exc.strerror or exc}"), b"", member)
        else:
            span = FileSpan(path, 0, size)
    if span is not None and data is None and span.size <= options.media_inline_max_bytes:
        data = span.read()
        span = None
    if data is not None:
        src: Any = data
    elif path is not None:
        src = path  # the probes read a real file natively (FFmpeg, libsndfile): faster than a window
    else:
        assert span is not None
        src = span.open()
    try:
        modality, facts = probe(src, name=name, member=member, modality=options.modality)
    except MediaError as exc:
        return Bad(where, line, code(exc.reason, str(exc)), head_of(data, span, path), member)
    finally:
        if hasattr(src, "close"):
            src.close()
    declared = dict(declared or {})
    meta: dict = {}
    for key, value in declared.items():
        meta[f"declared_{key}" if key in OWN_KEYS else key] = jsonable(value)
    meta.update(extra_meta or {})
    meta[modality] = facts
    mismatch = compare_declared(declared, {modality: facts}, name=name)
    if mismatch:
        meta["mismatch"] = jsonable(mismatch)
    record: dict = {"id": None, "text": text, "modality": modality, "meta": meta}
    if data is not None:
        record["media"] = bytes(data)
    else:
        record["media_src"] = span
    return Good(source, line, record)
