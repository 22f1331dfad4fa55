"""/docs and /redoc work offline: every request they make goes to this server, and a favicon answers.

Chromium runs with every non-loopback request aborted (and recorded): on a machine with no
network, a CDN-loaded Swagger UI stays blank, which is what these tests would see.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-browser")]


def _offline_page(browser, exchange):
    """A page whose every request off this machine is aborted and listed in ``page.external``."""
    ctx = browser.new_context(base_url=exchange.url, viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    external: list[str] = []

    def route(r) -> None:
        host = urlsplit(r.request.url).hostname or ""
        if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost", "::1"):
            r.continue_()
        else:
            external.append(r.request.url)
            r.abort()

    page.route("**/*", route)
    return ctx, page, external


@pytest.mark.parametrize(
    ("path", "ready"),
    [("/docs", "#swagger-ui .opblock-tag"), ("/redoc", "redoc-wrap, .redoc-wrap, [role=navigation] li")],
)
def test_api_docs_render_with_no_request_off_this_machine(browser, exchange, shot, path, ready) -> None:
    from playwright.sync_api import expect

    ctx, page, external = _offline_page(browser, exchange)
    try:
        page.goto(path)
        expect(page.locator(ready).first).to_be_visible(timeout=30_000)
        # the API's own operations are listed, so the spec loaded and the UI ran
        expect(page.get_by_text("/v1/listings").first).to_be_attached()
        page.wait_for_load_state("networkidle")
        shot(page, f"20-api{path.replace('/', '-')}")
        assert external == [], f"{path} asked for {external}"
    finally:
        ctx.close()


def test_favicon_ico_answers(exchange) -> None:
    r = httpx.get(exchange.url + "/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/")
    assert b"<svg" in r.content
