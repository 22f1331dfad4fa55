"""Browser walks through the exchange: catalog, dataset page, quote and buy, dashboards, languages.

Each test drives Debian's Chromium against a real uvicorn server (see conftest.py) and saves a
screenshot of every page it visits to ``artifacts/screenshots/``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

# one xdist worker runs them all, in file order, against one exchange (built once per module)
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-browser")]


def _expect():
    from playwright.sync_api import expect

    return expect


def sign_in(page, key: str, next_path: str = "") -> None:
    page.goto("/signin" + (f"?next={next_path}" if next_path else ""))
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def _money(text: str) -> int:
    """'123.45 CNY' -> 12345 minor units."""
    m = re.search(r"(-?\d+)\.(\d\d)", text)
    assert m, text
    return int(m.group(1)) * 100 + (int(m.group(2)) if not m.group(1).startswith("-") else -int(m.group(2)))


def _db(exchange, fn):
    """Run ``fn(session)`` against the exchange's home (the same database the server reads)."""
    from ciyuan.db import tx

    return tx.run(fn)


def test_catalog_lists_the_sample_with_its_token_count_and_price(page, exchange, shot) -> None:
    expect = _expect()
    lst = exchange.listing
    page.goto("/")
    card = page.locator(f'[data-listing="{lst["id"]}"]')
    expect(card).to_contain_text("sample-maintenance")
    expect(card.get_by_test_id("tokens")).to_have_text(f"{lst['tokens']:,}")
    expect(card.get_by_test_id("price")).to_have_text("20 CNY")
    assert lst["tokens"] > 100_000  # the bundled sample, counted with cl100k_base at ingest
    shot(page, "01-catalog")


def test_catalog_filters_by_language_and_sorts_by_price(page, exchange) -> None:
    expect = _expect()
    whole, mini = exchange.listing["id"], exchange.curated["id"]
    page.goto("/?sort=price_desc")
    order = page.locator("[data-listing]").evaluate_all("els => els.map(e => e.dataset.listing)")
    assert order.index(mini) < order.index(whole)  # 35 CNY before 20 CNY
    page.get_by_label("Sort by").select_option("price_asc")
    page.get_by_role("button", name="Apply").click()
    order = page.locator("[data-listing]").evaluate_all("els => els.map(e => e.dataset.listing)")
    assert order.index(whole) < order.index(mini)
    # only the curated slice has meta.language (curation's langid step adds it)
    page.get_by_label("Language").select_option("zh")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(f'[data-listing="{mini}"]')).to_be_visible()
    expect(page.locator(f'[data-listing="{whole}"]')).to_have_count(0)
    page.get_by_label("Language").select_option("")
    page.get_by_label("Max tokens").fill(str(exchange.curated["tokens"]))
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("result-count")).to_have_text("1 found")


def test_appraised_dataset_page_shows_quality_values_and_reports(page, exchange, shot) -> None:
    expect = _expect()
    mini = exchange.curated
    page.goto(f"/listings/{mini['id']}")
    expect(page.get_by_test_id("quality-score")).not_to_have_text("—")
    expect(page.get_by_test_id("quality-chart").locator("rect.bar")).to_have_count(9)
    expect(page.get_by_test_id("learning-curve").locator("svg polyline")).to_have_count(1)
    expect(page.get_by_test_id("record-values").locator("rect.bar").first).to_be_attached()
    # the second tier shows in the price table, and the calculator uses it
    expect(page.get_by_text("20,000", exact=True)).to_be_visible()
    shot(page, "12-listing-appraised")
    page.get_by_test_id("appraisal-report").click()
    expect(page.locator("svg").first).to_be_visible()
    page.go_back()
    page.get_by_test_id("curation-report").click()
    expect(page.get_by_text("normalise text").first).to_be_visible()
    shot(page, "13-curation-report")
    page.go_back()
    card = page.request.get(f"/listings/{mini['id']}/croissant.json").json()
    assert card["@type"] in ("sc:Dataset", "Dataset", "schema:Dataset")


