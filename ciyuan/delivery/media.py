"""Media blobs of an entitlement: signed, expiring URLs for the blobs of records it was billed for.

A record whose bytes are a content-addressed blob (``media_ref = "sha256:<hex>"``) travels in the
stream and in packages by its reference (so does an episode's camera video, in
``meta.attachments[cam].media_ref``: granted with its record like a ``media_ref``); the bytes
come from ``GET /v1/media/{entitlement}/{hex}`` with ``exp`` and
``sig = HMAC-SHA256(secret, "media/{entitlement}/{hex}/{exp}")``. URLs are issued
(:func:`media_urls`) only for blobs of records the entitlement has been billed for: every record of
a paid order; for a metered one the records already charged or in the open batch (sent, so billed:
its hold is posted at the ack or the deadline, never voided). Fetching a blob therefore costs
nothing, and being billed is monotone, so the URL needs no further check: like a package URL it is
its own credential until it expires. Serving supports one HTTP byte range (:func:`byte_range`), so
a long video streams and a broken download resumes.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from ciyuan.config import Settings, settings
from ciyuan.delivery.metering import partition_bounds
from ciyuan.delivery.plan import Plan
from ciyuan.delivery.signed import DEFAULT_TTL_S, MAX_TTL_S, BadSignature, UrlExpired
from ciyuan.delivery.tables import BatchRow, StreamRow
from ciyuan.errors import CiyuanError, InvalidInput, NotFound
from ciyuan.store.blobs import digest_of, ref_of

MAX_REFS = 1000  # refs per request: a batch's blobs in a few requests, a bounded answer


class MediaNotBilled(CiyuanError):
    code = "media_not_billed"
    status = 403


class RangeNotSatisfiable(CiyuanError):
    code = "range_not_satisfiable"
    status = 416


def signature(entitlement_id: str, digest: str, exp: int, s: Settings | None = None) -> str:
    msg = f"media/{entitlement_id}/{digest}/{exp}".encode()
    return hmac.new((s or settings()).secret.encode(), msg, hashlib.sha256).hexdigest()


def signed_path(entitlement_id: str, digest: str, exp: int, s: Settings | None = None) -> str:
    return f"/v1/media/{entitlement_id}/{digest}?exp={exp}&sig={signature(entitlement_id, digest, exp, s)}"


def check(entitlement_id: str, digest: str, exp: int, sig: str, s: Settings | None = None,
          now: float | None = None) -> None:
    """Refuse an altered URL (403) or an expired one (410)."""
    want = signature(entitlement_id, digest, exp, s)
    hint = "ask for fresh URLs: POST /v1/entitlements/{id}/media"
    if not isinstance(sig, str) or not hmac.compare_digest(want, sig.lower()):
        raise BadSignature("this media URL is not valid (it was altered or signed by another exchange)", hint=hint)
    if (time.time() if now is None else now) >= exp:
        raise UrlExpired("this media URL has expired", hint=hint)


# -- which selection positions refer to which blob -------------------------------------------------

_index: OrderedDict[str, dict[str, np.ndarray]] = OrderedDict()
_index_lock = threading.Lock()
INDEX_CACHE = 64


def blob_index(p: Plan) -> dict[str, np.ndarray]:
    """sha256 hex -> the selection positions whose record refers to that blob (cached per entitlement)."""
    with _index_lock:
        got = _index.get(p.entitlement_id)
        if got is not None:
            _index.move_to_end(p.entitlement_id)
            return got
    out: dict[str, np.ndarray] = {}
    if (getattr(p.version, "manifest", {}) or {}).get("blobs"):
        by: dict[str, list[int]] = {}
        for row, ref in _blob_rows(p.version):
            o = int(np.searchsorted(p.rows, row))  # p.rows is in version order (ascending)
            if o < len(p.rows) and int(p.rows[o]) == row:
                by.setdefault(digest_of(ref), []).append(o)
        out = {d: np.unique(np.asarray(v, np.int64)) for d, v in by.items()}
    with _index_lock:
        _index[p.entitlement_id] = out
        while len(_index) > INDEX_CACHE:
            _index.popitem(last=False)
    return out


def _blob_rows(version) -> Iterator[tuple[int, str]]:
    """(version row, blob ref) of every blob a record refers to: its ``media_ref`` and, for an
    episode, each camera video in ``meta.attachments[name].media_ref`` (granted like its media)."""
    row = 0
    for b in version.iter_batches(columns=["modality", "media_ref", "meta"]):
        cols = {n: b.column(i) for i, n in enumerate(b.schema.names)}
        refs = cols.get("media_ref")
        mods = cols.get("modality")
        if refs is not None:
            refs = refs.cast(pa.string())
            for i in np.nonzero(refs.is_valid().to_numpy(zero_copy_only=False))[0].tolist():
                yield row + i, refs[i].as_py()
        if mods is not None and "meta" in cols:
            eps = np.nonzero(pc.equal(mods.cast(pa.string()), "episode").fill_null(False)
                             .to_numpy(zero_copy_only=False))[0].tolist()
            meta = cols["meta"]
            for i in eps:
                v = meta[i].as_py()
                m = v if isinstance(v, dict) else json.loads(v or "{}")
                for entry in (m.get("attachments") or {}).values():
                    if isinstance(entry, dict) and isinstance(entry.get("media_ref"), str):
                        yield row + i, entry["media_ref"]
        row += b.num_rows


def billed_upto(sess: Session, p: Plan) -> list[tuple[int, int]]:
    """Selection ranges ``[lo, end)`` billed so far: charged, or sent in the open batch."""
    if not p.metered:
        return [(0, p.records)]
    streams = sess.execute(select(StreamRow).where(StreamRow.entitlement_id == p.entitlement_id)).scalars().all()
    ids = [st.open_batch for st in streams if st.open_batch]
    open_ = ({b.id: b for b in sess.execute(select(BatchRow).where(BatchRow.id.in_(ids))).scalars()}
             if ids else {})
    out = []
    for st in streams:
        lo, _hi = partition_bounds(p.records, st.parts, st.part)
        upto = int(st.acked)
        b = open_.get(st.open_batch) if st.open_batch else None
        if b is not None and b.state == "pending":
            upto = max(upto, int(b.end))
        if upto:
            out.append((lo, lo + upto))
    return out


def _billed(positions: np.ndarray, ranges: list[tuple[int, int]]) -> bool:
    return any(bool(np.any((positions >= lo) & (positions < end))) for lo, end in ranges)


def media_urls(sess: Session, p: Plan, refs: list[str], *, ttl_s: int = DEFAULT_TTL_S, s: Settings | None = None,
               now: float | None = None) -> dict:
    """Signed URLs for ``refs`` (``sha256:<hex>``), each a blob of a record this entitlement was billed for.

    A ref no selected record holds is 404 ``media_not_found``; one whose records are not billed yet
    is 403 ``media_not_billed`` (stream them first: the batch that sends a record bills it)."""
    s = s or settings()
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or not 1 <= ttl_s <= MAX_TTL_S:
        raise InvalidInput(f"ttl_s {ttl_s!r} must be from 1 to {MAX_TTL_S}", hint="e.g. 3600")
    if not refs or len(refs) > MAX_REFS:
        raise InvalidInput(f"give 1 to {MAX_REFS} media refs, not {len(refs)}", hint="ask in several requests")
    digests = list(dict.fromkeys(digest_of(r) for r in refs))
    index = blob_index(p)
    missing = [d for d in digests if d not in index]
    if missing:
        raise NotFound(f"no record of entitlement {p.entitlement_id} refers to {ref_of(missing[0])}"
                       + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""),
                       hint="ask for the media_ref of records this entitlement delivers", code="media_not_found")
    ranges = billed_upto(sess, p)
    unbilled = [d for d in digests if not _billed(index[d], ranges)]
    if unbilled:
        raise MediaNotBilled(f"{ref_of(unbilled[0])} belongs to records entitlement {p.entitlement_id} was not "
                             f"billed for yet" + (f" (and {len(unbilled) - 1} more)" if len(unbilled) > 1 else ""),
                             hint="stream the records first: the batch that sends a record bills it")
    exp = int((time.time() if now is None else now) + ttl_s)
    blobs = p.version.blobs()
    sizes = {b["sha256"]: int(b["bytes"]) for b in p.version.manifest.get("blobs", [])}
    return {
        "entitlement_id": p.entitlement_id,
        "expires_at": exp,
        "media": [{"ref": ref_of(d), "bytes": sizes.get(d) if d in sizes else blobs.size(d),
                   "url": signed_path(p.entitlement_id, d, exp, s)} for d in digests],
    }


def package_media(p: Plan, exp: int, s: Settings | None = None) -> list[dict]:
    """Every blob of a paid entitlement's records, with a signed URL: what makes a package whole."""
    sizes = {b["sha256"]: int(b["bytes"]) for b in p.version.manifest.get("blobs", [])}
    return [{"ref": ref_of(d), "bytes": sizes.get(d), "url": signed_path(p.entitlement_id, d, exp, s)}
            for d in sorted(blob_index(p))]


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``[start, end)`` of a single ``Range: bytes=a-b`` (or ``a-``, ``-n``) header; None: the whole blob.

    Several ranges, or a header that is not a byte range, are answered with the whole blob (RFC 9110
    lets a server ignore Range); a range starting past the end is 416."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    a, b = m.group(1), m.group(2)
    if not a:  # the last n bytes
        n = int(b)
        if n == 0:
            raise RangeNotSatisfiable(f"range {header!r} asks for no bytes", hint=f"the blob has {size} bytes")
        return max(0, size - n), size
    start = int(a)
    end = min(size, int(b) + 1) if b else size
    if start >= size or (b and int(b) < start):
        raise RangeNotSatisfiable(f"range {header!r} is outside the blob's {size} bytes",
                                  hint=f"ask for bytes 0-{size - 1}")
    return start, end
