"""The knowledge-base page in a real Chromium: a query box, the chunks found, and what the retrieve
call would cost before it is made (tokens of the returned chunks under the listing's schedule x price),
in English and Chinese; the JSON preview gives the same numbers and bills nothing."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction

import httpx
import pytest
from liveserver import fresh_home, serve

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-browser")]
DOCS = [
    "The gearbox oil temperature alarm triggered at turbine 7 after a long run at rated power.",
    "Pitch bearing lubrication is due every six months; grease the bearings and log the amount used.",
    "风机齿轮箱温度过高，需要立即停机检查油位和冷却器。",
    "变桨轴承每六个月润滑一次，记录油脂用量。",
    "ブレードの前縁に亀裂が見つかりました。",
]


@pytest.fixture(scope="module")
def kb_listing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    with fresh_home(tmp_path_factory.mktemp("kb") / "home") as home:
        from ciyuan.db import tx
        from ciyuan.market import accounts, listings
        from ciyuan.store import VersionBuilder

        b = VersionBuilder("turbine-manual", made_by={"command": "test"})
        for i, t in enumerate(DOCS):
            b.add({"id": f"m{i}", "text": t, "meta": {}})
        v = b.commit()
        tx.run(lambda sess: accounts.create_account(sess, "windco", "provider"))
        listing = listings.publish(v.ref, provider="windco", price_per_mtok="2000.00", sample=0)
        with serve(home) as url:
            yield url, listing


def test_query_box_shows_results_and_the_cost_before_the_call(browser, kb_listing, shot) -> None:
    url, listing = kb_listing
    lid = listing["id"]
    ctx = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900}, locale="en-US")
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(f"/listings/{lid}")
        page.get_by_test_id("kb-link").click()
        page.wait_for_url(f"**/listings/{lid}/kb")
        assert "5 chunks" in page.get_by_test_id("kb-index").inner_text()
        assert page.get_by_test_id("kb-no-vectors").count() == 1  # tests run BM25-only: the page says so
        page.fill("#kb-q", "齿轮箱温度")
        page.fill("#kb-k", "2")
        page.select_option("#kb-mode", "bm25")
        page.get_by_role("button", name="Search").click()
        rows = page.get_by_test_id("kb-results").locator("tbody tr")
        assert rows.count() >= 1
        first = rows.nth(0).locator("td").all_inner_texts()
        assert first[1] == "m2" and first[4] == DOCS[2] and first[2] == f"0–{len(DOCS[2])}"
        shown_tokens = sum(int(rows.nth(i).locator("td").nth(3).inner_text().replace(",", ""))
                           for i in range(rows.count()))
        preview = httpx.get(f"{url}/listings/{lid}/kb/preview", params={"q": "齿轮箱温度", "top_k": 2,
                                                                        "mode": "bm25"}).json()
        assert preview["billed"] is False and preview["tokens"] == shown_tokens
        from ciyuan.tokens import get_tokenizer

        tok = get_tokenizer("cl100k_base")
        assert preview["tokens"] == sum(tok.count(r["text"]) for r in preview["results"])
        expect = -(-Fraction(2000 * 100, 10**6) * preview["tokens"] // 1)  # 2000 CNY per Mtok, in fen, rounded up
        assert preview["price_minor"] == expect
        cost = page.get_by_test_id("kb-cost").inner_text()
        assert preview["price"] in cost and f"{shown_tokens} tokens under cl100k_base" in cost
        shot(page, "kb-page")
        page.goto(f"/listings/{lid}/kb?q=grease+bearings&top_k=0")
        assert "top_k" in page.get_by_test_id("kb-error").inner_text()
        page.goto(f"/listings/{lid}/kb?q=%E6%B6%A6%E6%BB%91&lang=zh")  # 润滑
        assert "调用前的费用" in page.get_by_test_id("kb-cost").inner_text()
        assert page.get_by_test_id("kb-results").locator("tbody tr").nth(0).locator("td").nth(1).inner_text() == "m3"
        assert "搜索" in page.get_by_role("button", name="搜索").inner_text()
        bad = httpx.get(f"{url}/listings/{lid}/kb/preview", params={"q": ""})
        assert bad.status_code == 422 and bad.json()["error"]["hint"]
    finally:
        ctx.close()
