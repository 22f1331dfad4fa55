"""A folder of media files with sidecars: ``a.jpg`` + ``a.txt`` (caption or transcript, the record's
text) + ``a.json`` (declared meta, compared with the probe), recursive, sorted, hidden entries skipped.

Every other file is a media candidate and is read by its bytes; a file that is no media is
quarantined (``media.not_media``), a sidecar with no media beside it too (``media.orphan_sidecar``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from ciyuan.ingest.readers import Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import Meter
from ciyuan.ingest.readers.media import (
    META_SIDECARS,
    TEXT_SIDECARS,
    code,
    decode_text,
    file_size,
    head_of,
    majority,
    media_item,
    parse_json_sidecar,
)

SIDECARS = TEXT_SIDECARS + META_SIDECARS
# the dataset's own documents, not items: never read as media (a Hugging Face repo has a README.md)
DOCUMENTS = (".md", ".yaml", ".yml", ".gitattributes")
DOCUMENT_NAMES = ("readme", "license", "licence", "copying", "notice")
SNIFF_FILES = 200  # files looked at to tell a media folder from a text folder
MODALITY_SAMPLE = 2000  # files sniffed to pick the modality of a folder


def walk(root: str, skip=lambda rel: False) -> Iterator[tuple[str, str, str | None]]:
    """``(full path, path inside root, problem)`` of every file under ``root``, sorted, hidden entries
    skipped, links to folders not followed; a folder that cannot be listed is an entry with its problem."""
    if os.path.isfile(root):  # one media file given: it and its sidecars beside it
        base = os.path.splitext(root)[0]
        yield root, os.path.basename(root), None
        for ext in SIDECARS:
            if os.path.isfile(base + ext) and base + ext != root:
                yield base + ext, os.path.basename(base + ext), None
        return
    errors: list[tuple[str, str, str | None]] = []

    def unlisted(exc: OSError) -> None:
        where = exc.filename or root
        errors.append((where, os.path.relpath(where, root).replace(os.sep, "/"),
                       f"cannot read folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlisted):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield from errors
        errors.clear()
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if not skip(rel) and not is_document(name):
                yield full, rel, None
    yield from errors


def is_document(name: str) -> bool:
    """A README, licence or card file of the dataset (``README.md``, ``LICENSE``, ``dataset.yaml``)."""
    lower = name.lower()
    return lower.endswith(DOCUMENTS) or os.path.splitext(lower)[0] in DOCUMENT_NAMES


def _stem(rel: str) -> tuple[str, str]:
    base, ext = os.path.splitext(rel)
    return base, ext.lower()


def has_media(root: str, limit: int = SNIFF_FILES) -> bool:
    from ciyuan.ingest.probe.sniff import sniff

    for n, (full, rel, problem) in enumerate(walk(root)):
        if n >= limit:
            return False
        if problem is None and _stem(rel)[1] not in SIDECARS and sniff(head_of(None, None, full)):
            return True
    return False


def _by_folder(entries: Iterator[tuple[str, str, str | None]]) -> Iterator[list[tuple[str, str, str | None]]]:
    """The walk's entries one folder at a time (sidecars sit beside their media): memory holds one
    folder's names, not the whole tree's."""
    group: list[tuple[str, str, str | None]] = []
    folder = None
    for entry in entries:
        here = os.path.dirname(entry[1]) if entry[2] is None else None
        if group and (here != folder or entry[2] is not None):
            yield group
            group = []
        folder = here
        group.append(entry)
    if group:
        yield group


def read_media_folder(root: str, options: ReadOptions, meter: Meter, skip=lambda rel: False,
                      extra=lambda rel: {}) -> Iterator[Good | Bad]:
    """The records of ``root``: per media file, its sidecars joined by stem (same folder, same name)."""
    for entries in _by_folder(walk(root, skip)):
        yield from _folder_items(entries, options, meter, extra)


def _folder_items(entries: list[tuple[str, str, str | None]], options: ReadOptions, meter: Meter,
                  extra) -> Iterator[Good | Bad]:
    stems: dict[str, dict[str, str]] = {}
    for full, rel, problem in entries:
        if problem is None:
            base, ext = _stem(rel)
            if ext in SIDECARS:
                stems.setdefault(base, {})[ext] = full
    used: set[str] = set()
    for full, rel, problem in entries:
        if problem is not None:
            yield Bad(full, 0, code("unreadable", problem), b"")
            continue
        base, ext = _stem(rel)
        if ext in SIDECARS:
            continue
        meter(file_size(full))
        side = stems.get(base, {})
        used.add(base)
        text, declared = None, {}
        meta = {"path": rel, **extra(rel)}
        bad = None
        if ".txt" in side:
            got = decode_text(_read(side[".txt"], options.max_line_bytes), os.path.basename(side[".txt"]))
            if isinstance(got, tuple):
                bad = got[1]
            else:
                text = got if got.strip() else None
        if ".json" in side and bad is None:
            got_meta = parse_json_sidecar(_read(side[".json"], options.max_line_bytes), os.path.basename(side[".json"]))
            if isinstance(got_meta, str):
                bad = got_meta
            else:
                declared = got_meta
        if bad is not None:
            yield Bad(full, 0, code("bad_sidecar", bad), b"")
            continue
        yield media_item(full, 0, name=os.path.basename(full), options=options, path=full, text=text,
                         declared=declared, extra_meta=meta)
    for base, side in sorted(stems.items()):
        if base not in used:
            for full in side.values():
                yield Bad(full, 0, code("orphan_sidecar", f"{os.path.basename(full)}: no media file beside it "
                                        "with the same name"), _read(full, 4096))


def _read(path: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError:
        return b""


class MediaFolderReader:
    """Media files of a folder with ``.txt``/``.json`` sidecars of the same stem."""

    name = "media-folder"
    suffixes: tuple[str, ...] = ()
    modality = "media"
    reads_folders = True

    def detect(self, path: str, head_bytes: bytes) -> bool:
        from ciyuan.ingest.probe.sniff import sniff

        if os.path.isfile(path):
            return sniff(head_bytes) is not None  # one media file
        return os.path.isdir(path) and has_media(path)

    def modality_of(self, path: str) -> str:
        heads = (head_of(None, None, full) for n, (full, rel, problem) in enumerate(walk(path))
                 if problem is None and n < MODALITY_SAMPLE and _stem(rel)[1] not in SIDECARS)
        return majority(heads)

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        return read_media_folder(path, options, meter)

    def size(self, path: str) -> int:
        total = 0
        for full, rel, problem in walk(path):
            if problem is None and _stem(rel)[1] not in SIDECARS:
                total += file_size(full)
        return total


register(MediaFolderReader())
