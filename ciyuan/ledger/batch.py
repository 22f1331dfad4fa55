"""Many single-phase transfers in one unit of work: :func:`create_transfers` and the in-process
batcher behind :func:`submit_transfer` (the throughput path), which commits concurrent callers together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from functools import partial

from sqlalchemy import select
from sqlalchemy.orm import Session

from ciyuan.config import Settings, settings
from ciyuan.db import group, tx
from ciyuan.errors import CiyuanError, Conflict, InvalidInput, NotFound
from ciyuan.ledger import audit
from ciyuan.ledger.accounts import _A, _Acct, _limit, _lock, now_utc
from ciyuan.ledger.transfers import (
    Transfer,
    _apply,
    _check_amount,
    _check_id,
    _copies,
    _leg,
    _replay,
    _stored,
)


@dataclass(frozen=True)
class TransferRequest:
    """One single-phase transfer asked for by a caller of :func:`create_transfers` or :func:`submit_transfer`."""

    id: str
    debit: str
    credit: str
    amount: int
    currency: str
    ref: str | None = None


class _Replayed(Exception):
    """A batch made without looking its ids up first met one that exists: run it again, looking."""


def create_transfers(sess: Session, requests: list[TransferRequest], *, now: datetime | None = None,
                     look_up: bool = True) -> list[Transfer | CiyuanError]:
    """Many single-phase transfers in one operation; each succeeds or fails on its own.

    One lock statement for all their accounts, one lookup of their ids (replays), then each is
    checked and applied in order in memory (a refused one changes nothing), and the accepted ones
    go in with one insert, one account update and one log insert. The answer for request ``i`` is
    its :class:`Transfer` or the error that refused it (the same errors :func:`create_transfer` raises).
    ``look_up=False`` skips the lookup (a statement) and raises :class:`_Replayed` if an id exists,
    for a caller that then runs the batch again in a new transaction.
    """
    now = now or now_utc()
    out: list[Transfer | CiyuanError | None] = [None] * len(requests)
    live: list[int] = []
    for i, r in enumerate(requests):
        try:
            _check_id(r.id)
            _check_amount(r.amount)
            if r.debit == r.credit:
                raise InvalidInput("a transfer must move money between two different accounts",
                                   hint="check the accounts")
            live.append(i)
        except CiyuanError as exc:
            out[i] = exc
    ids = sorted({a for i in live for a in (requests[i].debit, requests[i].credit)})
    locked: dict[str, _Acct] = {}
    if ids:
        try:
            locked = _lock(sess, ids)
        except NotFound:  # lock those that exist; requests naming a missing account are refused
            have = set(sess.connection().execute(select(_A.c.id).where(_A.c.id.in_(ids))).scalars())
            locked = _lock(sess, sorted(have))
    stored = {r.id: r for r in _stored(sess, [requests[i].id for i in live])} if live and look_up else {}
    w = _copies(locked)
    legs: list[dict] = []
    made: dict[str, tuple[dict, int]] = {}
    dups: list[tuple[int, int]] = []
    for i in live:
        r = requests[i]
        body = {"op": "single", "debit": r.debit, "credit": r.credit, "amount": r.amount, "currency": r.currency,
                "timeout_s": None, "ref": r.ref}
        leg = _leg(r.id, "single", "posted", r.debit, r.credit, r.amount, r.currency, body, now, ref=r.ref)
        try:
            if r.id in stored:
                out[i] = _replay([stored[r.id]], [leg])[0]
                continue
            if r.id in made:  # the same id twice in one batch: the second is a replay of the first
                first, j = made[r.id]
                if first["body_hash"] != leg["body_hash"]:
                    raise Conflict(f"transfer {r.id} already exists with a different body",
                                   hint="use a new transfer id for a different transfer",
                                   code="idempotency_conflict")
                dups.append((i, j))
                continue
            for aid in (r.debit, r.credit):
                if aid not in w:
                    raise NotFound(f"ledger account {aid} does not exist",
                                   hint="deposits and orders create ledger accounts; check the account name")
                if w[aid].currency != r.currency:
                    raise InvalidInput(f"{aid} holds {w[aid].currency}, not {r.currency}",
                                       hint="transfers stay in one currency")
            _limit(w[r.debit], r.amount, w[r.credit])
        except CiyuanError as exc:
            out[i] = exc
            continue
        w[r.debit].debits_posted += r.amount
        w[r.credit].credits_posted += r.amount
        legs.append(leg)
        made[r.id] = (leg, i)
    if legs:
        done = _apply(sess, legs, list(w.values()), locked, checked=look_up)
        if done is None:
            raise _Replayed
        for (_, i), t in zip(made.values(), done, strict=True):
            out[i] = t
    for i, j in dups:  # in-batch replays answer with the transfer made for the first occurrence
        out[i] = out[j]
    return out  # type: ignore[return-value]


MAX_BATCH = 256  # requests per shared unit of work
BATCH_WORKERS = 2  # batches running at once per process (their lock statements are sorted: no deadlock)


def _run_batch(s: Settings | None, reqs: list[TransferRequest]) -> tuple[list, object]:
    """One committed :func:`create_transfers` unit of work for a batch, and its audit wait for later.

    Made without the replay lookup first (a statement); if an id existed, run again looking.
    The batch's audit entries are chained while the worker runs the next batch: the first
    caller of this batch to wake waits for them (:mod:`ciyuan.db.group`).
    """
    done: list = []

    def work(sess: Session, look_up: bool = False) -> list:
        out = create_transfers(sess, reqs, look_up=look_up)
        done[:] = [sess.get_bind(), audit.detach_queued(sess)]
        return out

    try:
        answers: list = tx.run(work, s)
    except _Replayed:  # some were replays: look them up this time
        answers = tx.run(lambda sess: work(sess, look_up=True), s)
    bind, queued = done
    return answers, (lambda: audit.wait_chained(bind, queued))


def submit_transfer(transfer_id: str, debit: str, credit: str, amount: int, currency: str, *,
                    ref: str | None = None, s: Settings | None = None) -> Transfer:
    """A single-phase transfer in its own committed unit of work, shared with concurrent callers.

    For callers that make many independent transfers at once (the throughput path): the result
    is the same as ``tx.run(lambda s: create_transfer(s, ...))`` (idempotent, same errors), but
    concurrent calls in one process are committed together. Returns once it is committed and
    its audit entry is chained.
    """
    cfg = s or settings()
    g = group.group(("ledger", os.getpid(), cfg.database_url),
                    lambda: group.GroupCommit(partial(_run_batch, s), max_batch=MAX_BATCH, workers=BATCH_WORKERS,
                                              name="ciyuan-ledger-batch"))
    return g.submit(TransferRequest(transfer_id, debit, credit, amount, currency, ref))
