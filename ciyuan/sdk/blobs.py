"""Media stored by reference: the SDK turns a record's ``media_ref`` into its bytes, checked by sha256.

A record whose media is a blob arrives with ``media_ref = "sha256:<hex>"`` and no ``media``. The
SDK asks the exchange for signed URLs of the blobs of a batch (``POST /v1/entitlements/{id}/media``,
granted only for records the entitlement was billed for, so it costs nothing) and downloads each
one, checking its bytes against the hash in its name. :meth:`Client.stream`, :meth:`Batch.records`
and :class:`~ciyuan.sdk.TokenStream` do it by themselves (``resolve_media=False`` keeps the
reference only); for a blob too big for memory use :func:`download_media`, which writes to a file
and resumes a broken download with an HTTP range, or hand :meth:`Client.media_url` to a player.

Packages: :func:`download_package` writes the shards and every blob into one folder
(``part-NNNNN.parquet``, ``blobs/<hex>``, ``package.json``), and :func:`read_package` reads it back
with the blob records' ``media`` filled in, offline.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ciyuan.sdk.errors import ApiError

Client = Any  # a ciyuan.sdk.client.Client (not imported: the client imports this module)

PREFIX = "sha256:"
MAX_REFS = 1000  # what the exchange accepts per request


def _digest(ref: str) -> str:
    if not isinstance(ref, str) or not ref.startswith(PREFIX) or len(ref) != len(PREFIX) + 64:
        raise ValueError(f"media_ref {ref!r} is not sha256:<64 hex digits>")
    return ref[len(PREFIX):]


def _error(status: int, code: str, message: str, hint: str = "") -> Exception:
    return ApiError(status, code, message, hint)


def media_urls(client: Client, entitlement_id: str, refs: list[str], ttl_s: int = 3600) -> dict[str, str]:
    """``ref -> signed URL`` for the blobs of billed records (in requests of at most 1,000 refs)."""
    refs = list(dict.fromkeys(refs))
    out: dict[str, str] = {}
    for i in range(0, len(refs), MAX_REFS):
        got = client._json("POST", f"/v1/entitlements/{entitlement_id}/media",
                           json={"refs": refs[i:i + MAX_REFS], "ttl_s": ttl_s})
        out.update({m["ref"]: m["url"] for m in got["media"]})
    return out


def get_blob(client: Client, url: str, ref: str) -> bytes:
    """A blob's bytes from its signed URL, retried until they hash to ``ref``."""
    want = _digest(ref)
    for attempt in range(client.retries + 1):
        data = client.request("GET", url).content
        if hashlib.sha256(data).hexdigest() == want:
            return data
        client._sleep(attempt)
    raise _error(502, "media_digest_mismatch", f"the bytes of {ref} do not hash to its name", "retry")


def resolve(client: Client, entitlement_id: str, records: list[dict]) -> list[dict]:
    """Fill ``media`` of every record that has only a ``media_ref`` (each blob fetched once), in place."""
    need: dict[str, list[dict]] = {}
    for r in records:
        ref = r.get("media_ref")
        if ref and not r.get("media"):
            need.setdefault(ref, []).append(r)
    if need:
        for ref, url in media_urls(client, entitlement_id, list(need)).items():
            data = get_blob(client, url, ref)
            for r in need[ref]:
                r["media"] = data
    return records


def download_media(client: Client, url: str, ref: str, path: str | Path) -> int:
    """Write a blob to ``path`` from its signed URL, resuming a partial ``path.part`` with a byte range;
    the file appears under ``path`` only once its bytes hash to ``ref``. Returns its size."""
    want, path = _digest(ref), Path(path)
    part = path.with_name(path.name + ".part")
    for attempt in range(client.retries + 1):
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            with client.http.stream("GET", url, headers=headers) as resp:
                if resp.status_code == 416:  # the partial file is already whole (or longer: start again)
                    resp.read()
                    if _sha256_file(part) != want:
                        part.unlink()
                        continue
                elif resp.status_code >= 400:
                    resp.read()
                    err = resp.json().get("error", {})
                    raise _error(resp.status_code, err.get("code", ""), err.get("message", ""), err.get("hint", ""))
                else:
                    mode = "ab" if resp.status_code == 206 else "wb"  # 200: the server sent it whole
                    with open(part, mode) as fh:
                        for chunk in resp.iter_bytes(1 << 20):
                            fh.write(chunk)
        except _transport_errors():
            if attempt == client.retries:
                raise
            client.close()
            client._sleep(attempt)
            continue
        if _sha256_file(part) == want:
            os.replace(part, path)
            return path.stat().st_size
        part.unlink()
        client._sleep(attempt)
    raise _error(502, "media_digest_mismatch", f"the bytes of {ref} do not hash to its name", "retry")


def _transport_errors() -> tuple[type[BaseException], ...]:
    import httpx

    return (httpx.TransportError,)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def download_package(client: Client, entitlement_id: str, folder: str | Path, ttl_s: int = 3600) -> dict:
    """A paid entitlement's package as one self-contained folder: its Parquet shards, every blob its
    records refer to (``blobs/<hex>``, checked) and ``package.json`` (the package without its URLs)."""
    folder = Path(folder)
    (folder / "blobs").mkdir(parents=True, exist_ok=True)
    pkg = client.package(entitlement_id, ttl_s=ttl_s)
    for s in pkg["shards"]:
        client.download(s["url"], folder / f"part-{s['shard']:05d}.parquet")
    for m in pkg.get("media", []):
        target = folder / "blobs" / _digest(m["ref"])
        if not (target.exists() and _sha256_file(target) == _digest(m["ref"])):
            download_media(client, m["url"], m["ref"], target)
    manifest = {k: v for k, v in pkg.items() if k not in ("shards", "media", "expires_at")}
    manifest["shards"] = [{"file": f"part-{s['shard']:05d}.parquet", "rows": s["rows"]} for s in pkg["shards"]]
    manifest["media"] = [{"ref": m["ref"], "bytes": m.get("bytes"), "file": f"blobs/{_digest(m['ref'])}"}
                         for m in pkg.get("media", [])]
    (folder / "package.json").write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    return manifest


def read_package(folder: str | Path, *, resolve_media: bool = True) -> Iterator[dict[str, Any]]:
    """The records of a downloaded package in order, ``meta`` parsed, blob media filled from ``blobs/``."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    manifest = json.loads((folder / "package.json").read_text(encoding="utf-8"))
    for shard in manifest["shards"]:
        for rec in pq.read_table(folder / shard["file"]).to_pylist():
            rec["meta"] = json.loads(rec["meta"]) if rec.get("meta") else {}
            if resolve_media and rec.get("media_ref") and not rec.get("media"):
                rec["media"] = (folder / "blobs" / _digest(rec["media_ref"])).read_bytes()
            yield rec
