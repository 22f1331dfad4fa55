"""Text files (``.txt``, ``.md``, ``.markdown``): one record per file, or per file of a folder (recursive)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator

from ciyuan.ingest.readers import Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import RAW_KEEP, Meter, no_meter

TEXT_SUFFIXES = (".txt", ".md", ".markdown")


def _text_files(path: str) -> list[tuple[str, str, str | None]]:
    """``(full path, path inside the folder, problem)`` for each .txt/.md file the text reader takes,
    sorted; hidden entries are skipped and symbolic links to folders are not followed (no loops).
    A folder that cannot be listed is an entry too, with its problem, so it is quarantined."""
    if not os.path.isdir(path):
        return [(path, os.path.basename(path), None)]
    files: list[tuple[str, str, str | None]] = []

    def unlisted(exc: OSError) -> None:
        where = exc.filename or path
        rel = os.path.relpath(where, path).replace(os.sep, "/")
        files.append((where, rel, f"cannot read folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(path, onerror=unlisted):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(TEXT_SUFFIXES):
                continue
            full = os.path.join(dirpath, name)
            files.append((full, os.path.relpath(full, path).replace(os.sep, "/"), None))
    files.sort(key=lambda entry: entry[1])
    return files


def _open_problem(full: str) -> tuple[str | None, int]:
    """Why ``full`` cannot be read as one text file (dangling or looping link, not a regular file), and its size."""
    try:
        st = os.stat(full)
    except OSError as exc:
        link = ""
        if os.path.islink(full):
            kind = {errno.ENOENT: "dangling", errno.ELOOP: "a loop"}.get(exc.errno or 0, "unreadable")
            try:
                link = f" (a symbolic link to {os.readlink(full)!r}: {kind})"
            except OSError:
                link = f" (a symbolic link: {kind})"
        return f"cannot read file: {exc.strerror or exc}{link}", 0
    if not stat.S_ISREG(st.st_mode):
        return "cannot read file: not a regular file (a pipe, socket or device)", 0
    return None, st.st_size


def _read_text(path: str, max_line_bytes: int, meter: Meter = no_meter) -> Iterator[Good | Bad]:
    """A folder of .txt/.md files (recursive, sorted, hidden entries skipped) or one such file.

    A file that cannot be opened (a dangling or looping symbolic link, a pipe, no permission) is
    quarantined with why, and the other files are read.
    """
    for full, rel, problem in _text_files(path):
        size = 0
        if problem is None:
            problem, size = _open_problem(full)
        if problem is None:
            try:
                with open(full, "rb") as f:
                    data = f.read(min(size, max_line_bytes) + 1)
            except OSError as exc:
                problem = f"cannot read file: {exc.strerror or exc}"
        meter(size)
        if problem is not None:
            yield Bad(full, 0, problem, b"")
            continue
        if len(data) > max_line_bytes:
            reason = (
                f"file too large: {size} bytes, limit is {max_line_bytes}; "
                f"only the first {RAW_KEEP} bytes are kept here"
            )
            yield Bad(full, 0, reason, data[:RAW_KEEP])
            continue
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Bad(full, 0, f"invalid UTF-8 at byte offset {exc.start} of the file: {exc.reason}", data)
            continue
        if not text.strip():
            yield Bad(full, 0, "file is empty" if not text else "file is only whitespace", data)
            continue
        yield Good(full, 0, {"id": None, "text": text, "meta": {"path": rel}})


class TextReader:
    """A whole file is one record, with its path inside the folder in ``meta.path``."""

    name = "text"
    suffixes = TEXT_SUFFIXES
    modality = "text"
    reads_folders = True

    def detect(self, path: str, head_bytes: bytes) -> bool:
        return os.path.isdir(path)  # a folder is read as text files

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        return _read_text(path, options.max_line_bytes, meter)

    def size(self, path: str) -> int:
        """A folder: the bytes of the files it will read; a file: its size."""
        if not os.path.isdir(path):
            try:
                return os.path.getsize(path)
            except OSError:
                return 0
        return sum(_open_problem(full)[1] for full, _, problem in _text_files(path) if problem is None)


register(TextReader())
