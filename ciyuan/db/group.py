"""Group commit: concurrent callers of one process share a unit of work, each with its own answer.

The ledger's :func:`~ciyuan.ledger.batch.submit_transfer` and the market's
:func:`~ciyuan.market.orders.submit_order` both pay their round trips and their commit once per
batch instead of once per request (TigerBeetle-style batching). What a batch does is theirs: a
``run_batch(requests)`` that commits the batch and returns one answer per request (a value or the
exception that refused it) and, optionally, a ``settle`` callable to run once after the commit
(the audit chain catching up); this module only queues, groups, wakes and hands answers back.

A caller is woken by an event of its own (a shared ``notify_all`` woke every waiter of the
process on every batch); the first caller of a batch to wake runs ``settle`` while the worker
thread already runs the next batch, and the batch's other callers wait for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

R = TypeVar("R")
A = TypeVar("A")
Settle = Callable[[], None]
RunBatch = Callable[[list[R]], tuple[list[object], Settle | None]]


class _Done:
    """A committed batch: the first of its callers to arrive settles it, the rest wait for that."""

    __slots__ = ("lead", "settle", "settled")

    def __init__(self, settle: Settle) -> None:
        self.settle = settle
        self.lead = threading.Lock()
        self.settled = threading.Event()

    def wait(self) -> None:
        if self.lead.acquire(blocking=False):
            try:
                self.settle()
            finally:
                self.settled.set()
        else:
            self.settled.wait()


class _Slot:
    """A caller's place in a batch: its answer and its own wake-up."""

    __slots__ = ("answer", "done", "ready")

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.answer: object = None
        self.done: _Done | None = None


class GroupCommit(Generic[R, A]):
    """Queue requests from many threads; ``workers`` threads run everything queued so far as one batch.

    ``submit`` blocks until its request's batch has committed (and settled) and returns its answer
    or raises the exception that refused it. A batch that fails as a whole (``run_batch`` raises)
    gives every caller of that batch the exception.
    """

    def __init__(self, run_batch: RunBatch, *, max_batch: int = 256, workers: int = 2, name: str = "ciyuan-group"):
        self.run_batch, self.max_batch = run_batch, max_batch
        self.cv = threading.Condition()  # wakes the workers only
        self.queue: list[tuple[R, _Slot]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"{name}-{i}") for i in range(workers)]
        for t in self.threads:
            t.start()

    def submit(self, req: R) -> A:
        slot = _Slot()
        with self.cv:
            self.queue.append((req, slot))
            self.cv.notify()
        slot.ready.wait()
        if slot.done is not None:
            slot.done.wait()
        if isinstance(slot.answer, BaseException):
            raise slot.answer
        return slot.answer  # type: ignore[return-value]

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.queue:
                    self.cv.wait()
                batch, self.queue = self.queue[: self.max_batch], self.queue[self.max_batch :]
            done: _Done | None = None
            try:
                answers, settle = self.run_batch([r for r, _ in batch])
                if len(answers) != len(batch):
                    raise AssertionError(f"{len(answers)} answers for {len(batch)} requests")
                done = _Done(settle) if settle is not None else None
            except BaseException as exc:  # the whole batch failed: every caller hears it
                answers = [exc] * len(batch)
            for (_, slot), a in zip(batch, answers, strict=True):
                slot.answer, slot.done = a, done
                slot.ready.set()


_groups: dict[tuple, GroupCommit] = {}
_groups_lock = threading.Lock()


def group(key: tuple, make: Callable[[], GroupCommit]) -> GroupCommit:
    """The process's group committer for ``key`` (include the pid: a forked worker makes its own)."""
    g = _groups.get(key)
    if g is None:
        with _groups_lock:
            g = _groups.get(key)
            if g is None:
                g = _groups[key] = make()
    return g
