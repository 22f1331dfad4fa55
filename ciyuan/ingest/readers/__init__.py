"""Readers of outside formats, one module per format, behind one registry: a new format is one file.

Ingest must account for every input item: each one comes out either as a ``Good`` (a record dict
``{"id", "text", "meta"}``) or as a ``Bad`` (bound for quarantine, with the raw bytes and a reason a
person can act on). A reader is any object with the :class:`Reader` members; ``register(reader)``
makes it a format of ``ciyuan ingest --format`` and of auto-detection. Callers only use
:func:`read_source`, :func:`source_size`, :func:`detect_format` and :func:`get`; they never name a
format module. Shared plumbing (decompression, bounded lines, JSON checks) is in ``common``.

Each reader declares the ``modality`` of its records; ingest counts their tokens with that
modality's default token schedule (``ciyuan.tokens.schedule.default_schedule``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ciyuan.errors import InvalidInput, NotFound
from ciyuan.ingest.readers.common import RAW_KEEP, Meter, head, no_meter, strip_compression


@dataclass
class Good:
    """One good input record: ``record`` is ``{"id": str | None, "text": str, "meta": dict}``."""

    source: str
    line: int
    record: dict


@dataclass
class Bad:
    """One bad input item, destined for quarantine; ``raw`` holds its (possibly truncated) bytes and
    ``member`` where inside ``source`` it sat (a tar member), when it sat inside one."""

    source: str
    line: int
    reason: str
    raw: bytes
    member: str | None = None


@dataclass(frozen=True)
class ReadOptions:
    """What the caller asks of every reader; a reader uses the fields that mean something for it.

    ``max_line_bytes`` bounds one item's bytes (a line, a CSV record, a text file). Media readers
    read ``modality`` (the one the run keeps: bytes of another are quarantined ``wrong_modality``)
    and load media up to ``media_inline_max_bytes`` (larger ones stay on disk as a ``FileSpan``).
    """

    text_field: str = "text"
    id_field: str | None = None
    max_line_bytes: int = 8 * 1024 * 1024
    modality: str | None = None
    media_inline_max_bytes: int = 1 << 20
    timestamp_tolerance_s: float = 1e-4  # robot episodes: |timestamp - frame_index/fps| allowed
    repair_timestamps: bool = False  # robot episodes: rewrite drifting timestamps from the frame index


@runtime_checkable
class Reader(Protocol):
    """One input format.

    ``suffixes`` are the file endings it takes (lower case, after any ``.gz``/``.zst``), used by
    :func:`detect_format`; ``detect`` is asked only when no suffix matched (``head_bytes`` is the
    first 4 KiB, decompressed; ``b""`` for a folder), so a reader may sniff content or take folders.
    ``read`` yields every item as ``Good`` or ``Bad`` and raises ``CiyuanError`` only for a problem
    with the whole source, before its first item.

    Optional: ``reads_folders = True`` lets ``read`` be given a folder, and ``size(path)`` says how
    many bytes ``read`` will report to its meter when that is not the file's size.
    ``suffix_needs_detect = True`` makes a suffix match count only when ``detect`` agrees (HF media
    Parquet shares ``.parquet`` with the text reader). A reader whose records' modality depends on
    the bytes declares ``modality = "media"`` and ``modality_of(path) -> str`` (the modality most of
    its items sniff as), and gives its records ``media`` bytes or a ``media_src`` ``FileSpan``.
    """

    name: str
    suffixes: tuple[str, ...]
    modality: str

    def detect(self, path: str, head_bytes: bytes) -> bool: ...

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]: ...


_READERS: dict[str, Reader] = {}


def register(reader: Reader) -> Reader:
    """Add ``reader`` as the format ``reader.name`` (the name must be new) and return it."""
    if not isinstance(reader, Reader):
        raise InvalidInput(
            f"{reader!r} is not a reader",
            hint="give it name, suffixes, modality, detect(path, head_bytes) and read(path, options, meter)",
        )
    if reader.name in _READERS or reader.name == "auto":
        raise InvalidInput(f"input format {reader.name!r} is already registered", hint="pick another name")
    for suffix in reader.suffixes:
        if not suffix.startswith(".") or suffix != suffix.lower():
            raise InvalidInput(f"reader {reader.name!r}: suffix {suffix!r} must be lower case and start with '.'")
    _READERS[reader.name] = reader
    return reader


def unregister(name: str) -> None:
    """Remove a format (tests that add one remove it after)."""
    _READERS.pop(name, None)


def names() -> list[str]:
    """Registered format names, in registration order."""
    return list(_READERS)


def get(name: str) -> Reader:
    """The reader of format ``name``, or an error listing the formats there are."""
    reader = _READERS.get(name)
    if reader is None:
        raise InvalidInput(f"unknown input format {name!r}", hint=f"use one of: auto, {', '.join(_READERS)}")
    return reader


def detect_format(path: str) -> str:
    """The format of ``path``: by its name (ignoring .gz/.zst), else by asking each reader; folders are text."""
    is_dir = os.path.isdir(path)
    inner, _ = strip_compression(os.path.basename(path))
    ext = os.path.splitext(inner)[1]
    sniffed = b"" if is_dir or not os.path.isfile(path) else head(path)
    if not is_dir:
        for reader in _READERS.values():
            if ext and ext in reader.suffixes:
                if getattr(reader, "suffix_needs_detect", False) and not reader.detect(path, sniffed):
                    continue
                return reader.name
    for reader in _READERS.values():
        if (is_dir and not getattr(reader, "reads_folders", False)) or not reader.detect(path, sniffed):
            continue
        return reader.name
    suffixes = "/".join(r.suffixes[0] for r in _READERS.values() if r.suffixes)
    raise InvalidInput(
        f"cannot tell the format of {path!r} from its extension {ext or '(none)'!r}",
        hint=f"rename it to {suffixes} (optionally .gz or .zst), or pass the format explicitly",
    )


def reader_for(path: str, fmt: str = "auto") -> Reader:
    """The reader that will read ``path`` when asked for ``fmt`` (``auto`` detects it)."""
    return get(detect_format(os.fspath(path)) if fmt == "auto" else fmt)


def source_size(path: str, fmt: str = "auto") -> int:
    """Bytes :func:`read_source` will read from ``path`` (a folder: its text files), for progress totals."""
    path = os.fspath(path)
    try:
        reader = reader_for(path, fmt) if os.path.exists(path) else None
    except InvalidInput:
        reader = None
    size = getattr(reader, "size", None)
    if size is not None:
        return size(path)
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def read_source(
    path: str,
    *,
    fmt: str = "auto",
    text_field: str = "text",
    id_field: str | None = None,
    max_line_bytes: int = 8 * 1024 * 1024,
    on_bytes: Meter | None = None,
    modality: str | None = None,
    media_inline_max_bytes: int = 1 << 20,
    timestamp_tolerance_s: float = 1e-4,
    repair_timestamps: bool = False,
) -> Iterator[Good | Bad]:
    """Stream every item of ``path`` as a ``Good`` record or a ``Bad`` for quarantine, in input order.

    Problems with the whole source (missing file, unknown format, no text column) raise
    ``CiyuanError`` before the first item; problems with single items never raise.
    ``max_line_bytes`` bounds a line, a CSV record (quoted newlines included) and a text file.
    ``on_bytes`` hears how many more bytes of the input were read (compressed bytes for .gz/.zst),
    adding up to about :func:`source_size`. ``timestamp_tolerance_s`` and ``repair_timestamps``
    are the robot episode readers' timestamp check (docs/ingest.md, "Robot episodes").
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise NotFound(f"input {path!r} does not exist", hint="check the path")
    reader = reader_for(path, fmt)
    if max_line_bytes < 1:
        raise InvalidInput(f"max_line_bytes must be positive, got {max_line_bytes}")
    if os.path.isdir(path) and not getattr(reader, "reads_folders", False):
        takers = [r.name for r in _READERS.values() if getattr(r, "reads_folders", False)]
        raise InvalidInput(
            f"{path!r} is a folder; only the {'/'.join(takers) or 'no'} format reads folders",
            hint=f"use fmt={takers[0]!r}" if takers else "give the files inside it",
        )
    options = ReadOptions(text_field=text_field, id_field=id_field, max_line_bytes=max_line_bytes,
                          modality=modality, media_inline_max_bytes=media_inline_max_bytes,
                          timestamp_tolerance_s=timestamp_tolerance_s, repair_timestamps=repair_timestamps)
    return reader.read(path, options, on_bytes or no_meter)


# The built-in formats register themselves on import; detection tries them in this order (LeRobot
# folders, RLDS folders and HDF5 demos, then media folder layouts, before the text folder reader, which takes any
# folder; HF media Parquet before Parquet).
from ciyuan.ingest.readers import jsonl, lerobot, rlds, hdf5_demos, hf_parquet, parquet, csv  # noqa: E402, F401, I001
from ciyuan.ingest.readers import webdataset, hf_folder, media_folder, text, rdf  # noqa: E402, F401, I001

__all__ = [
    "RAW_KEEP",
    "Bad",
    "Good",
    "ReadOptions",
    "Reader",
    "detect_format",
    "get",
    "names",
    "read_source",
    "reader_for",
    "register",
    "source_size",
    "unregister",
]
