"""Limits in the exchange's own code, below HTTP: money parsing, 64-bit ledger totals, key expiry and
revocation, NUL bytes in published meta; through the library and the CLI on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from fractions import Fraction

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from ciyuan.cli.main import app as cli
from ciyuan.db import tx
from ciyuan.errors import Conflict, InvalidInput
from ciyuan.ledger import ledger
from ciyuan.ledger.money import parse_amount, parse_rate
from ciyuan.ledger.tables import LedgerAccountRow
from ciyuan.market import accounts, catalog, listings, quotes, selection
from ciyuan.market.accounts import Unauthenticated
from ciyuan.market.tables import ListingTagRow

runner = CliRunner()
CST = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1e999999999", "out of range"),  # decimal.Overflow before
        ("-1e999999999", "out of range"),
        ("1e-999999999", "more than 6 decimals"),  # a fraction with a billion-digit denominator before
        ("9" * 80, "characters long"),
        ("NaN", "not a finite number"),
        ("-Infinity", "not a finite number"),
        ("1e10", "above 1,000,000,000"),
    ],
)
def test_rates_out_of_range_are_refused_by_name(text, why):
    with pytest.raises(InvalidInput, match=why) as err:
        parse_rate(text, what="min_price")
    assert err.value.message.startswith("min_price")
    with pytest.raises(InvalidInput) as err:
        parse_rate(text)
    assert err.value.message.startswith("price_per_mtok")


def test_amounts_out_of_range_are_refused_by_name():
    for text in ("1e999999999", "1e-999999999", "1e14", "0", "0e-999999999", "0.001"):
        with pytest.raises(InvalidInput) as err:
            parse_amount(text, "CNY")
        assert err.value.message.startswith("amount"), text
    assert parse_amount("12.500000", "CNY") == 1250
    assert parse_amount("1e2", "CNY") == 10000
    assert parse_amount("10000000000000.00", "CNY") == 10**15
    assert parse_amount("7", "JPY") == 7
    assert parse_rate("0e-999999999") == 0
    assert parse_rate("12.3400000000") == Fraction(1234, 100)
    assert parse_rate("0.000001") == Fraction(1, 10**6)


def test_filters_refuse_non_finite_numbers():
    for bad in (float("inf"), float("-inf"), float("nan")):
        with pytest.raises(InvalidInput, match="value must be"):
            selection.parse_filter({"field": "meta.score", "op": "ge", "value": bad})
        with pytest.raises(InvalidInput, match="in needs a list"):
            selection.parse_filter({"field": "meta.score", "op": "in", "value": [1.0, bad]})
    assert selection.parse_filter({"field": "meta.score", "op": "ge", "value": 1e308}) is not None


def test_cli_refuses_huge_prices_and_amounts_without_a_traceback(market_env):
    res = runner.invoke(cli, ["ledger", "deposit", "alice", "1e999999999", "--json"])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "amount 1e999999999 is out of range" in res.output
    res = runner.invoke(cli, ["publish", market_env.version.ref, "--price", "1e999999999", "--provider", "prov"])
    assert res.exit_code == 2, res.output
    assert "price_per_mtok 1e999999999 is out of range" in res.output


def _set_total(account_id: str, **cols: int) -> None:
    """Put a running total near 2^63 (reaching it with real deposits would take 9,224 of the 10^13 CNY maximum)."""
    tx.run(lambda s: s.execute(update(LedgerAccountRow).where(LedgerAccountRow.id == account_id).values(**cols)))


def test_totals_past_64_bits_are_refused_on_every_path(market_env):
    """Posted, pending and the post of a hold: each refuses before any total changes (SQLite raised OverflowError)."""
    alice = market_env.accounts["alice"].id
    tx.run(lambda s: ledger.deposit(s, "d1", alice, 10_000, "CNY"))
    buyer = ledger.account_id(ledger.BUYER, alice, "CNY")
    holds = ledger.shard_account(ledger.HOLDS, None, "CNY", ledger.shard_of(alice))  # the escrow alice's holds use
    hold = tx.run(lambda s: ledger.hold(s, "h1", alice, 500, "CNY", timeout_s=600))

    _set_total(buyer, credits_posted=ledger.INT64_MAX - 10)
    with pytest.raises(ledger.LedgerOverflow, match="credits_posted would reach") as err:
        tx.run(lambda s: ledger.deposit(s, "d2", alice, 11, "CNY"))
    assert err.value.status == 422 and buyer in err.value.message
    tx.run(lambda s: ledger.deposit(s, "d3", alice, 10, "CNY"))  # exactly 2^63 - 1 fits

    _set_total(holds, credits_pending=ledger.INT64_MAX - 100)
    with pytest.raises(ledger.LedgerOverflow, match="credits_pending"):
        tx.run(lambda s: ledger.hold(s, "h2", alice, 101, "CNY"))

    _set_total(holds, credits_posted=ledger.INT64_MAX - 100, credits_pending=500)
    with pytest.raises(ledger.LedgerOverflow, match="credits_posted"):
        tx.run(lambda s: ledger.capture(s, "c1", hold.id, market_env.accounts["prov"].id))
    after = tx.run(lambda s: ledger.get_transfer(s, hold.id))
    assert after.state == "pending"  # nothing was half-applied
    assert tx.run(lambda s: ledger.balance(s, ledger.HOLDS, None, "CNY")).credits_pending == 500


def test_key_expiry_with_an_offset_is_one_instant(db_home):
    """An ISO expiry with ``+08:00`` is stored as UTC: on SQLite the offset was dropped (8 hours too long)."""
    now = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert accounts.parse_expiry("2030-01-01T20:00:00+08:00", now) == now
    assert accounts.parse_expiry("2030-01-01T12:00:00", now) == now
    assert accounts.parse_expiry("2h", now) == now + timedelta(hours=2)
    tx.run(lambda s: accounts.create_account(s, "carol", "buyer"))
    an_hour_ago = (datetime.now(UTC) - timedelta(hours=1)).astimezone(CST)
    _, secret = tx.run(lambda s: accounts.create_key(s, "carol", None, an_hour_ago))
    with pytest.raises(Unauthenticated, match="expired"):
        tx.run(lambda s: accounts.authenticate(s, secret))
    res = runner.invoke(cli, ["key", "create", "carol", "--expires", an_hour_ago.isoformat(), "--json"])
    assert res.exit_code == 0, res.output
    made = json.loads(res.output)
    with pytest.raises(Unauthenticated, match="expired"):
        tx.run(lambda s: accounts.authenticate(s, made["key"]))
    in_an_hour = (datetime.now(UTC) + timedelta(hours=1)).astimezone(CST)
    _, live = tx.run(lambda s: accounts.create_key(s, "carol", None, in_an_hour))
    assert tx.run(lambda s: accounts.authenticate(s, live)).account.name == "carol"


def test_the_last_operator_key_is_kept(db_home):
    tx.run(lambda s: accounts.create_account(s, "root", "operator"))
    first, _ = tx.run(lambda s: accounts.create_key(s, "root"))
    with pytest.raises(Conflict, match="last active operator key") as err:
        tx.run(lambda s: accounts.revoke_key(s, first["id"]))
    assert err.value.code == "last_operator_key" and "ciyuan key create root" in err.value.hint
    res = runner.invoke(cli, ["key", "revoke", first["id"]])
    assert res.exit_code == 2 and "last active operator key" in res.output
    second, _ = tx.run(lambda s: accounts.create_key(s, "root"))
    assert tx.run(lambda s: accounts.revoke_key(s, first["id"]))["revoked_at"] is not None
    assert tx.run(lambda s: accounts.revoke_key(s, first["id"]))["revoked_at"] is not None  # again: a no-op
    with pytest.raises(Conflict):
        tx.run(lambda s: accounts.revoke_key(s, second["id"]))


def test_nul_bytes_in_meta_do_not_crash_publish(db_home):
    """PostgreSQL text refuses NUL: a facet value with one crashed ``publish``; now it stays in the card only."""
    from ciyuan.store import VersionBuilder

    tx.run(lambda s: accounts.create_account(s, "prov", "provider"))
    b = VersionBuilder("nul", made_by={"tool": "tests"})
    for i in range(12):
        lang = "z\x00h" if i % 2 else "en"
        meta = {"language": lang, "domain": "la\x00w", "k\x00ey": f"v\x00{i}", "score": i / 10}
        b.add({"id": f"r{i}", "text": f"text \x00 {i}", "meta": meta, "tokens": {"cl100k_base": 4}})
    version = b.commit()
    res = runner.invoke(cli, ["publish", version.ref, "--price", "1.00", "--provider", "prov", "--json"])
    assert res.exit_code == 0, res.output
    listing = json.loads(res.output)
    assert listing["card"]["facets"]["language"] == {"en": 6, "z\x00h": 6}
    assert listing["records"] == 12
    detail = tx.run(lambda s: listings.listing_detail(s, listing["id"]))
    assert detail["card"]["facets"]["domain"] == {"la\x00w": 12}
    assert detail["sample"][0]["meta"]["k\x00ey"] == "v\x000"
    tags = tx.run(lambda s: {(t.facet, t.value) for t in s.query(ListingTagRow).filter_by(listing_id=listing["id"])})
    assert tags == {("modality", "text"), ("language", "en")}  # values with NUL are not searchable tags
    found = tx.run(lambda s: catalog.search(s, language="en"))
    assert [i["id"] for i in found["items"]] == [listing["id"]]
    q = quotes.create_quote(
        tx.run(lambda s: accounts.create_account(s, "buy", "buyer")).id,
        listing["id"],
        {"filter": {"field": "meta.language", "op": "eq", "value": "z\x00h"}},
    )
    assert q["records"] == 6
