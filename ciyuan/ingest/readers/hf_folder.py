"""Hugging Face ``imagefolder`` / ``audiofolder``: ``metadata.jsonl`` or ``metadata.csv`` with a
``file_name`` column beside the media, at the top or in split folders (``train/``, ``test/``...).

Each metadata row is one record: its ``file_name`` (relative to the metadata file, never outside
the given folder) is probed, its text column (``--text-field``, else ``caption``, ``transcription``,
``sentence`` or ``text``) is the record's text, the other columns are declared meta compared with
the probe, and a split folder's name is ``meta.split``. Media files no row names are read too, with
no declared meta: nothing in the folder is silently left out.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator

from ciyuan.ingest.readers import Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import Meter, check_tree, lines
from ciyuan.ingest.readers.media import TEXT_COLUMNS, code, file_size, head_of, majority, media_item

METADATA = ("metadata.jsonl", "metadata.csv")


def metadata_files(root: str) -> list[tuple[str, str | None]]:
    """``(metadata file, split)`` at the top of ``root`` (split ``None``) and one folder down."""
    if not os.path.isdir(root):
        return []
    out: list[tuple[str, str | None]] = []
    for name in METADATA:
        if os.path.isfile(os.path.join(root, name)):
            out.append((os.path.join(root, name), None))
            break
    for sub in sorted(os.listdir(root)):
        folder = os.path.join(root, sub)
        if sub.startswith(".") or not os.path.isdir(folder) or os.path.islink(folder):
            continue
        for name in METADATA:
            if os.path.isfile(os.path.join(folder, name)):
                out.append((os.path.join(folder, name), sub))
                break
    return out


def _rows(path: str, options: ReadOptions) -> Iterator[tuple[int, dict | None, str | None, bytes]]:
    """``(line, row, problem, raw)`` of one metadata file."""
    if path.endswith(".jsonl"):
        for n, raw, problem in lines(path, options.max_line_bytes):
            if problem:
                yield n, None, problem, raw
                continue
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError as exc:
                yield n, None, f"malformed JSON: {exc}", raw
                continue
            if not isinstance(obj, dict):
                yield n, None, "JSON value is not an object", raw
                continue
            problem = check_tree(obj, depth_limit=True, surrogates=True)
            yield n, (None if problem else obj), problem, raw
        return
    with open(path, encoding="utf-8-sig", newline="") as fh:
        try:
            for n, row in enumerate(csv.DictReader(fh), start=2):
                yield n, dict(row), None, b""
        except (csv.Error, UnicodeDecodeError) as exc:
            yield 0, None, f"metadata.csv unreadable: {exc}", b""


def _inside(root: str, folder: str, file_name: str) -> str | None:
    """The file ``file_name`` names from ``folder``, or ``None`` when it leaves ``root``."""
    if os.path.isabs(file_name) or file_name.startswith(("/", "\\")):
        return None
    full = os.path.normpath(os.path.join(folder, file_name))
    real_root = os.path.realpath(root)
    if os.path.commonpath([os.path.realpath(full), real_root]) != real_root:
        return None
    return full


def read_hf_folder(root: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
    from ciyuan.ingest.readers.media_folder import read_media_folder  # here: it must register after this reader

    listed: set[str] = set()
    metas = metadata_files(root)
    for meta_path, split in metas:
        folder = os.path.dirname(meta_path)
        for n, row, problem, raw in _rows(meta_path, options):
            if row is None:
                yield Bad(meta_path, n, code("bad_metadata", problem or "unreadable row"), raw[:4096])
                continue
            file_name = row.pop("file_name", None)
            if not isinstance(file_name, str) or not file_name.strip():
                yield Bad(meta_path, n, code("bad_metadata", "row has no file_name"), raw[:4096])
                continue
            full = _inside(root, folder, file_name)
            if full is None:
                yield Bad(meta_path, n, code("escaping_path", f"file_name {file_name!r} points outside the folder"),
                          raw[:4096])
                continue
            listed.add(os.path.normcase(full))
            if not os.path.isfile(full):
                yield Bad(meta_path, n, code("missing_file", f"file_name {file_name!r}: no such file"), raw[:4096])
                continue
            text = None
            for col in (options.text_field, *TEXT_COLUMNS):
                if isinstance(row.get(col), str) and row[col].strip():
                    text = row.pop(col)
                    break
            extra = {"path": os.path.relpath(full, root).replace(os.sep, "/")}
            if split:
                extra["split"] = split
            meter(file_size(full))
            yield media_item(full, n, name=os.path.basename(full), options=options, path=full, text=text,
                             declared=row, extra_meta=extra)
    meta_names = {os.path.normcase(p) for p, _ in metas}

    def skip(rel: str) -> bool:
        full = os.path.normcase(os.path.normpath(os.path.join(root, rel)))
        return full in listed or full in meta_names

    def split_of(rel: str) -> dict:
        top = rel.split("/", 1)[0]
        return {"split": top} if "/" in rel and any(s == top for _, s in metas) else {}

    yield from read_media_folder(root, options, meter, skip=skip, extra=split_of)


class HFFolderReader:
    """Hugging Face imagefolder/audiofolder (``metadata.jsonl``/``metadata.csv`` with ``file_name``)."""

    name = "hf-folder"
    suffixes: tuple[str, ...] = ()
    modality = "media"
    reads_folders = True

    def detect(self, path: str, head_bytes: bytes) -> bool:
        return bool(metadata_files(path))

    def modality_of(self, path: str) -> str:
        from ciyuan.ingest.readers.media_folder import MODALITY_SAMPLE, walk

        heads = (head_of(None, None, full) for n, (full, rel, problem) in enumerate(walk(path))
                 if problem is None and n < MODALITY_SAMPLE and os.path.basename(rel) not in METADATA
                 and not rel.endswith((".txt", ".json")))
        return majority(heads)

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        return read_hf_folder(path, options, meter)

    def size(self, path: str) -> int:
        from ciyuan.ingest.readers.media_folder import walk

        total = 0
        for full, rel, problem in walk(path):
            if problem is None and os.path.basename(rel) not in METADATA:
                total += file_size(full)
        return total


register(HFFolderReader())
