"""Orders committed together: concurrent callers of one process share units of work (the HTTP hot path).

:func:`submit_order` gives the answer :func:`ciyuan.market.orders.place_order` gives, but the
orders of concurrent callers go through one :func:`~ciyuan.market.orders.place_orders` unit of
work per batch (:mod:`ciyuan.db.group`), so the round trips, the shared shard locks and the commit
are paid once per batch instead of once per order.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial

from sqlalchemy.orm import Session

from ciyuan.config import Settings, settings
from ciyuan.db import group, tx
from ciyuan.ledger import audit
from ciyuan.market.orders import PREPAID, OrderRequest, answer_of, place_orders


def _run_batch(s: Settings, reqs: list[OrderRequest]) -> tuple[list, Callable[[], None] | None]:
    """A batch of :func:`submit_order` callers: one committed unit of work, each order its own answer.

    The audit entries of the batch's charges are chained while the worker runs the next batch
    (the first caller to wake waits for them, :mod:`ciyuan.db.group`). If the unit of work fails as
    a whole (an error that is no order's own), each order is tried again alone, so one cannot
    take the others down with it.
    """
    done: list = []

    def work(sess: Session) -> list:
        out = place_orders(sess, reqs, fee_bps=s.platform_fee_bps)
        done[:] = [sess.get_bind(), audit.detach_queued(sess)]
        return out

    try:
        answers = tx.run(work, s)
    except Exception:
        if len(reqs) == 1:
            raise
        answers, fee = [], s.platform_fee_bps
        for r in reqs:
            try:
                one = [r]
                answers.append(tx.run(lambda sess, one=one: answer_of(place_orders(sess, one, fee_bps=fee)[0]), s))
            except Exception as exc:
                answers.append(exc)
        return answers, None
    bind, queued = done
    return answers, lambda: audit.wait_chained(bind, queued)


ORDER_BATCH = 128  # orders per shared unit of work
ORDER_WORKERS = 1  # batches at once per process: every batch takes shared shard locks, so a second mostly waits


def submit_order(buyer_id: str, quote_id: str, idempotency_key: str, *, billing: str = PREPAID,
                 s: Settings | None = None, key_id: str | None = None) -> tuple[dict, bool]:
    """:func:`place_order`, committed together with concurrent callers of this process (the hot path).

    The same answer, errors and idempotency as :func:`place_order`; the round trips and the commit
    are paid once per batch (:func:`place_orders`), and it returns once the order is committed and
    its charge is in the audit chain.
    """
    s = s or settings()
    req = OrderRequest(buyer_id, quote_id, idempotency_key, billing, key_id).check()
    return _group(s).submit(req)


async def submit_order_async(buyer_id: str, quote_id: str, idempotency_key: str, *, s: Settings,
                             key_id: str | None = None) -> tuple[dict, bool]:
    """:func:`submit_order` for a caller on an event loop (the HTTP hot path): no thread waits for it."""
    req = OrderRequest(buyer_id, quote_id, idempotency_key, PREPAID, key_id).check()
    return await _group(s).submit_async(req)


def _group(s: Settings) -> group.GroupCommit:
    return group.group(("orders", os.getpid(), s.database_url),
                       lambda: group.GroupCommit(partial(_run_batch, s), max_batch=ORDER_BATCH,
                                                 workers=ORDER_WORKERS, name="ciyuan-order-batch"))
