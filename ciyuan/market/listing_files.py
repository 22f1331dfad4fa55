"""What a listing's public Croissant card names: the free sample file, the card itself, and the full
data's shards for buyers who paid for all of it (cut from :mod:`ciyuan.market.listings`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ciyuan.config import Settings, settings
from ciyuan.db import tx
from ciyuan.db.ids import get_row
from ciyuan.errors import NotFound
from ciyuan.market.accounts import Forbidden
from ciyuan.market.listings import get_listing
from ciyuan.market.tables import AccountRow, EntitlementRow, ListingRow, OrderRow


def sample_parquet(listing_id: str, s: Settings | None = None) -> tuple[bytes, int]:
    """The free sample as Parquet (the card's public ``sample`` file) and its record count.

    Made from the sample stored at publishing, so it holds exactly what the catalog shows, and the
    same bytes every time (the card names their sha256).
    """
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ciyuan.store import resolve
    from ciyuan.store.records import token_column

    s = s or settings()
    row = tx.run(lambda sess: get_listing(sess, listing_id), s)
    recs = json.loads(row.sample)
    tokenizers = list(resolve(f"{row.dataset}@{row.version_id}", s).manifest.get("tokenizers", {}))
    cols: dict[str, pa.Array] = {
        k: pa.array([r.get(k) for r in recs], pa.string()) for k in ("id", "modality", "text", "media_ref")
    }
    cols["meta"] = pa.array([json.dumps(r.get("meta") or {}, ensure_ascii=False, sort_keys=True) for r in recs],
                            pa.string())  # fmt: skip
    for tok in tokenizers:
        cols[token_column(tok)] = pa.array([(r.get("tokens") or {}).get(tok) for r in recs], pa.int64())
    buf = io.BytesIO()
    pq.write_table(pa.table(cols), buf, compression="zstd")
    return buf.getvalue(), len(recs)


def listing_card(listing_id: str, origin: str, s: Settings | None = None) -> dict:
    """The listing's public Croissant card: shards named at this exchange, plus the free sample.

    Every URL it names answers: ``{origin}/v1/listings/{id}`` (the listing), ``.../sample.parquet``
    (public) and ``.../shards/<file>`` (the full data: 401 without a key, 403 unless entitled, see
    :func:`full_data_shard`).
    """
    from ciyuan.appraise.engine import card  # not `ciyuan.appraise.card`: that name is also a module

    s = s or settings()
    row = tx.run(lambda sess: get_listing(sess, listing_id), s)
    base = f"{origin.rstrip('/')}/v1/listings/{row.id}"
    body, n = sample_parquet(listing_id, s)
    sample = {"url": f"{base}/sample.parquet", "sha256": hashlib.sha256(body).hexdigest(), "bytes": len(body),
              "records": n} if n else None  # fmt: skip
    return card(f"{row.dataset}@{row.version_id}", base_url=base, s=s, sample=sample)


def full_data_shard(listing_id: str, name: str, account_id: str, s: Settings | None = None) -> tuple[Any, str]:
    """(version, shard path) if the account may fetch this shard of the listing's full data.

    Allowed: the listing's provider, the operator, and a buyer holding a *paid* entitlement that
    covers every record of the listing (the whole data is already paid for). A metered or partial
    entitlement streams through delivery instead, which bills and limits it; it gets 403 here.
    A delisted listing still serves those who bought it.
    """
    from ciyuan.store import resolve

    s = s or settings()
    ref = tx.run(lambda sess: _full_data_ref(sess, listing_id, account_id), s)
    version = resolve(ref, s)  # after the unit of work: resolve opens its own
    for sh in version.manifest.get("shards", []):
        if sh["path"] == f"shards/{name}":
            return version, sh["path"]
    raise NotFound(f"listing {listing_id} has no shard {name!r}", hint="use the contentUrl values of its card")


def _full_data_ref(sess: Session, listing_id: str, account_id: str) -> str:
    row = get_row(sess, ListingRow, listing_id)
    if row is None:
        raise NotFound(f"listing {listing_id} does not exist", hint="search the catalog: GET /v1/listings")
    acc = sess.get(AccountRow, account_id)
    allowed = acc is not None and (acc.role == "operator" or acc.id == row.provider_id)
    if not allowed:
        allowed = sess.execute(
            select(EntitlementRow.id)
            .join(OrderRow, OrderRow.id == EntitlementRow.order_id)
            .where(EntitlementRow.listing_id == row.id, EntitlementRow.buyer_id == account_id,
                   EntitlementRow.records == row.records, OrderRow.status == "paid")  # fmt: skip
        ).first() is not None
    if not allowed:
        raise Forbidden(
            f"the full data of listing {listing_id} is for buyers who paid for all {row.records:,} of its records",
            hint="buy the whole listing (POST /v1/quotes with no filter and no token budget, then POST /v1/orders), "
            "or stream the records of your entitlement: GET /v1/entitlements/{id}/records",
        )
    return f"{row.dataset}@{row.version_id}"