def test_filter_open_quote_buy_then_dashboards(page, exchange, shot) -> None:
    from ciyuan.ledger import ledger
    from ciyuan.market import quotes
    from ciyuan.market.pricing import PriceSchedule

    expect = _expect()
    lst = exchange.listing

    # catalog: filters that keep the sample, then one that excludes it
    page.goto("/")
    page.get_by_label("Domain").select_option("wind_power")
    page.get_by_label("Min tokens").fill("1000")
    page.get_by_label("Sort by").select_option("tokens_desc")
    page.get_by_role("button", name="Apply").click()
    expect(page).to_have_url(re.compile(r"domain=wind_power"))
    expect(page.locator(f'[data-listing="{lst["id"]}"]')).to_be_visible()
    shot(page, "02-catalog-filtered")
    page.get_by_label("Max price / M tokens").fill("1")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("result-count")).to_have_text("0 found")
    page.get_by_role("link", name="Reset").click()

    # dataset page: card, tokens per tokenizer, sample with token counts, calculator
    page.get_by_role("link", name="sample-maintenance").first.click()
    expect(page).to_have_url(re.compile(f"/listings/{lst['id']}"))
    expect(page.get_by_test_id("license")).to_have_text("CC-BY-4.0")
    expect(page.get_by_test_id("tokens-by-tokenizer")).to_contain_text(f"{lst['tokens']:,}")
    sample_rows = page.get_by_test_id("sample").locator(":scope > tbody > tr")  # each has a metadata table inside
    expect(sample_rows).to_have_count(len(lst["sample"]))
    first = lst["sample"][0]
    expect(sample_rows.first).to_contain_text(str(first["tokens"]["cl100k_base"]))
    page.get_by_label("Token amount").fill("2500000")
    page.get_by_role("button", name="Calculate").click()
    want = PriceSchedule.from_dict(lst["price"]).price(2_500_000)
    expect(page.get_by_test_id("calc-result")).to_contain_text(f"{want // 100}.{want % 100:02d} CNY")
    shot(page, "03-listing")

    # sign in as the buyer from the dataset page and come back to it
    page.get_by_role("link", name="Sign in").first.click()
    page.get_by_label("API key").fill(exchange.keys["lab-a"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(f"/listings/{lst['id']}"))
    expect(page.get_by_test_id("who")).to_have_text("lab-a")

    # a numeric range from the form is a real quote, equal to the API's ge/le selection
    form = page.get_by_test_id("quote-form")
    form.get_by_label("Field", exact=True).select_option("meta.severity")
    form.get_by_label("at least").fill("2.5")
    form.get_by_label("at most").fill("4")
    form.get_by_role("button", name="Get quote").click()
    expect(page.get_by_test_id("quote")).to_be_visible()
    rid = page.get_by_test_id("quote").locator("code").first.inner_text()
    ranged = _db(exchange, lambda s: quotes.get_quote(s, rid, exchange.ids["lab-a"]))
    direct = quotes.create_quote(exchange.ids["lab-a"], lst["id"], {"filter": {"and": [
        {"field": "meta.severity", "op": "ge", "value": 2.5}, {"field": "meta.severity", "op": "le", "value": 4}]}})
    assert 0 < ranged["tokens"] == direct["tokens"] < lst["tokens"]

    # a filter and a budget turn into an exact quote
    form = page.get_by_test_id("quote-form")
    form.get_by_label("Domain").select_option("wind_power")
    form.get_by_label("Token budget (optional)").fill("20000")
    form.get_by_role("button", name="Get quote").click()
    expect(page.get_by_test_id("quote")).to_be_visible()
    qid = page.get_by_test_id("quote").locator("code").first.inner_text()
    quote = _db(exchange, lambda s: quotes.get_quote(s, qid, exchange.ids["lab-a"]))
    assert 0 < quote["tokens"] <= 20_000
    expect(page.get_by_test_id("quote-summary")).to_contain_text(f"{quote['tokens']:,} tokens")
    expect(page.get_by_test_id("quote-summary")).to_contain_text(f"{quote['amount_text']} CNY")
    shot(page, "04-listing-quote")

    # buy: the buyer page shows the entitlement, its tokens left and the lower balance
    page.get_by_test_id("buy").click()
    expect(page).to_have_url(re.compile(r"/buyer\?order=ord_"))
    expect(page.get_by_test_id("flash")).to_contain_text(f"{quote['tokens']:,} tokens")
    expect(page.get_by_test_id("tokens-left").first).to_have_text(f"{quote['tokens']:,}")
    available = _money(page.get_by_test_id("available").inner_text())
    assert available == 50_000 - quote["amount"]
    shot(page, "05-buyer")

    # the provider sees the sale and its earnings
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, exchange.keys["windco"])
    expect(page).to_have_url(re.compile("/provider"))
    earned = _db(exchange, lambda s: ledger.balance(s, ledger.PROVIDER, exchange.ids["windco"], "CNY").posted)
    assert 0 < earned < quote["amount"]  # the platform keeps its fee
    expect(page.get_by_test_id("earnings")).to_have_text(f"{earned // 100}.{earned % 100:02d} CNY")
    expect(page.get_by_test_id("tokens-sold")).to_have_text(f"{quote['tokens']:,}")
    expect(page.get_by_test_id("earnings-chart").locator("svg polyline")).to_have_count(1)
    expect(page.get_by_test_id("provider-listings")).to_contain_text("sample-maintenance")
    shot(page, "06-provider")

    # the operator sees balances, a clean ledger check and the audit log
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, exchange.keys["ops"])
    expect(page).to_have_url(re.compile("/operator"))
    expect(page.get_by_test_id("check")).to_contain_text("Every balance matches the transfers")
    expect(page.get_by_test_id("ledger-balances")).to_contain_text(f"buyer_balance:{exchange.ids['lab-a']}:CNY")
    expect(page.get_by_test_id("ledger-balances")).to_contain_text("lab-a (buyer)")
    if page.get_by_test_id("audit-sync").count():  # order charges reach the audit chain on demand
        page.get_by_test_id("audit-sync").click()
        expect(page.get_by_test_id("synced")).to_be_visible()
    expect(page.get_by_test_id("audit")).to_contain_text("Hash chain intact")
    expect(page.get_by_test_id("audit-log")).to_contain_text("ledger transfer")
    shot(page, "07-operator")


