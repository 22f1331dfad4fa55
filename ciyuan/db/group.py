"""Group commit: concurrent callers of one process share a unit of work, each with its own answer.

The ledger's :func:`~ciyuan.ledger.batch.submit_transfer` and the market's
:func:`~ciyuan.market.order_group.submit_order` both pay their round trips and their commit once per
batch instead of once per request (TigerBeetle-style batching). What a batch does is theirs: a
``run_batch(requests)`` that commits the batch and returns one answer per request (a value or the
exception that refused it) and, optionally, a ``settle`` callable to run once after the commit
(the audit chain catching up); this module only queues, groups, wakes and hands answers back.

A caller is woken by an event of its own (a shared ``notify_all`` woke every waiter of the
process on every batch); the first caller of a batch to wake runs ``settle`` while the worker
thread already runs the next batch, and the batch's other callers wait for it.
"""

from __future__ import annotations

import asyncio
import queue
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
    """A caller's place in a batch: its answer and its own wake-up (an event, or an asyncio future)."""

    __slots__ = ("answer", "done", "future", "loop", "ready")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.ready = threading.Event()
        self.answer: object = None
        self.done: _Done | None = None
        self.loop = loop
        self.future: asyncio.Future | None = loop.create_future() if loop is not None else None

    def resolve(self) -> None:
        """Hand an async caller its answer on its own event loop."""
        self.loop.call_soon_threadsafe(_set, self.future, self.answer)  # type: ignore[union-attr]


def _set(fut: asyncio.Future, answer: object) -> None:
    if fut.done():  # the caller was cancelled (its client went away): the answer stands, unheard
        return
    if isinstance(answer, BaseException):
        fut.set_exception(answer)
    else:
        fut.set_result(answer)


class GroupCommit(Generic[R, A]):
    """Queue requests from many threads; ``workers`` threads run everything queued so far as one batch.

    ``submit`` blocks until its request's batch has committed (and settled) and returns its answer
    or raises the exception that refused it; ``submit_async`` is the same for a caller on an event
    loop. A batch that fails as a whole (``run_batch`` raises) gives every caller of it the exception.
    """

    def __init__(self, run_batch: RunBatch, *, max_batch: int = 256, workers: int = 2, name: str = "ciyuan-group"):
        self.run_batch, self.max_batch, self.name = run_batch, max_batch, name
        self.to_settle: queue.SimpleQueue = queue.SimpleQueue()  # (batch, its async callers) to settle
        self.settler: threading.Thread | None = None
        self.cv = threading.Condition()  # wakes the workers only
        self.queue: list[tuple[R, _Slot]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True, name=f"{name}-{i}") for i in range(workers)]
        for t in self.threads:
            t.start()

    def submit(self, req: R) -> A:
        slot = _Slot()
        self._queue(req, slot)
        slot.ready.wait()
        if slot.done is not None:
            slot.done.wait()
        if isinstance(slot.answer, BaseException):
            raise slot.answer
        return slot.answer  # type: ignore[return-value]

    async def submit_async(self, req: R) -> A:
        """:meth:`submit` for a caller on an event loop: no thread waits for the answer.

        The batch's settling (the audit chain catching up) runs on the group's settler thread
        before the answer is handed over, so the caller still hears only after it.
        """
        slot = _Slot(asyncio.get_running_loop())
        self._queue(req, slot)
        return await slot.future  # type: ignore[misc]

    def _queue(self, req: R, slot: _Slot) -> None:
        with self.cv:
            self.queue.append((req, slot))
            self.cv.notify()

    def _settle(self) -> None:
        """The settler thread: settles batches with async callers, then hands them their answers."""
        while True:
            done, slots = self.to_settle.get()
            try:
                done.wait()
            except BaseException as exc:  # as a blocking caller would hear it
                for slot in slots:
                    slot.answer = exc
            for slot in slots:
                slot.resolve()

    def _hand_over(self, batch: list[tuple[R, _Slot]], done: _Done | None) -> None:
        waiting = []
        for _, slot in batch:
            if slot.loop is None:
                slot.ready.set()
            elif done is None:
                slot.resolve()
            else:
                waiting.append(slot)
        if waiting:
            if self.settler is None:
                self.settler = threading.Thread(target=self._settle, daemon=True, name=f"{self.name}-settle")
                self.settler.start()
            self.to_settle.put((done, waiting))

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
            self._hand_over(batch, done)


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
