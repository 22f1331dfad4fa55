"""Delivery: metered record streams, acks, packages, usage, balance and signed signing.

The stream answers NDJSON by default and Arrow IPC for ``Accept: application/vnd.apache.arrow.stream``;
the batch's cursor, next cursor, tokens, hold and content digest travel in ``Ciyuan-*`` headers so
the body is nothing but records.
"""

from __future__ import annotations

import pyarrow as pa
from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from ciyuan.api.auth import app_settings, principal, requires
from ciyuan.api.errors import responses
from ciyuan.api.schemas import ID
from ciyuan.db import tx
from ciyuan.delivery import media, packages, receipts, stream
from ciyuan.delivery.encoding import IpcEncoder
from ciyuan.delivery.metering import MAX_PARTS, table_to_ndjson
from ciyuan.delivery.plan import plan
from ciyuan.delivery.usage import place_metered_order
from ciyuan.delivery.usage import usage as usage_page
from ciyuan.errors import NotFound
from ciyuan.ledger import ledger, signing
from ciyuan.market.accounts import Principal, usage_filter

router = APIRouter(tags=["delivery"])
BUYER = ("buyer",)
ARROW = "application/vnd.apache.arrow.stream"
NDJSON = "application/x-ndjson"
CURSOR = r"^c1\.\d{1,4}\.\d{1,4}\.\d{1,15}$"


class AckIn(BaseModel):
    cursor: str = Field(pattern=CURSOR, max_length=40, description="the next_cursor of the batch received")


class PackageIn(BaseModel):
    ttl_s: int = Field(packages.DEFAULT_TTL_S, ge=1, le=packages.MAX_TTL_S)


class MediaIn(BaseModel):
    refs: list[str] = Field(min_length=1, max_length=media.MAX_REFS,
                            description="media_ref values (sha256:<hex>) of records delivered to you")
    ttl_s: int = Field(packages.DEFAULT_TTL_S, ge=1, le=packages.MAX_TTL_S)


class MeteredOrderIn(BaseModel):
    quote_id: str = Field(pattern=ID)


# zstd buffers: on the wire an Arrow batch is about as small as the zstd Parquet of a package, and
# pyarrow decompresses it transparently on the client. Record batches of at most 8192 rows keep
# each compressed buffer small enough for the client to decode with several threads.
arrow_ipc = IpcEncoder(pa.ipc.IpcWriteOptions(compression="zstd"), chunk_rows=8192)


REQUEST_ID = r"^[A-Za-z0-9._:-]{1,64}$"


def _body(d: stream.Delivery, media_type: str, cursor: str | None = None, request_id: str | None = None) -> Response:
    """The batch; its headers also echo what was asked (cursor, request id), binding the answer to its request."""
    h = d.headers()
    h["Ciyuan-Request-Cursor"] = cursor or ""
    if request_id:
        h["Ciyuan-Request-Id"] = request_id
    return Response(content=d.body, media_type=media_type, headers=h)


@router.get(
    "/entitlements/{entitlement_id}/records",
    responses={**responses(401, 402, 403, 404, 409),
               200: {"content": {NDJSON: {}, ARROW: {}}, "description": "one batch of records"}},
)
def records(
    request: Request,
    entitlement_id: str = Path(pattern=ID),
    cursor: str | None = Query(None, pattern=CURSOR, max_length=40,
                               description="next_cursor of the previous batch (acknowledges it); omit to start"),
    max_tokens: int = Query(stream.DEFAULT_MAX_TOKENS, ge=1, le=stream.MAX_MAX_TOKENS),
    parts: int = Query(1, ge=1, le=MAX_PARTS, description="partitions of the selection (start only)"),
    part: int = Query(0, ge=0, lt=MAX_PARTS, description="which partition (start only)"),
    accept: str | None = Header(None),
    request_id: str | None = Header(None, alias="Ciyuan-Request-Id", pattern=REQUEST_ID,
                                    description="echoed in the answer, with the cursor asked for"),
    who: Principal = Depends(requires(roles=BUYER, scope="delivery:read")),
) -> Response:
    """The next batch of records: held before it is sent, charged when you ask with its next_cursor or,
    unacknowledged, at its deadline (``Ciyuan-Ack-By``). The server caps a batch by tokens and bytes
    and by your available funds (``Ciyuan-Batch-Limit`` says what ended it); 402 when not even the
    next record is covered. Re-reading charged records is free."""
    s = app_settings(request)
    arrow = bool(accept and ARROW in accept)
    d = stream.next_batch(who.account.id, entitlement_id, cursor, parts=parts, part=part, max_tokens=max_tokens,
                            s=s, encode=arrow_ipc if arrow else table_to_ndjson, fmt="arrow" if arrow else "ndjson")
    return _body(d, ARROW if arrow else NDJSON, cursor, request_id)


