"""Metered calls against the real ledger: the cap is held, the exact tokens settled, the rest released;
a retry with the same key is billed once; a failed call leaves every balance as it was; the
entitlement's tokens bound the calls; receipts cover them (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from graphdata import EX, entitlement, make_graph_market

from ciyuan.db import tx
from ciyuan.delivery import calls, plan, receipts
from ciyuan.errors import Conflict, InvalidInput
from ciyuan.knowledge import sparql
from ciyuan.ledger import audit, ledger

P = f"PREFIX ex: <{EX}> "
NAMES = P + "SELECT ?s ?n WHERE { ?s ex:name ?n } ORDER BY ?s"
ALL = P + "SELECT ?s ?p ?o WHERE { ?s ?p ?o } ORDER BY ?s ?p ?o"


def balances(env) -> tuple:
    def read(sess):
        return tuple(ledger.balance(sess, kind, owner, "CNY") for kind, owner in
                     [(ledger.BUYER, env.buyer), (ledger.PROVIDER, env.provider), (ledger.PLATFORM, None)])
    return tx.run(read)


def clean(ent_id: str) -> dict:
    assert tx.run(ledger.check)["ok"]
    assert tx.run(audit.verify)["ok"]
    p = plan.plan(ent_id, None)
    b = tx.run(lambda sess: calls.budget(sess, p))
    assert b["reserved"] == 0 and 0 <= b["used"] <= b["tokens"]
    assert b["amount_posted"] == (p.price(b["used"]) if p.metered else 0)
    return b


@pytest.fixture
def env(db_home):
    return make_graph_market()


def test_a_call_settles_its_exact_tokens_and_releases_the_rest(env) -> None:
    ent = entitlement(env)
    before = balances(env)
    out = calls.sparql_call(env.buyer, env.listing["id"], NAMES, idempotency_key="q1", max_tokens=5000)
    u = out["usage"]
    p = plan.plan(ent["id"], None)
    assert out["rows"] == 8 and u["tokens"] == out["tokens"] > 0 and u["cap_tokens"] == min(5000, p.tokens)
    assert u["amount"] == p.price(u["tokens"]) > 0 and not u["replayed"]
    after = balances(env)
    assert before[0].posted - after[0].posted == u["amount"] and after[0].debits_pending == 0
    assert after[1].posted - before[1].posted + after[2].posted - before[2].posted == u["amount"]
    # the tokens are the result's lines counted under the listing's schedule
    r = sparql.query(env.version, NAMES, count=sparql.text_counter(p.tokenizer))
    assert r.tokens == u["tokens"]
    b = clean(ent["id"])
    assert b["used"] == u["tokens"]
    st = tx.run(lambda sess: receipts.statement(sess, p))
    assert [(x["batch_id"], x["tokens"], x["amount"]) for x in st["batches"]] == [(u["call_id"], u["tokens"],
                                                                                     u["amount"])]


def test_retry_with_the_same_key_returns_the_first_answer_and_is_billed_once(env) -> None:
    ent = entitlement(env)
    first = calls.sparql_call(env.buyer, env.listing["id"], NAMES, idempotency_key="same")
    mid = balances(env)
    again = calls.sparql_call(env.buyer, env.listing["id"], NAMES, idempotency_key="same")
    assert again["usage"]["replayed"] and again["result"] == first["result"]
    assert {k: v for k, v in again["usage"].items() if k != "replayed"} == \
           {k: v for k, v in first["usage"].items() if k != "replayed"}
    assert balances(env) == mid
    with pytest.raises(Conflict) as e:
        calls.sparql_call(env.buyer, env.listing["id"], ALL, idempotency_key="same")
    assert e.value.code == "idempotency_conflict"
    assert clean(ent["id"])["used"] == first["usage"]["tokens"]


@pytest.mark.parametrize("bad,kind", [(P + "SELECT ?s WHERE { ?s ex:name }", InvalidInput),
                                      ("SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . "
                                       "?j ?k ?l . ?m ?n2 ?o . ?q ?r ?t }", sparql.QueryTimeout)])
def test_a_failed_call_leaves_the_ledger_as_it_was(env, bad, kind) -> None:
    ent = entitlement(env)
    before = balances(env)
    with pytest.raises(kind):
        calls.sparql_call(env.buyer, env.listing["id"], bad, idempotency_key="bad", timeout_s=0.5)
    assert balances(env) == before
    b = clean(ent["id"])
    assert b["used"] == 0 and b["left"] == b["tokens"]
    # nothing was billed, so the same key may try again (and fail again, billing nothing)
    with pytest.raises(kind):
        calls.sparql_call(env.buyer, env.listing["id"], bad, idempotency_key="bad", timeout_s=0.5)
    assert balances(env) == before


def test_refused_query_is_refused_before_anything_is_reserved(env) -> None:
    entitlement(env)
    before = tx.run(lambda sess: len(ledger.transfers(sess)))
    with pytest.raises(InvalidInput):
        calls.sparql_call(env.buyer, env.listing["id"], "DROP ALL")
    assert tx.run(lambda sess: len(ledger.transfers(sess))) == before


def test_the_entitlements_tokens_bound_the_calls(env) -> None:
    ent = entitlement(env, token_budget=1000)
    p = plan.plan(ent["id"], None)
    total = 0
    outs = []
    for i in range(20):
        try:
            out = calls.sparql_call(env.buyer, env.listing["id"], ALL, idempotency_key=f"b{i}", max_tokens=150)
        except (Conflict, InvalidInput) as exc:  # none left, or too few for the next row
            assert exc.code in ("entitlement_exhausted", "token_limit") and "buy more tokens" in exc.hint
            break
        outs.append(out)
        total += out["usage"]["tokens"]
        assert out["usage"]["cap_tokens"] <= 150 and out["truncated"]
    else:
        raise AssertionError("the budget never ran out")
    assert total <= p.tokens
    before = balances(env)
    with pytest.raises((Conflict, InvalidInput)):
        calls.sparql_call(env.buyer, env.listing["id"], ALL, idempotency_key="past")
    assert balances(env) == before
    b = clean(ent["id"])
    assert b["used"] == total and b["left"] < 40  # less than two rows were left
    if b["left"]:  # a small enough answer still fits what is left
        out = calls.sparql_call(env.buyer, env.listing["id"], P + "ASK { ?s ex:age 34 }", idempotency_key="ask")
        assert out["usage"]["tokens"] <= b["left"]


def test_calls_need_an_entitlement_of_the_listing(env) -> None:
    from ciyuan.errors import NotFound

    with pytest.raises(NotFound) as e:
        calls.sparql_call(env.buyer, env.listing["id"], NAMES)
    assert e.value.code == "no_entitlement" and "POST /v1/quotes" in e.value.hint


def test_prepaid_entitlement_draws_tokens_without_charging_again(env) -> None:
    ent = entitlement(env, metered=False)
    before = balances(env)
    out = calls.sparql_call(env.buyer, env.listing["id"], NAMES)
    assert out["usage"]["amount"] == 0 and out["usage"]["billing"] == "prepaid"
    assert balances(env) == before
    assert clean(ent["id"])["used"] == out["usage"]["tokens"]


def test_a_cap_beyond_the_funds_is_cut_to_what_they_hold(db_home) -> None:
    env = make_graph_market(price="2000.00", deposit="1.00")  # 0.2 fen a token: 1 CNY holds 500
    entitlement(env)
    out = calls.sparql_call(env.buyer, env.listing["id"], ALL, max_tokens=100_000)
    assert out["usage"]["cap_tokens"] <= 500 and out["usage"]["amount"] <= 100
    assert balances(env)[0].debits_pending == 0


def test_a_call_whose_process_died_is_released_by_the_next_call_after_its_hold_times_out(env) -> None:
    from datetime import timedelta

    from ciyuan.clock import utc_now
    from ciyuan.config import settings

    ent = entitlement(env)
    p = plan.plan(ent["id"], None)
    start = utc_now()
    cid = calls.call_id_of(p.entitlement_id, "died")
    # the reserve step of a call whose process then died: its cap and its hold stay
    tx.run(lambda sess: calls._reserve(sess, p, cid, "died", "sparql", "0" * 64, 500, start, settings()))
    b = tx.run(lambda sess: calls.budget(sess, p))
    assert b["reserved"] == 500 and balances(env)[0].debits_pending > 0
    with pytest.raises(Conflict) as e:  # a retry while it may still be running is told to wait
        tx.run(lambda sess: calls._reserve(sess, p, cid, "died", "sparql", "0" * 64, 500, start, settings()))
    assert e.value.code == "call_running"
    later = start + timedelta(seconds=calls.CALL_HOLD_S + 1)
    out = calls.sparql_call(env.buyer, env.listing["id"], NAMES, idempotency_key="next", now=later)
    assert out["usage"]["tokens"] > 0
    assert balances(env)[0].debits_pending == 0
    b = clean(ent["id"])
    assert b["used"] == out["usage"]["tokens"]
