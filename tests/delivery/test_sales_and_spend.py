"""A provider's sales and a buyer's spend come from settlement's attribution, and agree with the
period's statement, the ledger and the meter (these used to be raw queries in the web views)."""

from __future__ import annotations

from datetime import UTC, datetime

from ciyuan.db import tx
from ciyuan.delivery import plan, stream, usage
from ciyuan.ledger import ledger
from ciyuan.market import orders, quotes, settlement


def _stream_all(buyer: str, ent: str, max_tokens: int) -> None:
    cursor = None
    while (d := stream.next_batch(buyer, ent, cursor, max_tokens=max_tokens)).kind != "done":
        cursor = d.next_cursor


def test_sales_and_spend_of_a_paid_and_a_metered_order(db_home, h) -> None:
    env = h.make_market(price="777.77")
    ent = h.metered_entitlement(env)["entitlement"]["id"]
    _stream_all(env.buyer, ent, 2500)
    q = quotes.create_quote(env.buyer, env.listing["id"], {"token_budget": 20_000})
    order, _ = orders.place_order(env.buyer, q["id"], "paid-1")
    meter = tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))
    batches = len(tx.run(lambda s: usage.usage(s, entitlement_id=ent, limit=1000))["items"])
    assert batches >= 2

    spend = tx.run(lambda s: settlement.buyer_spend(s, env.buyer))
    assert spend["by_ref"] == {f"ent:{ent}": meter["amount_posted"], f"order:{order['id']}": order["amount"]}
    assert {c["listing_id"] for c in spend["charges"]} == {env.listing["id"]}
    buyer = tx.run(lambda s: ledger.balance(s, ledger.BUYER, env.buyer, "CNY"))
    assert sum(spend["by_ref"].values()) == buyer.debits_posted  # every posted debit is a purchase here

    sales = tx.run(lambda s: settlement.provider_sales(s, env.provider))
    (line,) = sales["by_listing"].values()
    assert line["listing_id"] == env.listing["id"]
    assert line["sales"] == batches + 1 and len(sales["sales"]) == batches + 1
    assert line["tokens"] == meter["tokens_posted"] + q["tokens"]
    prov = tx.run(lambda s: ledger.balance(s, ledger.PROVIDER, env.provider, "CNY"))
    assert line["amount"] == prov.posted

    today = datetime.now(UTC).date().isoformat()
    start, end = settlement.period(today, today)
    (st,) = tx.run(lambda s: settlement.compute(s, start, end))["statements"]
    (stmt,) = st["lines"]
    assert (stmt["sales"], stmt["tokens"], stmt["net"]) == (line["sales"], line["tokens"], line["amount"])
    assert tx.run(lambda s: settlement.provider_sales(s, env.accounts["alice"].id)) == {"sales": [], "by_listing": {}}
