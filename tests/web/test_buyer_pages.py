"""What a buyer (and a provider) reads on the pages: no internals, readable charts, sums that add up.

Fetched over HTTP from the real server of the conftest's exchange, after real trades (a prepaid
order, a metered order streamed in part, one streamed to the end) made through the SDK.
"""

from __future__ import annotations

import re

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-browser")]


def _get(exchange, path: str, who: str | None = None, lang: str = "en") -> str:
    cookies = {"ciyuan_key": exchange.keys[who]} if who else {}
    r = httpx.get(exchange.url + path, params={"lang": lang}, cookies=cookies, timeout=60)
    assert r.status_code == 200, (path, r.status_code)
    return r.text


def _visible(html: str) -> str:
    """The page's text as a reader sees it (no tags, no scripts, no attribute values)."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


@pytest.mark.parametrize("which", ["listing", "curated"])
def test_dataset_page_shows_no_internal_fields_paths_or_flags(exchange, which) -> None:
    lst = getattr(exchange, which)
    for lang in ("en", "zh"):
        html = _get(exchange, f"/listings/{lst['id']}", lang=lang)
        text = _visible(html)
        for bad in ("meta.curation", "curation.pii", "--baseline", "{'", "meta.source", ".jsonl", str(exchange.home)):
            assert bad not in text, f"{which} page ({lang}) shows {bad!r}"
        assert not re.search(r"\d\.\d+e[-+]\d\d", text), "a number printed in e-notation"
        # every sample record's metadata is a table of key/value rows, nothing cut off
        metas = re.findall(r'<table class="meta-table" data-testid="sample-meta">(.*?)</table>', html, flags=re.S)
        assert len(metas) == len(lst["sample"])
        first = lst["sample"][0]["meta"]
        for key in ("severity", "site", "equipment"):
            if key in first:
                assert f">{first[key]}<" in metas[0], key


def test_price_chart_uses_log_axes_when_volumes_span_decades(exchange) -> None:
    html = _get(exchange, f"/listings/{exchange.listing['id']}")
    chart = re.search(r'data-testid="price-chart">(.*?)</figure>', html, flags=re.S).group(1)
    svg = chart.split("</svg>")[0]
    assert "logarithmic scale" in svg  # the axes say so
    ticks = re.findall(r'<text class="tick" x="([\d.]+)" y="(\d+)" text-anchor="middle">([^<]+)</text>', svg)
    xs = {label: float(x) for x, y, label in ticks if int(y) > 150}
    assert {"1000", "10k", "100k"} <= set(xs), xs
    # 1k -> 10k and 10k -> 100k are the same distance on a log axis
    assert abs((xs["10k"] - xs["1000"]) - (xs["100k"] - xs["10k"])) < 1.0
    # a linear price is a straight line on log-log axes: equal steps in log volume, equal steps in log price
    pts = [tuple(map(float, p.split(","))) for p in re.search(r'class="line" points="([^"]+)"', svg).group(1).split()]
    slopes = [(b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(pts, pts[1:], strict=False) if b[0] - a[0] > 5]
    assert max(slopes) - min(slopes) < 0.05, slopes


def test_metered_orders_show_what_they_have_billed(exchange, trades) -> None:
    from ciyuan import sdk

    html = _get(exchange, "/buyer", "lab-a")
    c = sdk.Client(exchange.url, exchange.keys["lab-a"])
    try:
        for key in ("part", "full"):
            order = trades[key]
            charged = sum(u["amount"] for u in c.all_usage(order["entitlement"]["id"]))
            row = re.search(rf'<tr data-order="{order["id"]}">(.*?)</tr>', html, flags=re.S).group(1)
            billed = re.search(r'data-testid="billed">([\d.]+) CNY', row).group(1)
            assert billed != "0.00", f"metered order {order['id']} shows 0.00 after streaming"
            assert charged > 0 and round(float(billed) * 100) == charged
    finally:
        c.close()


def test_usage_and_earnings_are_summed_per_entitlement_and_listing(exchange, trades) -> None:
    html = _get(exchange, "/buyer", "lab-a")
    summary = re.search(r'data-testid="usage-summary">(.*?)</table>', html, flags=re.S).group(1)
    rows = re.findall(r"<tr><td", summary)
    streamed = {trades["part"]["entitlement"]["id"], trades["full"]["entitlement"]["id"]}
    assert len(rows) >= len(streamed)
    for ent in streamed:
        assert summary.count(ent[:16]) == 1, "one summary row per entitlement"
    # the batches are one click away, not on the page's face
    assert re.search(r'<details data-testid="usage-detail">\s*<summary>', html)

    html = _get(exchange, "/provider", "windco")
    summary = re.search(r'data-testid="earnings-summary">(.*?)</table>', html, flags=re.S).group(1)
    for lst in (exchange.listing, exchange.curated):
        assert summary.count(f">{lst['dataset']}<") == 1, "one earnings row per listing"
    assert re.search(r'<details data-testid="credits-detail">\s*<summary>', html)
    total = sum(float(a) for a in re.findall(r'<td class="num">([\d.]+) CNY</td><td>', summary))
    posted = re.search(r'data-testid="earnings">([\d.]+) CNY', html).group(1)
    assert abs(total - float(posted)) < 0.005, (total, posted)
