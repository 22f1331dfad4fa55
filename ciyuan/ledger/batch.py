"""Many single-phase transfers in one unit of work: :func:`create_transfers` and the in-process
batcher behind :func:`submit_transfer` (the throughput path), which commits concurrent callers together.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ciyuan.config import Settings, settings
from ciyuan.db import tx
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


class _Slot:
    """A caller's place in a batch: its answer, and an event of its own (no herd of shared wake-ups)."""

    __slots__ = ("answer", "batch", "ready")

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.answer: object = None
        self.batch: _Done | None = None


class _Done:
    """A committed batch: the first of its callers to arrive waits for its audit entries, the rest for it."""

    __slots__ = ("bind", "chained", "lead", "queued")

    def __init__(self, bind: object, queued: list[int]) -> None:
        self.bind, self.queued = bind, queued
        self.lead = threading.Lock()
        self.chained = threading.Event()

    def wait_chained(self) -> None:
        if self.lead.acquire(blocking=False):
            try:
                audit.wait_chained(self.bind, self.queued)
            finally:
                self.chained.set()
        else:
            self.chained.wait()


class _Batcher:
    """Concurrent callers of :func:`submit_transfer` in one process share transactions.

    Each caller waits for its own answer; a worker takes every request queued so far (up to
    ``MAX``) and runs them as one :func:`create_transfers` unit of work, so the round trips and the
    commit are paid once per batch instead of once per transfer. ``WORKERS`` batches run at once
    (their lock statements are sorted, so they cannot deadlock). A caller is woken by its own
    event, and one caller per batch waits for the batch's audit entries to be chained.
    """

    MAX = 256
    WORKERS = 2

    def __init__(self, s: Settings | None):
        self.s = s
        self.cv = threading.Condition()  # wakes the workers only
        self.queue: list[tuple[TransferRequest, _Slot]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"ciyuan-ledger-batch-{i}")
                        for i in range(self.WORKERS)]
        for t in self.threads:
            t.start()

    def submit(self, req: TransferRequest) -> Transfer:
        slot = _Slot()
        with self.cv:
            self.queue.append((req, slot))
            self.cv.notify()
        slot.ready.wait()
        if slot.batch is not None:
            slot.batch.wait_chained()  # the batch's entries, chained while the worker runs the next batch
        if isinstance(slot.answer, BaseException):
            raise slot.answer
        return slot.answer  # type: ignore[return-value]

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.queue:
                    self.cv.wait()
                batch, self.queue = self.queue[: self.MAX], self.queue[self.MAX :]
            reqs = [r for r, _ in batch]
            done: list = []

            def work(sess: Session, reqs: list = reqs, done: list = done, look_up: bool = False) -> list:
                out = create_transfers(sess, reqs, look_up=look_up)
                done[:] = [sess.get_bind(), audit.detach_queued(sess)]
                return out

            committed: _Done | None = None
            try:
                try:
                    answers: list = tx.run(work, self.s)
                except _Replayed:  # some were replays: look them up this time
                    answers = tx.run(lambda sess, work=work: work(sess, look_up=True), self.s)
                committed = _Done(*done)
            except BaseException as exc:  # the whole unit of work failed: every caller hears it
                answers = [exc] * len(batch)
            for (_, slot), a in zip(batch, answers, strict=True):
                slot.answer, slot.batch = a, committed
                slot.ready.set()


_batchers: dict[tuple[int, str], _Batcher] = {}
_batchers_lock = threading.Lock()


def submit_transfer(transfer_id: str, debit: str, credit: str, amount: int, currency: str, *,
                    ref: str | None = None, s: Settings | None = None) -> Transfer:
    """A single-phase transfer in its own committed unit of work, shared with concurrent callers.

    For callers that make many independent transfers at once (the throughput path): the result
    is the same as ``tx.run(lambda s: create_transfer(s, ...))`` (idempotent, same errors), but
    concurrent calls in one process are committed together. Returns once it is committed and
    its audit entry is chained.
    """
    cfg = s or settings()
    key = (os.getpid(), cfg.database_url)
    with _batchers_lock:
        b = _batchers.get(key)
        if b is None:
            b = _batchers[key] = _Batcher(s)
    return b.submit(TransferRequest(transfer_id, debit, credit, amount, currency, ref))
