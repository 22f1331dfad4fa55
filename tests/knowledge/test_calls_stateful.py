"""A hypothesis state machine makes metered calls (good, bad, repeated keys, changed requests, small
caps, deposits) against the real ledger and checks the money invariants after every step."""

from __future__ import annotations

import itertools
import uuid

from graphdata import EX, make_graph_market
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from ciyuan.db import tx
from ciyuan.delivery import calls, plan
from ciyuan.errors import CiyuanError
from ciyuan.ledger import ledger
from ciyuan.market import accounts, orders, quotes

P = f"PREFIX ex: <{EX}> "
QUERIES = [
    P + "SELECT ?s ?n WHERE { ?s ex:name ?n } ORDER BY ?s",
    P + "SELECT ?s ?p ?o WHERE { ?s ?p ?o } ORDER BY ?s ?p ?o",
    P + "ASK { ?s ex:age 34 }",
    P + "CONSTRUCT { ?b ex:knownBy ?a } WHERE { ?a ex:knows ?b }",
    P + "SELECT ?s WHERE { ?s ex:name }",  # a syntax error: the call fails, nothing moves
    "DELETE WHERE { ?s ?p ?o }",  # refused before anything is reserved
]
REFUSALS = {"bad_query", "query_refused", "token_limit", "entitlement_exhausted", "insufficient_funds"}


def test_calls_state_machine(db_home) -> None:
    env = make_graph_market(deposit="0.01")
    epochs = itertools.count()

    def bal(kind, owner):
        return tx.run(lambda s: ledger.balance(s, kind, owner, "CNY")).posted

    class Calls(RuleBasedStateMachine):
        @initialize(budget=st.sampled_from([None, 1000, 2000]), funds=st.integers(0, 300))
        def start(self, budget, funds):
            n = next(epochs)
            self.buyer = tx.run(lambda s: accounts.create_account(s, f"b{n}-{uuid.uuid4().hex[:8]}", "buyer")).id
            if funds:
                tx.run(lambda s: ledger.deposit(s, f"d{n}-0", self.buyer, funds, "CNY"))
            q = quotes.create_quote(self.buyer, env.listing["id"], {"token_budget": budget} if budget else None)
            order, _ = orders.place_order(self.buyer, q["id"], f"o{n}", billing="metered")
            self.ent = order["entitlement"]["id"]
            self.p = plan.plan(self.ent, None)
            self.n, self.deposits, self.funds = n, 1, funds
            self.spent = 0
            self.tokens = 0
            self.seen: dict[str, tuple] = {}
            self.base = (bal(ledger.PROVIDER, env.provider), bal(ledger.PLATFORM, None))

        @rule(key=st.sampled_from("abcde"), q=st.integers(0, len(QUERIES) - 1), cap=st.integers(1, 600))
        def make_call(self, key, q, cap):
            k = f"{self.n}:{key}"
            req = (q, cap)
            seen = self.seen.get(k)  # (request, "settled" | "failed", first answer) of a key that reached the ledger
            before = bal(ledger.BUYER, self.buyer)
            try:
                out = calls.sparql_call(self.buyer, env.listing["id"], QUERIES[q], idempotency_key=k,
                                        max_tokens=cap)
            except CiyuanError as exc:
                assert bal(ledger.BUYER, self.buyer) == before, "a refused or failed call moved money"
                if q == 5:  # an update is refused before its key is even looked up
                    assert exc.code == "query_refused"
                    return
                if seen is not None and seen[0] != req:
                    assert exc.code == "idempotency_conflict"
                    return
                assert seen is None or seen[1] == "failed"
                assert exc.code in REFUSALS, exc.code
                if exc.code == "token_limit" or (exc.code == "bad_query" and q == 4):  # failed after its reserve
                    self.seen[k] = (req, "failed", None)
                return
            u = out["usage"]
            assert seen is None or seen[0] == req, "a key was reused for another request"
            if seen is not None and seen[1] == "settled":
                assert u["replayed"] and out["result"] == seen[2]["result"] and out["usage"]["call_id"] == \
                    seen[2]["usage"]["call_id"]
                assert bal(ledger.BUYER, self.buyer) == before, "a retry was billed again"
                return
            assert not u["replayed"] and u["tokens"] <= u["cap_tokens"] <= cap
            assert before - bal(ledger.BUYER, self.buyer) == u["amount"]
            assert u["amount"] == self.p.price(self.tokens + u["tokens"]) - self.p.price(self.tokens)
            self.seen[k] = (req, "settled", out)
            self.spent += u["amount"]
            self.tokens += u["tokens"]

        @rule(amount=st.integers(1, 200))
        def deposit(self, amount):
            tx.run(lambda s: ledger.deposit(s, f"d{self.n}-{self.deposits}", self.buyer, amount, "CNY"))
            self.deposits += 1
            self.funds += amount

        @invariant()
        def money_is_exact(self):
            assert tx.run(ledger.check)["ok"]
            b = tx.run(lambda s: calls.budget(s, self.p))
            assert b["reserved"] == 0 and b["used"] == self.tokens <= self.p.tokens
            assert b["amount_posted"] == self.spent == self.p.price(self.tokens)
            buyer = tx.run(lambda s: ledger.balance(s, ledger.BUYER, self.buyer, "CNY"))
            assert buyer.posted == self.funds - self.spent and buyer.debits_pending == 0
            gained = (bal(ledger.PROVIDER, env.provider) - self.base[0], bal(ledger.PLATFORM, None) - self.base[1])
            assert sum(gained) == self.spent

    run_state_machine_as_test(
        Calls,
        settings=settings(max_examples=8, stateful_step_count=8, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]),
    )