@router.post("/entitlements/{entitlement_id}/ack", responses=responses(401, 402, 403, 404, 409))
def ack(
    request: Request,
    body: AckIn,
    entitlement_id: str = Path(pattern=ID),
    who: Principal = Depends(requires(roles=BUYER, scope="delivery:read")),
) -> dict:
    """Acknowledge (and pay for) the batch ending at ``cursor`` without asking for the next one."""
    return stream.ack(who.account.id, entitlement_id, body.cursor, s=app_settings(request)).to_dict()


@router.get("/entitlements/{entitlement_id}/meter", responses=responses(401, 403, 404))
def meter(
    request: Request,
    entitlement_id: str = Path(pattern=ID),
    who: Principal = Depends(requires(roles=BUYER, scope="delivery:read")),
) -> dict:
    """Tokens held and charged; per stream the charged offset and ``cursor``, where to resume (the end of
    what you acknowledged: a batch charged at its deadline is offered again, free)."""
    s = app_settings(request)
    p = plan(entitlement_id, who.account.id, s)
    return tx.run(lambda sess: stream.meter_state(sess, p), s)


@router.get("/entitlements/{entitlement_id}/receipt", responses=responses(401, 403, 404))
def receipt(
    request: Request,
    entitlement_id: str = Path(pattern=ID),
    who: Principal = Depends(requires(roles=BUYER, scope="delivery:read")),
) -> Response:
    """A signed statement of every posted batch; verify it offline with ``ciyuan receipt verify``."""
    s = app_settings(request)
    p = plan(entitlement_id, who.account.id, s)
    signed = signing.sign(tx.run(lambda sess: receipts.statement(sess, p), s), s)
    return Response(content=signing.to_bytes(signed), media_type="application/json")


@router.get("/receipts/key", responses=responses())
def receipt_key(request: Request) -> dict:
    """The exchange's receipt-signing public key (Ed25519), to pin when verifying signing."""
    return signing.public_key_info(app_settings(request))


@router.post("/entitlements/{entitlement_id}/package", responses=responses(401, 403, 404, 409))
def package(
    request: Request,
    body: PackageIn = Body(default_factory=PackageIn),
    entitlement_id: str = Path(pattern=ID),
    who: Principal = Depends(requires(roles=BUYER, scope="delivery:read")),
) -> dict:
    """Signed, expiring download URLs, one per shard, for a paid (bulk) order."""
    s = app_settings(request)
    p = plan(entitlement_id, who.account.id, s)
    return packages.package(p, ttl_s=body.ttl_s, s=s)


@router.get("/packages/{entitlement_id}/{shard}", responses={**responses(403, 404, 410),
                                                             200: {"content": {"application/octet-stream": {}}}})
def package_shard(
    request: Request,
    entitlement_id: str = Path(pattern=ID),
    shard: int = Path(ge=0, le=10**6),
    exp: int = Query(ge=0, le=10**12),
    sig: str = Query(pattern=r"^[0-9a-fA-F]{64}$"),
) -> Response:
    """One Parquet shard of a package; the signed URL is the credential."""
    s = app_settings(request)
    packages.check(entitlement_id, shard, exp, sig, s)
    f = packages.open_shard(plan(entitlement_id, None, s), shard, s)
    name = f"{entitlement_id}-{shard:05d}.parquet"
    if f.local:
        return FileResponse(f.path.removeprefix("file://"), media_type="application/vnd.apache.parquet",
                            filename=name)
    p = plan(entitlement_id, None, s)

    def chunks():
        with p.version.fs().open(f.path, "rb") as fh:
            while block := fh.read(1 << 20):
                yield block

    return StreamingResponse(chunks(), media_type="application/vnd.apache.parquet")


