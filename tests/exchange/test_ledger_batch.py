"""Many transfers in one operation (``create_transfers``) and concurrent callers sharing transactions
(``submit_transfer``): each transfer succeeds or fails on its own, replays answer with the stored
transfer, and the ledger and its audit chain check out afterwards (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

from ciyuan.db import tx
from ciyuan.errors import Conflict, NotFound
from ciyuan.ledger import audit, ledger
from ciyuan.ledger.ledger import InsufficientFunds, TransferRequest


def _acct(name: str) -> str:
    return ledger.account_id(ledger.BUYER, name, "CNY")


@pytest.fixture
def funded(db_home):
    tx.run(lambda s: [ledger.deposit(s, f"dep-{n}", n, 1_000, "CNY") for n in ("a", "b", "c")])
    return db_home


def _clean(transfers: int) -> None:
    check = tx.run(ledger.check)
    assert check["ok"], check["differences"]
    ver = tx.run(audit.verify)
    assert ver["ok"] and ver["transfers"] == transfers and ver["unlogged_transfers"] == 0, ver["problems"]


def test_each_transfer_of_a_batch_stands_alone(funded) -> None:
    tx.run(lambda s: ledger.create_transfer(s, "old", _acct("a"), _acct("b"), 10, "CNY"))
    reqs = [
        TransferRequest("t1", _acct("a"), _acct("b"), 600, "CNY"),
        TransferRequest("t2", _acct("a"), _acct("c"), 600, "CNY"),  # a has 390 left after t1
        TransferRequest("t3", _acct("a"), "buyer_balance:nobody:CNY", 1, "CNY"),
        TransferRequest("t1", _acct("a"), _acct("b"), 600, "CNY"),  # the same request twice in one batch
        TransferRequest("old", _acct("a"), _acct("b"), 10, "CNY"),  # a replay of a stored transfer
        TransferRequest("old", _acct("a"), _acct("b"), 11, "CNY"),  # the same id, another body
        TransferRequest("t4", _acct("c"), _acct("a"), 1_000, "CNY"),
    ]
    out = tx.run(lambda s: ledger.create_transfers(s, reqs))
    assert isinstance(out[0], ledger.Transfer) and out[0].amount == 600
    assert isinstance(out[1], InsufficientFunds)
    assert isinstance(out[2], NotFound)
    assert out[3] == out[0]
    assert isinstance(out[4], ledger.Transfer) and out[4].id == "old"
    assert isinstance(out[5], Conflict)
    assert isinstance(out[6], ledger.Transfer)
    bal = {n: tx.run(lambda s, n=n: ledger.balance(s, ledger.BUYER, n, "CNY")).posted for n in "abc"}
    assert bal == {"a": 1_000 - 10 - 600 + 1_000, "b": 1_000 + 10 + 600, "c": 0}
    # the accepted ones again: replays now, answered with the stored transfers, nothing moves
    again = tx.run(lambda s: ledger.create_transfers(s, [reqs[0], reqs[4], reqs[6]]))
    assert again == [out[0], out[4], out[6]]
    assert {n: tx.run(lambda s, n=n: ledger.balance(s, ledger.BUYER, n, "CNY")).posted for n in "abc"} == bal
    _clean(transfers=3 + 1 + 2)


def test_concurrent_submitters_share_transactions_and_every_transfer_counts(funded) -> None:
    n_threads, each = 12, 15
    errors: list[BaseException] = []

    def caller(t: int) -> None:
        names = ("a", "b", "c")
        for i in range(each):
            src, dst = names[(t + i) % 3], names[(t + i + 1) % 3]
            try:
                ledger.submit_transfer(f"c{t}-{i}", _acct(src), _acct(dst), 1 + i, "CNY")
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    # a replay through the same path answers with the stored transfer and moves nothing
    before = tx.run(lambda s: ledger.balance(s, ledger.BUYER, "a", "CNY"))
    again = ledger.submit_transfer("c0-0", _acct("a"), _acct("b"), 1, "CNY")
    assert again.id == "c0-0" and tx.run(lambda s: ledger.balance(s, ledger.BUYER, "a", "CNY")) == before
    with pytest.raises(Conflict):
        ledger.submit_transfer("c0-0", _acct("a"), _acct("b"), 2, "CNY")
    total = sum(tx.run(lambda s, n=n: ledger.balance(s, ledger.BUYER, n, "CNY")).posted for n in "abc")
    assert total == 3_000  # money only moved between the three
    _clean(transfers=3 + n_threads * each)
