"""``ciyuan.db.group``: callers queued while a batch runs go together into the next one, each gets
its own answer (or its own error), a batch that fails as a whole fails each of its callers, and
one caller per batch settles it while the others wait for that."""

from __future__ import annotations

import threading
import time

import pytest

from ciyuan.db.group import GroupCommit


def test_callers_queued_during_a_batch_share_the_next_one() -> None:
    first_running, release = threading.Event(), threading.Event()
    batches: list[list[int]] = []
    settled: list[int] = []

    def run_batch(reqs: list[int]):
        batches.append(list(reqs))
        if len(batches) == 1:
            first_running.set()
            release.wait()
        answers = [ValueError(f"odd {r}") if r % 2 else r * 10 for r in reqs]
        return answers, (lambda: settled.append(len(reqs)))

    g: GroupCommit[int, int] = GroupCommit(run_batch, workers=1, max_batch=100)
    got: dict[int, object] = {}

    def call(r: int) -> None:
        try:
            got[r] = g.submit(r)
        except ValueError as exc:
            got[r] = str(exc)

    t0 = threading.Thread(target=call, args=(0,))
    t0.start()
    first_running.wait()
    rest = [threading.Thread(target=call, args=(r,)) for r in range(1, 9)]
    for t in rest:
        t.start()
    while True:  # every caller queued (the only worker is busy with the first batch)
        with g.cv:
            if len(g.queue) == 8:
                break
        time.sleep(0.001)
    release.set()
    for t in [t0, *rest]:
        t.join()
    assert batches == [[0], list(range(1, 9))]
    assert got == {r: (f"odd {r}" if r % 2 else r * 10) for r in range(9)}
    assert sorted(settled) == [1, 8]  # each batch settled exactly once


def test_a_batch_that_fails_as_a_whole_fails_each_caller() -> None:
    def run_batch(reqs: list[int]):
        raise RuntimeError("database away")

    g: GroupCommit[int, int] = GroupCommit(run_batch, workers=1)
    with pytest.raises(RuntimeError, match="database away"):
        g.submit(1)


def test_a_wrong_number_of_answers_is_an_error_not_a_misdelivery() -> None:
    g: GroupCommit[int, int] = GroupCommit(lambda reqs: ([], None), workers=1)
    with pytest.raises(AssertionError, match="0 answers for 1 requests"):
        g.submit(1)


def test_an_async_caller_hears_its_answer_only_after_the_batch_settled() -> None:
    import asyncio

    events: list[str] = []

    def run_batch(reqs: list[int]):
        return [ValueError("no") if r < 0 else r + 1 for r in reqs], (lambda: events.append("settled"))

    g: GroupCommit[int, int] = GroupCommit(run_batch, workers=1)

    async def main() -> tuple[int, str]:
        got = await g.submit_async(1)
        events.append("answered")
        try:
            await g.submit_async(-1)
        except ValueError as exc:
            return got, str(exc)
        raise AssertionError("a refused request raises its own error")

    assert asyncio.run(main()) == (2, "no")
    assert events[:2] == ["settled", "answered"]
