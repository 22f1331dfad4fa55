"""The exchange's 'suggested' price comes from the stored appraisal."""

from __future__ import annotations

from fractions import Fraction


def test_publish_at_the_suggested_price(home):
    from ciyuan.appraise import engine
    from ciyuan.appraise.pricing import suggest_rate
    from ciyuan.db import tx
    from ciyuan.market import listings
    from ciyuan.market.accounts import create_account
    from ciyuan.store import VersionBuilder

    b = VersionBuilder("hooked", made_by={"tool": "test"})
    b.extra = {"license": "CC-BY-4.0", "domain": "legal"}
    for i in range(40):
        b.add({"text": f"Clause {i}: the licensee may copy and distribute the work, item {i}."})
    v = b.commit()
    tx.run(lambda sess: create_account(sess, "alice", "provider"))
    listing = listings.publish(v.ref, provider="alice", price_per_mtok="suggested")
    ap = engine.load(v.ref)  # appraised on the way, since it had not been
    assert suggest_rate(v, "cl100k_base", "CNY") == Fraction(ap["price"]["price_per_mtok_minor"], 100)
    from ciyuan.market.pricing import PriceSchedule

    # the listing's schedule charges exactly the suggested rate (per million tokens, minor units)
    assert PriceSchedule.from_dict(listing["price"]).price(1_000_000) == ap["price"]["price_per_mtok_minor"]