@router.post("/entitlements/{entitlement_id}/media", responses=responses(401, 403, 404))
def media_urls(
    request: Request,
    body: MediaIn,
    entitlement_id: str = Path(pattern=ID),
    who: Principal = Depends(requires(roles=BUYER, scope="delivery:read")),
) -> dict:
    """Signed, expiring URLs for the blobs (``media_ref``) of records this entitlement was billed for
    (all of a paid order; those charged or in the open batch of a metered one). Fetching costs nothing;
    403 ``media_not_billed`` for a blob whose records were not delivered yet."""
    s = app_settings(request)
    p = plan(entitlement_id, who.account.id, s)
    return tx.run(lambda sess: media.media_urls(sess, p, body.refs, ttl_s=body.ttl_s, s=s), s)


@router.get("/media/{entitlement_id}/{digest}", responses={**responses(403, 404, 410, 416),
                                                          200: {"content": {"application/octet-stream": {}}},
                                                          206: {"description": "one byte range of the blob"}})
def media_blob(
    request: Request,
    entitlement_id: str = Path(pattern=ID),
    digest: str = Path(pattern=r"^[0-9a-f]{64}$"),
    exp: int = Query(ge=0, le=10**12),
    sig: str = Query(pattern=r"^[0-9a-fA-F]{64}$"),
    range_: str | None = Header(None, alias="Range", max_length=200),
) -> Response:
    """One media blob's bytes (``Range: bytes=a-b`` gives 206 and that slice); the signed URL is the credential."""
    s = app_settings(request)
    media.check(entitlement_id, digest, exp, sig, s)
    p = plan(entitlement_id, None, s)
    blobs = p.version.blobs()
    size = blobs.size(digest) if digest in media.blob_index(p) else None
    if size is None:
        raise NotFound(f"blob sha256:{digest} of entitlement {entitlement_id} is missing",
                       hint="tell the exchange's operator: ciyuan verify finds missing blobs")
    try:
        got = media.byte_range(range_, size)
    except media.RangeNotSatisfiable as exc:
        return JSONResponse({"error": {"code": exc.code, "message": exc.message, "hint": exc.hint}}, status_code=416,
                            headers={"Content-Range": f"bytes */{size}"})
    start, end = got or (0, size)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start), "ETag": f'"sha256:{digest}"',
               "Cache-Control": "private, max-age=86400, immutable"}
    if got is not None:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"

    def chunks():
        with blobs.open(digest) as fh:
            fh.seek(start)
            left = end - start
            while left > 0 and (block := fh.read(min(1 << 20, left))):
                left -= len(block)
                yield block

    return StreamingResponse(chunks(), status_code=206 if got is not None else 200,
                             media_type="application/octet-stream", headers=headers)


@router.get("/usage", responses=responses(401, 403))
def usage(
    request: Request,
    entitlement_id: str | None = Query(None, pattern=ID),
    after: int = Query(0, ge=0, le=2**62),
    limit: int = Query(100, ge=1, le=1000),
    who: Principal = Depends(principal),
) -> dict:
    """Usage records, one per posted batch: yours as a buyer, your listings' as a provider, all for the operator."""
    kw = usage_filter(who.account)
    return tx.run(lambda sess: usage_page(sess, entitlement_id=entitlement_id, after=after, limit=limit, **kw),
                  app_settings(request))


@router.get("/balance", responses=responses(401))
def balance(request: Request, who: Principal = Depends(principal)) -> dict:
    """Your ledger balances: posted, held (pending) and available, in minor units."""
    bals = tx.run(lambda sess: ledger.balances(sess, who.account.id), app_settings(request))
    return {"account_id": who.account.id, "balances": [b.to_dict() for b in bals]}


@router.post("/metered-orders", status_code=201, responses=responses(401, 403, 404, 409, 410))
def metered_order(
    request: Request,
    response: Response,
    body: MeteredOrderIn,
    idempotency_key: str = Header(alias="Idempotency-Key", min_length=1, max_length=200),
    who: Principal = Depends(requires(roles=BUYER, scope="orders:write")),
) -> dict:
    """Order a quote pay-as-you-go: nothing is charged now; every acknowledged batch is."""
    order, replayed = place_metered_order(who.account.id, body.quote_id, idempotency_key,
                                                   s=app_settings(request))
    if replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return order
