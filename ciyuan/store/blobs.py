"""Content-addressed blobs: large media objects kept beside the shards, on the same fsspec storage.

A blob lives at ``<store>/blobs/sha256/<2 hex>/<62 hex>`` and is named by the sha256 of its bytes,
so the same bytes are stored once however many versions or datasets hold them, and a record refers
to one with ``media_ref = "sha256:<hex>"``. Writing streams through a temporary name and moves into
place only once the hash is known, so a half-written blob never carries a real name; a reader of a
record never needs the whole object in memory (``open``).
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator
from typing import BinaryIO

from ciyuan.config import Settings, settings
from ciyuan.errors import InvalidInput, NotFound
from ciyuan.store import fs as sfs

PREFIX = "sha256:"
CHUNK = 1 << 20


def ref_of(digest: str) -> str:
    """The ``media_ref`` of a blob with sha256 ``digest``."""
    return PREFIX + digest


def digest_of(ref: str) -> str:
    """The sha256 hex inside a ``media_ref`` (``sha256:<64 hex>``), checked."""
    if not isinstance(ref, str) or not ref.startswith(PREFIX):
        raise InvalidInput(f"media_ref {ref!r} is not sha256:<hex>", hint="media refs are written by ingest")
    digest = ref[len(PREFIX):]
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise InvalidInput(f"media_ref {ref!r} is not sha256:<64 lower-case hex digits>")
    return digest


def rel_path(digest: str) -> str:
    """Where a blob sits under the store root: ``blobs/sha256/ab/cdef...``."""
    return f"blobs/sha256/{digest[:2]}/{digest[2:]}"


class BlobStore:
    """The blobs of one store root (``settings().store_root`` unless given)."""

    def __init__(self, root: str | None = None, s: Settings | None = None):
        url = root or (s or settings()).store_root
        self.fs, self.root = sfs.filesystem(url)

    def path(self, digest: str) -> str:
        return sfs.join(self.root, rel_path(digest))

    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self.path(digest)))

    def put_stream(self, fh: BinaryIO, limit: int | None = None) -> tuple[str, int]:
        """Copy ``fh`` (at most ``limit`` bytes) into the store in 1 MiB steps; ``(sha256, size)``."""
        tmp = sfs.join(self.root, "blobs", "tmp", uuid.uuid4().hex)
        self.fs.makedirs(sfs.join(self.root, "blobs", "tmp"), exist_ok=True)
        h = hashlib.sha256()
        size = 0
        try:
            with self.fs.open(tmp, "wb") as out:
                while limit is None or size < limit:
                    block = fh.read(CHUNK if limit is None else min(CHUNK, limit - size))
                    if not block:
                        break
                    h.update(block)
                    out.write(block)
                    size += len(block)
            digest = h.hexdigest()
            final = self.path(digest)
            if self.fs.exists(final):
                self.fs.rm(tmp)
            else:
                self.fs.makedirs(sfs.join(self.root, "blobs", "sha256", digest[:2]), exist_ok=True)
                self.fs.mv(tmp, final)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise
        return digest, size

    def put(self, data: bytes) -> str:
        """Store ``data``; its sha256 hex (nothing is written when the blob is already there)."""
        digest = hashlib.sha256(data).hexdigest()
        if not self.exists(digest):
            self.put_stream(io.BytesIO(data))
        return digest

    def size(self, digest: str) -> int | None:
        """Bytes of the stored blob (``None``: missing)."""
        path = self.path(digest)
        return int(self.fs.size(path)) if self.fs.exists(path) else None

    def open(self, digest: str) -> BinaryIO:
        """The blob as a binary file, read lazily (a 2 GB video is not loaded)."""
        path = self.path(digest)
        if not self.fs.exists(path):
            raise NotFound(f"blob sha256:{digest} is missing from {self.root}/blobs",
                           hint="run: ciyuan verify NAME, and restore the store from a copy")
        return self.fs.open(path, "rb")

    def get(self, digest: str) -> bytes:
        """The whole blob, for callers that asked for the bytes in memory."""
        with self.open(digest) as fh:
            return fh.read()

    def hash(self, digest: str) -> str | None:
        """The sha256 of the stored bytes now (``None``: missing), for ``ciyuan verify``."""
        path = self.path(digest)
        if not self.fs.exists(path):
            return None
        return sfs.sha256_file(self.fs, path)

    def iter_chunks(self, digest: str) -> Iterator[bytes]:
        with self.open(digest) as fh:
            while block := fh.read(CHUNK):
                yield block


class FileSpan:
    """``size`` bytes of a local file from ``offset`` (a file, or a member inside an uncompressed tar):
    a media object a reader found but did not load, so the builder can stream a large one into a blob."""

    __slots__ = ("offset", "path", "size")

    def __init__(self, path: str, offset: int, size: int):
        self.path, self.offset, self.size = path, offset, size

    def __repr__(self) -> str:
        return f"FileSpan({self.path!r}, {self.offset}, {self.size})"

    def __reduce__(self):  # records cross process boundaries when tokens are counted in workers
        return (FileSpan, (self.path, self.offset, self.size))

    def open(self) -> BinaryIO:
        """A seekable file of exactly these bytes (position 0 is ``offset``)."""
        return SpanFile(self.path, self.offset, self.size)

    def read(self) -> bytes:
        with self.open() as fh:
            return fh.read()


class SpanFile(io.RawIOBase):
    """A read-only, seekable window on a file, for probes and the blob copy (never loads it)."""

    def __init__(self, path: str, offset: int, size: int):
        super().__init__()
        self._fh = open(path, "rb")  # noqa: SIM115 (closed in close())
        self._offset, self._size, self._pos = offset, size, 0
        self.name = path

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + pos)
        return self._pos

    def readinto(self, b) -> int:
        n = max(0, min(len(b), self._size - self._pos))
        if n == 0:
            return 0
        self._fh.seek(self._offset + self._pos)
        got = self._fh.readinto(memoryview(b)[:n])
        self._pos += got or 0
        return got or 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        n = max(0, min(n, self._size - self._pos))
        self._fh.seek(self._offset + self._pos)
        data = self._fh.read(n)
        self._pos += len(data)
        return data

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()
