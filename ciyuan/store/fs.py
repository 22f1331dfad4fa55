"""Storage paths through fsspec, so shards can live on local disk or object storage by configuration."""

from __future__ import annotations

import hashlib

import fsspec
from fsspec import AbstractFileSystem


def filesystem(url: str) -> tuple[AbstractFileSystem, str]:
    """The filesystem for ``url`` and the path inside it."""
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def join(*parts: str) -> str:
    return "/".join(p.strip("/") if i else p.rstrip("/") for i, p in enumerate(parts) if p)


def sha256_file(fs: AbstractFileSystem, path: str, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
