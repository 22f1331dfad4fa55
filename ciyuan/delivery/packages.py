"""Packages: a paid (bulk) order's data as one signed, expiring download URL per Parquet shard.

The package was charged once when its order was paid, so downloads are not metered. A URL is
``/v1/packages/{entitlement}/{shard}?exp=<unix seconds>&sig=<hex>`` with
``sig = HMAC-SHA256(secret, "{entitlement}/{shard}/{exp}")``; anyone holding it may download until
``exp`` and nobody can change the shard or stretch the expiry without the exchange's secret.
When the selection is the whole version the version's own shards are served; otherwise the
selected records are written once into package shards under the home. Records whose bytes are
blobs keep their ``media_ref`` in the shards; the package lists every such blob under ``media``
with its own signed URL (:mod:`ciyuan.delivery.media`), so the shards and the blobs together hold
every byte (``Client.download_package`` writes them as one folder).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from ciyuan.config import Settings, settings
from ciyuan.delivery.media import package_media
from ciyuan.delivery.plan import Plan
from ciyuan.delivery.rowcache import read_positions
from ciyuan.delivery.signed import DEFAULT_TTL_S, MAX_TTL_S, BadSignature, UrlExpired
from ciyuan.errors import Conflict, InvalidInput, NotFound

__all__ = ["DEFAULT_TTL_S", "MAX_TTL_S", "BadSignature", "UrlExpired", "package", "shard_files"]

def signature(entitlement_id: str, shard: int, exp: int, s: Settings | None = None) -> str:
    msg = f"{entitlement_id}/{shard}/{exp}".encode()
    return hmac.new((s or settings()).secret.encode(), msg, hashlib.sha256).hexdigest()


def signed_path(entitlement_id: str, shard: int, exp: int, s: Settings | None = None) -> str:
    return f"/v1/packages/{entitlement_id}/{shard}?exp={exp}&sig={signature(entitlement_id, shard, exp, s)}"


def check(entitlement_id: str, shard: int, exp: int, sig: str, s: Settings | None = None,
          now: float | None = None) -> None:
    """Refuse an altered URL (403) or an expired one (410)."""
    want = signature(entitlement_id, shard, exp, s)
    if not isinstance(sig, str) or not hmac.compare_digest(want, sig.lower()):
        raise BadSignature("this package URL is not valid (it was altered or signed by another exchange)",
                           hint="ask for fresh URLs: POST /v1/entitlements/{id}/package")
    if (time.time() if now is None else now) >= exp:
        raise UrlExpired("this package URL has expired", hint="ask for fresh URLs: POST /v1/entitlements/{id}/package")


@dataclass(frozen=True)
class ShardFile:
    path: str
    local: bool
    rows: int


def _package_dir(p: Plan, s: Settings) -> Path:
    return Path(s.home) / "packages" / p.entitlement_id


def _whole(p: Plan) -> bool:
    return p.records == int(p.shard_starts[-1])


def shard_files(p: Plan, s: Settings | None = None) -> list[ShardFile]:
    """The files of the package, writing the selected records once when the selection is partial."""
    s = s or settings()
    if _whole(p):
        paths = p.version.shard_paths()
        local = p.version.location.startswith("/") or p.version.location.startswith("file:")
        return [ShardFile(path, local, int(p.shard_starts[i + 1] - p.shard_starts[i])) for i, path in enumerate(paths)]
    out: list[ShardFile] = []
    folder = _package_dir(p, s)
    folder.mkdir(parents=True, exist_ok=True)
    shard_of = np.searchsorted(p.shard_starts, p.rows, side="right") - 1
    n = 0
    pos = 0
    for sh in np.unique(shard_of):
        end = pos + int(np.count_nonzero(shard_of == sh))
        target = folder / f"part-{n:05d}.parquet"
        if not target.exists():
            tmp = folder / f".part-{n:05d}.{os.getpid()}.tmp"
            pq.write_table(read_positions(p, pos, end), tmp, compression="zstd")
            os.replace(tmp, target)
        out.append(ShardFile(str(target), True, end - pos))
        pos, n = end, n + 1
    return out


def package(p: Plan, *, ttl_s: int = DEFAULT_TTL_S, s: Settings | None = None, now: float | None = None) -> dict:
    """Signed URLs for every shard of a paid entitlement."""
    s = s or settings()
    if p.metered:
        raise Conflict(f"entitlement {p.entitlement_id} is metered: it is delivered as a stream",
                       hint="stream it: GET /v1/entitlements/{id}/records", code="metered_entitlement")
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_TTL_S:
        raise InvalidInput(f"ttl_s {ttl_s!r} must be from 1 to {MAX_TTL_S}", hint="e.g. 3600")
    exp = int((time.time() if now is None else now) + ttl_s)
    files = shard_files(p, s)
    return {
        "entitlement_id": p.entitlement_id,
        "expires_at": exp,
        "records": p.records,
        "tokens": p.tokens,
        "shards": [{"shard": i, "rows": f.rows, "url": signed_path(p.entitlement_id, i, exp, s)}
                   for i, f in enumerate(files)],
        "media": package_media(p, exp, s),
    }


def open_shard(p: Plan, shard: int, s: Settings | None = None) -> ShardFile:
    files = shard_files(p, s)
    if not 0 <= shard < len(files):
        raise NotFound(f"package of {p.entitlement_id} has no shard {shard}", hint=f"shards are 0..{len(files) - 1}")
    return files[shard]
