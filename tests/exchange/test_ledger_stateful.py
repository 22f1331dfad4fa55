"""A hypothesis state machine drives deposits, charges, holds, posts, voids, expiries, quotes and
orders against the real ledger, and checks every invariant after every step against a plain model."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test
from sqlalchemy import select

from ciyuan.clock import aware
from ciyuan.db import tx
from ciyuan.errors import CiyuanError, Conflict
from ciyuan.ledger import ledger
from ciyuan.ledger.ledger import InsufficientFunds, split
from ciyuan.market import accounts, orders, quotes
from ciyuan.market.quotes import QuoteExpired
from ciyuan.market.tables import QuoteRow

FILTERS = [
    None,
    {"field": "meta.language", "op": "eq", "value": "zh"},
    {
        "and": [
            {"field": "meta.domain", "op": "in", "value": ["law", "finance"]},
            {"field": "meta.score", "op": "ge", "value": 0.5},
        ]
    },
]


@dataclass
class Hold:
    id: str
    buyer: str
    amount: int
    expires_at: datetime
    state: str = "pending"


def test_ledger_state_machine(market_env):
    env = market_env
    buyers = ["alice", "bob"]  # labels; each example gets two fresh buyer accounts, so a replay is exact
    provider = env.accounts["prov"].id
    listing = env.listing["id"]
    fee_bps = 1000
    epochs = itertools.count()

    def now_bal(kind, owner):
        return tx.run(lambda s: ledger.balance(s, kind, owner, "CNY"))

    class Ledger(RuleBasedStateMachine):
        @initialize()
        def start(self):
            # each example runs on its own day, after sweeping what earlier examples left pending
            self.now = datetime(2031, 1, 1, tzinfo=UTC) + timedelta(days=next(epochs))
            tx.run(lambda s: ledger.expire_due(s, now=self.now))
            self.ids = {
                b: tx.run(lambda s, b=b: accounts.create_account(s, f"{b}-{uuid.uuid4().hex[:12]}", "buyer")).id
                for b in buyers
            }
            self.base = {b: 0 for b in buyers}
            self.base_provider = now_bal(ledger.PROVIDER, provider).posted
            self.base_fees = now_bal(ledger.PLATFORM, None).posted
            self.posted = {b: 0 for b in buyers}
            self.holds: list[Hold] = []
            self.share = 0
            self.fees = 0
            self.deposits: list[tuple[str, str, int]] = []
            self.orders: list[tuple[str, str, str, str]] = []  # buyer, key, quote id, order id

        # -- model helpers ----------------------------------------------------------------------
        def lazy_expire(self, buyer):
            """The ledger expires a buyer's due holds when that buyer acts; returns them, so a request
            that then fails can put them back: a failed request leaves the ledger as it was."""
            due = [h for h in self.holds if h.buyer == buyer and h.state == "pending" and h.expires_at <= self.now]
            for h in due:
                h.state = "expired"
            return due

        @staticmethod
        def unexpire(due):
            for h in due:
                h.state = "pending"

        def available(self, buyer):
            held = sum(h.amount for h in self.holds if h.buyer == buyer and h.state == "pending")
            return self.base[buyer] + self.posted[buyer] - held

        def pay(self, amount):
            share, fee = split(amount, fee_bps)
            self.share += share
            self.fees += fee

        # -- rules ------------------------------------------------------------------------------
        @rule(b=st.sampled_from(buyers), amount=st.integers(1, 5000))
        def deposit(self, b, amount):
            tid = f"dep-{uuid.uuid4().hex}"
            tx.run(lambda s: ledger.deposit(s, tid, self.ids[b], amount, "CNY", now=self.now))
            self.posted[b] += amount
            self.deposits.append((tid, b, amount))

        @rule(data=st.data())
        def replay_deposit(self, data):
            if not self.deposits:
                return
            tid, b, amount = data.draw(st.sampled_from(self.deposits))
            tx.run(lambda s: ledger.deposit(s, tid, self.ids[b], amount, "CNY", now=self.now))
            try:
                tx.run(lambda s: ledger.deposit(s, tid, self.ids[b], amount + 1, "CNY", now=self.now))
                raise AssertionError("a changed body under the same id must conflict")
            except Conflict:
                pass

        @rule(b=st.sampled_from(buyers), amount=st.integers(1, 3000))
        def charge(self, b, amount):
            due = self.lazy_expire(b)
            ok = amount <= self.available(b)
            try:
                tx.run(
                    lambda s: ledger.charge(
                        s, f"chg-{uuid.uuid4().hex}", self.ids[b], provider, amount, "CNY", fee_bps=fee_bps,
                        now=self.now,
                    )
                )
            except InsufficientFunds:
                assert not ok
                self.unexpire(due)
                return
            assert ok
            self.posted[b] -= amount
            self.pay(amount)

        @rule(b=st.sampled_from(buyers), amount=st.integers(1, 3000), timeout=st.integers(1, 600))
        def hold(self, b, amount, timeout):
            due = self.lazy_expire(b)
            ok = amount <= self.available(b)
            hid = f"hold-{uuid.uuid4().hex}"
            try:
                tx.run(lambda s: ledger.hold(s, hid, self.ids[b], amount, "CNY", timeout_s=timeout, now=self.now))
            except InsufficientFunds:
                assert not ok
                self.unexpire(due)
                return
            assert ok
            self.holds.append(Hold(hid, b, amount, self.now + timedelta(seconds=timeout)))

        def _resolve(self, h: Hold, op: str, fraction: float):
            if h.state == "pending" and h.expires_at <= self.now:
                h.state = "expired"
            amount = int(h.amount * fraction)
            tid = f"{op}-{uuid.uuid4().hex}"
            try:
                if op == "post":
                    tx.run(lambda s: ledger.capture(s, tid, h.id, provider, amount, fee_bps=fee_bps, now=self.now))
                else:
                    tx.run(lambda s: ledger.release(s, tid, h.id, now=self.now))
            except Conflict as exc:
                assert h.state != "pending", exc
                assert exc.code == f"pending_{h.state}"
                return
            assert h.state == "pending"
            if op == "post":
                h.state = "posted"
                self.posted[h.buyer] -= amount
                self.pay(amount)
            else:
                h.state = "voided"

        @rule(data=st.data(), fraction=st.sampled_from([0.0, 0.3, 1.0]))
        def post(self, data, fraction):
            if self.holds:
                self._resolve(data.draw(st.sampled_from(self.holds)), "post", fraction)

        @rule(data=st.data())
        def void(self, data):
            if self.holds:
                self._resolve(data.draw(st.sampled_from(self.holds)), "void", 1.0)

        @rule(seconds=st.integers(1, 700))
        def advance(self, seconds):
            self.now += timedelta(seconds=seconds)

        @rule()
        def sweep(self):
            tx.run(lambda s: ledger.expire_due(s, now=self.now))
            for h in self.holds:
                if h.state == "pending" and h.expires_at <= self.now:
                    h.state = "expired"

        @rule(
            b=st.sampled_from(buyers),
            f=st.sampled_from(FILTERS),
            budget=st.one_of(st.none(), st.integers(300, 20_000)),
            age=st.sampled_from([0, 0, 1000]),
        )
        def quote_and_order(self, b, f, budget, age):
            q = quotes.create_quote(self.ids[b], listing, {"filter": f, "token_budget": budget}, now=self.now)
            self.now += timedelta(seconds=age)  # 1000 s is past the 900 s quote lifetime
            key = uuid.uuid4().hex
            expired = age > 900
            due = [] if expired else self.lazy_expire(b)
            ok = not expired and q["amount"] <= self.available(b)
            try:
                order, replay = orders.place_order(self.ids[b], q["id"], key, now=self.now)
            except QuoteExpired:
                assert expired
                return
            except InsufficientFunds:
                assert not expired and not ok
                self.unexpire(due)
                return
            assert ok and not replay
            assert order["entitlement"]["tokens"] == q["tokens"]
            self.posted[b] -= q["amount"]
            self.pay(q["amount"])
            self.orders.append((b, key, q["id"], order["id"]))

        @rule(data=st.data())
        def replay_order(self, data):
            if not self.orders:
                return
            b, key, qid, oid = data.draw(st.sampled_from(self.orders))
            order, replay = orders.place_order(self.ids[b], qid, key, now=self.now)
            assert replay and order["id"] == oid
            other = [o for o in self.orders if o[0] == b and o[2] != qid]
            if other:
                try:
                    orders.place_order(self.ids[b], other[0][2], key, now=self.now)
                    raise AssertionError("reusing a key for another quote must conflict")
                except Conflict:
                    pass

        @rule(data=st.data(), n=st.integers(1, 6))
        def orders_in_one_unit_of_work(self, data, n):
            """Orders committed together (the HTTP hot path's group commit) move money exactly as
            the same orders one after another; a due hold of a buyer whose order reached the
            charge is expired for good (the batch commits), as a sweep would."""
            reqs, kinds = [], []
            for _ in range(n):
                kind = data.draw(st.sampled_from(["new", "new", "expired", "replay", "again"]))
                b = data.draw(st.sampled_from(buyers))
                if kind == "replay" and self.orders:
                    b, key, qid, _ = data.draw(st.sampled_from(self.orders))
                elif kind == "again" and reqs:
                    b, qid, key = reqs[-1]  # the previous request once more, in the same batch
                else:
                    kind = "new" if kind in ("replay", "again") else kind
                    age = 1000 if kind == "expired" else 0
                    qid = quotes.create_quote(self.ids[b], listing, {"filter": FILTERS[1]},
                                              now=self.now - timedelta(seconds=age))["id"]
                    key = uuid.uuid4().hex
                reqs.append((b, qid, key))
                kinds.append(kind)
            charged = {b for (b, _, _), k in zip(reqs, kinds, strict=True) if k == "new"}
            for b in charged:
                self.lazy_expire(b)
            out = tx.run(lambda s: orders.place_orders(
                s, [orders.OrderRequest(self.ids[b], q, k) for b, q, k in reqs], fee_bps=fee_bps, now=self.now))
            first: dict = {}  # (buyer, key) -> the answer of its first request in this batch
            for (b, qid, key), a in zip(reqs, out, strict=True):
                earlier = first.get((b, key))
                known = next((o for o in self.orders if o[0] == b and o[1] == key), None)
                if earlier is not None:  # the same request again: the first one's outcome, as a replay
                    if isinstance(earlier, CiyuanError):
                        assert type(a) is type(earlier), (a, earlier)
                    else:
                        assert a == (earlier[0], True)
                    continue
                first[(b, key)] = a
                if known is not None:
                    assert not isinstance(a, CiyuanError) and a[1] and a[0]["id"] == known[3]
                    continue
                amount = tx.run(lambda s, qid=qid: s.execute(
                    select(QuoteRow.amount, QuoteRow.expires_at).where(QuoteRow.id == qid)).one())
                if aware(amount.expires_at) <= self.now:
                    assert isinstance(a, QuoteExpired), a
                    continue
                if amount.amount > self.available(b):
                    assert isinstance(a, InsufficientFunds), a
                    continue
                assert not isinstance(a, CiyuanError) and not a[1], a
                self.posted[b] -= amount.amount
                self.pay(amount.amount)
                self.orders.append((b, key, qid, a[0]["id"]))

        # -- invariants -------------------------------------------------------------------------
        @invariant()
        def ledger_is_consistent(self):
            rep = tx.run(ledger.check)
            assert rep["ok"], rep["differences"]
            assert rep["totals"]["debits_posted"] == rep["totals"]["credits_posted"]
            assert rep["totals"]["debits_pending"] == rep["totals"]["credits_pending"]

        @invariant()
        def balances_match_the_model(self):
            for b in buyers:
                got = now_bal(ledger.BUYER, self.ids[b])
                assert got.posted == self.base[b] + self.posted[b]
                held = sum(h.amount for h in self.holds if h.buyer == b and h.state == "pending")
                assert got.debits_pending == held
                assert got.available >= 0
            assert now_bal(ledger.PROVIDER, provider).posted == self.base_provider + self.share
            assert now_bal(ledger.PLATFORM, None).posted == self.base_fees + self.fees
            assert now_bal(ledger.HOLDS, None).posted == 0

    run_state_machine_as_test(
        Ledger,
        settings=settings(
            max_examples=30, stateful_step_count=30, deadline=None, suppress_health_check=list(HealthCheck)
        ),
    )