def test_pay_as_you_stream_with_the_sdk_then_usage_balance_and_receipt(page, exchange, shot) -> None:
    """Order metered in the browser, stream with the SDK, then see usage, the lower balance and a receipt."""
    from ciyuan import sdk
    from ciyuan.ledger import signing

    expect = _expect()
    lst = exchange.listing
    sign_in(page, exchange.keys["lab-a"], f"/listings/{lst['id']}")
    form = page.get_by_test_id("quote-form")
    form.get_by_label("Token budget (optional)").fill("8000")
    form.get_by_role("button", name="Get quote").click()
    expect(page.get_by_test_id("quote")).to_be_visible()
    page.get_by_test_id("buy-metered").click()
    expect(page).to_have_url(re.compile(r"/buyer\?order=ord_"))
    row = page.locator("[data-entitlement]").first  # newest order first
    ent = row.get_attribute("data-entitlement")
    expect(row.get_by_test_id("charged")).to_have_text("0.00 CNY")  # nothing charged before delivery
    before = _money(page.get_by_test_id("available").inner_text())

    client = sdk.Client(exchange.url, exchange.keys["lab-a"])
    records = list(client.stream(ent, max_tokens=3000))
    assert records, "the SDK delivered nothing"

    page.goto("/buyer")
    row = page.locator(f'[data-entitlement="{ent}"]')
    expect(row.get_by_test_id("tokens-left")).to_have_text("0")
    charged = _money(row.get_by_test_id("charged").inner_text())
    assert charged > 0
    after = _money(page.get_by_test_id("available").inner_text())
    assert after == before - charged
    expect(page.get_by_test_id("usage-chart").locator("svg polyline")).to_have_count(1)
    expect(page.get_by_test_id("usage")).to_contain_text(ent[:16])
    shot(page, "08-buyer-usage")

    with page.expect_download() as dl:
        row.get_by_role("link", name="Download").click()
    verdict = signing.verify_bytes(Path(dl.value.path()).read_bytes())
    assert verdict["ok"], verdict

    # the provider's tokens sold include the streamed tokens
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, exchange.keys["windco"])
    expect(page.get_by_test_id("provider-listings")).to_contain_text(f"{sum(r['tokens'] for r in records):,}")
    shot(page, "08b-provider-after-stream")


def test_chinese_toggle_keyboard_and_narrow_screen(browser, exchange, shot) -> None:
    expect = _expect()
    ctx = browser.new_context(base_url=exchange.url, viewport={"width": 390, "height": 844}, locale="en-US")
    page = ctx.new_page()
    try:
        page.goto("/")
        page.get_by_test_id("lang-toggle").click()
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.get_by_role("heading", level=1)).to_have_text("数据目录")
        # the cookie keeps the choice on the next page
        page.goto(f"/listings/{exchange.listing['id']}")
        expect(page.get_by_text("各分词器词元数")).to_be_visible()
        width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"page scrolls sideways on a phone: {width}"
        shot(page, "09-listing-zh-narrow")

        # keyboard: the skip link comes first, the search box submits with Enter
        page.goto("/?lang=en")
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        box = page.get_by_label("Dataset name contains")
        box.focus()
        page.keyboard.type("sample")
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"q=sample"))
        expect(page.locator(f'[data-listing="{exchange.listing["id"]}"]')).to_be_visible()
        width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"catalog scrolls sideways on a phone: {width}"
        shot(page, "10-catalog-narrow")
    finally:
        ctx.close()


def test_bad_key_and_wrong_role_are_refused_politely(page, exchange, shot) -> None:
    expect = _expect()
    sign_in(page, "cyk_not-a-real-key")
    expect(page.get_by_role("alert")).to_contain_text("not valid")
    sign_in(page, exchange.keys["windco"], "/buyer")
    expect(page.get_by_role("alert")).to_contain_text("This page is for buyer accounts")
    shot(page, "11-wrong-role")


def test_quick_quote_and_buy_from_the_buyer_page(page, exchange, shot) -> None:
    expect = _expect()
    sign_in(page, exchange.keys["lab-a"])
    expect(page).to_have_url(re.compile("/buyer"))
    form = page.get_by_test_id("quick-quote-form")
    form.get_by_label("Dataset").select_option(exchange.curated["id"])
    form.get_by_label("Token budget (optional)").fill("a lot")
    form.get_by_role("button", name="Get quote").click()
    expect(page.get_by_test_id("quote-error")).to_contain_text("not a whole number")
    form = page.get_by_test_id("quick-quote-form")
    form.get_by_label("Dataset").select_option(exchange.curated["id"])
    form.get_by_label("Token budget (optional)").fill("1500")
    form.get_by_role("button", name="Get quote").click()
    expect(page.get_by_test_id("quote-summary")).to_be_visible()
    shot(page, "14-buyer-quick-quote")
    page.get_by_test_id("buy").click()
    expect(page.get_by_test_id("flash")).to_be_visible()
    row = page.locator("[data-entitlement]").first
    expect(row).to_contain_text(exchange.curated["dataset"])
