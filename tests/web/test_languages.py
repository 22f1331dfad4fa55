"""Every page, in Chinese and in English, shows interface text only in that language.

A living exchange (the conftest's: the bundled sample and a curated, appraised slice, published)
gets a prepaid order, a metered order streamed in part with the SDK and a fully streamed one,
so every table and chart has rows; then each page is fetched over HTTP from the real server in
both languages and checked with :func:`langcheck.wrong_language`, which reports any text the
page does not mark as data (``translate="no"``) that is in the other language.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from langcheck import wrong_language  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-browser")]


def _pages(exchange, trades) -> list[tuple[str | None, str]]:
    """(who is signed in, path) for every page a person can reach."""
    whole, mini = exchange.listing["id"], exchange.curated["id"]
    return [
        (None, "/"),
        (None, "/?language=zh&sort=price_desc"),
        (None, "/?min_tokens=-5"),
        (None, f"/listings/{whole}"),
        (None, f"/listings/{mini}?tokens=2500000"),
        (None, f"/listings/{mini}/reports/appraisal"),
        (None, f"/listings/{mini}/reports/curation"),
        (None, "/listings/lst_does_not_exist"),
        (None, "/signin"),
        (None, "/buyer"),
        ("lab-a", f"/listings/{mini}?quote={trades['quote']['id']}"),
        ("lab-a", f"/buyer?quote={trades['quote']['id']}"),
        ("lab-a", f"/buyer?order={trades['paid']['id']}"),
        ("lab-a", "/provider"),
        ("windco", "/provider"),
        ("ops", "/operator"),
    ]


def _get(exchange, who: str | None, path: str, lang: str) -> str:
    cookies = {"ciyuan_key": exchange.keys[who]} if who else {}
    sep = "&" if "?" in path else "?"
    r = httpx.get(exchange.url + path + sep + "lang=" + lang, cookies=cookies, timeout=60)
    assert r.status_code in (200, 403, 404), (path, r.status_code, r.text[:300])
    assert "text/html" in r.headers["content-type"], path
    return r.text


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_page_speaks_one_language(exchange, trades, lang) -> None:
    problems = []
    for who, path in _pages(exchange, trades):
        html = _get(exchange, who, path, lang)
        problems += [f"{path} [{who or 'anonymous'}] {p}" for p in wrong_language(html, lang)]
    assert not problems, f"{len(problems)} pieces of text not in {lang}:\n" + "\n".join(problems[:80])


def test_the_check_catches_an_untranslated_string(exchange, trades) -> None:
    """The checker is not blind: one English label slipped into a real Chinese page is reported."""
    html = _get(exchange, "lab-a", "/buyer", "zh")
    slipped = html.replace("</main>", "<p>Tokens left</p></main>", 1)
    found = [p for p in wrong_language(slipped, "zh") if "Tokens left" in p]
    assert found, "an English label on a Chinese page went unnoticed"
    marked = html.replace("</main>", '<p translate="no">Zhangbei Hills Wind Farm</p></main>', 1)
    assert not [p for p in wrong_language(marked, "zh") if "Zhangbei" in p]  # data is left alone
    en = _get(exchange, "lab-a", "/buyer", "en").replace("</main>", "<p>剩余词元</p></main>", 1)
    assert [p for p in wrong_language(en, "en") if "剩余词元" in p]
