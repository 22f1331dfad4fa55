"""WebDataset ``.tar`` shards: members grouped by key (``key.jpg`` + ``key.txt``/``key.json``/``key.cls``).

The key is a member's path up to the first dot of its name, as WebDataset cuts it; consecutive
members with one key are one sample. ``.txt`` is the record's text, ``.json`` declared meta,
``.cls`` the class label (``meta.cls``); every other member is media, read by its bytes. A member is
never extracted: its bytes are read from its offset inside the tar (a large one is left there for
the builder to stream into a blob), so memory holds one sample's sidecars, not the shard.

Quarantined, naming the tar and the member: a member whose name escapes its folder (absolute,
``..``) ``media.escaping_member``; links and devices ``media.special_member``; a sample with no
media member ``media.no_media_member``; a member that runs past the end of the file
``media.truncated``; and whatever its probe refuses.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
from collections.abc import Iterator

from ciyuan.errors import InvalidInput
from ciyuan.ingest.readers import Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import Meter
from ciyuan.ingest.readers.media import code, decode_text, majority, media_item, parse_json_sidecar
from ciyuan.store.blobs import FileSpan

TEXT_EXT = ("txt", "text", "caption", "transcript")
SIDECAR_EXT = (*TEXT_EXT, "json", "cls")
MODALITY_SAMPLE = 500


def split_key(name: str) -> tuple[str, str]:
    """``("dir/key", "ext")`` of a member name, cut at the first dot of the base name (WebDataset's rule)."""
    folder, base = posixpath.split(name)
    stem, dot, ext = base.partition(".")
    return posixpath.join(folder, stem) if folder else stem, ext.lower() if dot else ""


def escapes(name: str) -> bool:
    """A member name that would land outside the folder it is unpacked into."""
    drive = len(name) > 1 and name[1] == ":"
    return name.startswith(("/", "\\")) or drive or ".." in name.replace("\\", "/").split("/")


def _open(path: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, "r:")  # uncompressed only: members are read in place, never unpacked
    except tarfile.ReadError as exc:
        raise InvalidInput(f"{path}: not an uncompressed tar ({exc})",
                           hint="WebDataset shards are read as plain .tar; decompress a .tar.gz first") from exc


def _members(tf: tarfile.TarFile, path: str, size: int) -> Iterator[tarfile.TarInfo | Bad]:
    """Members one at a time (the TarFile's own list is emptied as it goes: bounded memory)."""
    while True:
        try:
            m = tf.next()
        except tarfile.TarError as exc:
            yield Bad(path, 0, code("truncated", f"{os.path.basename(path)}: the tar breaks after byte "
                                    f"{tf.offset:,}: {exc}"), b"")
            return
        if m is None:
            return
        tf.members.clear()
        if m.isfile() and m.offset_data + m.size > size:
            yield Bad(path, 0, code("truncated", f"member {m.name} declares {m.size:,} bytes, the tar ends "
                                    f"{m.offset_data + m.size - size:,} bytes early"), b"", m.name)
            return
        yield m


def read_tar(path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
    size = os.path.getsize(path)
    tf = _open(path)
    group: list[tarfile.TarInfo] = []
    key = None
    try:
        for m in _members(tf, path, size):
            if isinstance(m, Bad):
                if group:
                    yield from _sample(path, key or "", group, options)
                    group = []
                yield m
                return
            if m.isdir():
                continue
            meter(m.size + 512)
            if escapes(m.name):
                yield Bad(path, 0, code("escaping_member", f"member {m.name!r} escapes its folder"), b"", m.name)
                continue
            if not m.isfile() or m.issparse():
                what = f"a link to {m.linkname!r}" if m.issym() or m.islnk() else "not a regular file"
                yield Bad(path, 0, code("special_member", f"member {m.name!r} is {what}"), b"", m.name)
                continue
            k, _ = split_key(m.name)
            if k != key and group:
                yield from _sample(path, key or "", group, options)
                group = []
            key = k
            group.append(m)
        if group:
            yield from _sample(path, key or "", group, options)
    finally:
        tf.close()


def _sample(path: str, key: str, group: list[tarfile.TarInfo], options: ReadOptions) -> Iterator[Good | Bad]:
    text, declared, extra, problem = None, {}, {"key": key}, None
    media = []
    for m in group:
        ext = split_key(m.name)[1]
        if ext not in SIDECAR_EXT:
            media.append(m)
            continue
        raw = FileSpan(path, m.offset_data, min(m.size, options.max_line_bytes)).read()
        if ext in TEXT_EXT:
            got = decode_text(raw, m.name)
            if isinstance(got, tuple):
                problem = got[1]
            elif got.strip():
                text = got
        elif ext == "json":
            obj = parse_json_sidecar(raw, m.name)
            if isinstance(obj, str):
                problem = obj
            else:
                declared = obj
        else:  # cls: the class label, a number when it reads as one
            label = raw.decode("utf-8", "replace").strip()
            extra["cls"] = int(label) if label.lstrip("-").isdigit() else label
    if not media:
        yield Bad(path, 0, code("no_media_member", f"sample {key!r} has no media member "
                                f"({', '.join(m.name for m in group)})"), b"", group[0].name)
        return
    for m in media:
        if problem:
            yield Bad(path, 0, code("bad_sidecar", problem), b"", m.name)
            continue
        yield media_item(f"{path}/{m.name}", 0, name=posixpath.basename(m.name), options=options,
                         span=FileSpan(path, m.offset_data, m.size), member=m.name, bad_source=path, text=text,
                         declared=declared, extra_meta=dict(extra))


class WebDatasetReader:
    """WebDataset ``.tar`` shards (uncompressed)."""

    name = "webdataset"
    suffixes = (".tar",)
    modality = "media"

    def detect(self, path: str, head_bytes: bytes) -> bool:
        return len(head_bytes) >= 262 and head_bytes[257:262] == b"ustar"

    def modality_of(self, path: str) -> str:
        def heads() -> Iterator[bytes]:
            tf = _open(path)
            try:
                n = 0
                for m in _members(tf, path, os.path.getsize(path)):
                    if isinstance(m, Bad) or n >= MODALITY_SAMPLE:
                        return
                    if m.isfile() and split_key(m.name)[1] not in SIDECAR_EXT and not escapes(m.name):
                        n += 1
                        yield FileSpan(path, m.offset_data, min(m.size, 4096)).read()
            finally:
                tf.close()

        return majority(heads())

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        return read_tar(path, options, meter)


register(WebDatasetReader())
