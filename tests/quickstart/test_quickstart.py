"""`make run`'s job, as a user meets it: `ciyuan quickstart` builds the demo exchange and serves it.

Runs the real command in a child process on a free loopback port, twice on the same home (the
second run must reuse what the first made), and reads the catalog page and API like a browser.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
import yaml

from ciyuan.data import SAMPLE_DIR

pytestmark = pytest.mark.slow


VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Marked(HTMLParser):
    """The text of every element a page marks for tests: ``(listing id or None, data-testid) -> text``,
    and ``(listing id, "href:" + path) -> link text``, with white space folded."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict, list[str]]] = []
        self.found: dict[tuple[str | None, str], str] = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in VOID:
            self.stack.append((tag, dict(attrs), []))

    def handle_data(self, data: str) -> None:
        for _, _, parts in self.stack:
            parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            name, attrs, parts = self.stack.pop()
            listing = next((a["data-listing"] for _, a, _ in reversed(self.stack) if "data-listing" in a), None)
            text = " ".join("".join(parts).split())
            if "data-testid" in attrs:
                self.found[(listing, attrs["data-testid"])] = text
            if name == "a" and "href" in attrs:
                self.found[(listing, "href:" + attrs["href"])] = text
            if name == tag:
                return


def _marked(html: str) -> dict[tuple[str | None, str], str]:
    parser = _Marked()
    parser.feed(html)
    return parser.found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_quickstart(home: Path, port: int) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, CIYUAN_HOME=str(home), COLUMNS="200")
    env.pop("CIYUAN_DATABASE_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ciyuan.cli.main", "quickstart", "--home", str(home), "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"quickstart exited early:\n{proc.stdout.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        proc.kill()
        raise AssertionError("quickstart did not start serving within 10 minutes")
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
    return out


MEDIA = {"demo-wind-pictures": ("qwen2-vl-image", "image", 20), "demo-alarm-sounds": ("whisper-audio", "audio", 8)}


def _check_media_listings(url: str, listings: list[dict], card: dict) -> None:
    """The media sets sit in the catalog beside the text one, priced in their own schedule, with a
    CC0 licence, the kept records of their recipe, and a thumbnail grid on the dataset page."""
    for dataset, (schedule, modality, kept) in MEDIA.items():
        found = [x for x in listings if x["dataset"] == dataset]
        assert len(found) == 1, listings  # reused on the second run
        lst = found[0]
        assert lst["schedule"] == schedule and lst["records"] == kept and lst["tokens"] > 0
        assert lst["license"] == "CC0-1.0"
        lid = lst["id"]
        assert card[(lid, f"href:/listings/{lid}")] == dataset
        assert card[(lid, "schedule")] == schedule and card[(lid, "tokens")] == f"{lst['tokens']:,}"
        page = httpx.get(f"{url}/listings/{lid}", timeout=10).text
        assert 'data-testid="thumb-grid"' in page
        if modality == "image":
            assert page.count(f'src="/listings/{lid}/thumbs/') >= 5
            thumb = httpx.get(f"{url}/listings/{lid}/thumbs/0.webp", timeout=30)
            assert thumb.status_code == 200 and thumb.content[8:12] == b"WEBP"
        else:
            assert page.count(f'src="/listings/{lid}/preview/') >= 5
        # the appraisal report of a media-only version: media sections, no text-only ones
        rep = httpx.get(f"{url}/listings/{lid}/reports/appraisal", timeout=30).text
        assert "Uniqueness against the catalog by perceptual hash" in rep and "language consistency" not in rep


def test_quickstart_serves_catalog_with_sample_tokens_and_price(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first_keys: list[str] = []
    for _run in range(2):
        proc, url = _run_quickstart(home, _free_port())
        try:
            listings = httpx.get(f"{url}/v1/listings", timeout=10).json()["items"]
            sample = [x for x in listings if x["dataset"] == "sample-maintenance"]
            assert len(sample) == 1, listings  # the second run reuses the listing, no duplicate
            lid, tokens, price = sample[0]["id"], sample[0]["tokens"], sample[0]["price_per_mtok"]
            assert tokens > 100_000
            # the catalog page's card of that listing shows its name, token count and price
            card = _marked(httpx.get(f"{url}/", timeout=10).text)
            assert card[(lid, f"href:/listings/{lid}")] == "sample-maintenance"
            assert card[(lid, "tokens")] == f"{tokens:,}"
            assert card[(lid, "price")] == f"{price} {sample[0]['currency']}"
            # the demo provider's declared card reaches the dataset page, and its licence the appraisal
            detail = _marked(httpx.get(f"{url}/listings/{lid}", timeout=10).text)
            declared = yaml.safe_load((SAMPLE_DIR.parent / "sample_card.yaml").read_text(encoding="utf-8"))
            assert detail[(None, "description")] == " ".join(declared["description"].split())
            assert detail[(None, "license")] == "CC-BY-4.0"
            _check_media_listings(url, listings, card)
            bal = httpx.get(f"{url}/v1/balance", headers={"Authorization": "Bearer invalid"}, timeout=10)
            assert bal.status_code == 401
        finally:
            out = _stop(proc)
        keys = re.findall(r"cyk_[A-Za-z0-9_-]{20,}", out)
        assert len(keys) == 3, out
        assert not set(keys) & set(first_keys)  # fresh keys each run
        first_keys = keys
    # the keys printed by the last run work against the API
    proc, url = _run_quickstart(home, _free_port())
    try:
        r = httpx.get(f"{url}/v1/balance", headers={"Authorization": f"Bearer {first_keys[1]}"}, timeout=10)
        assert r.status_code == 200, r.text
        cny = [b for b in r.json()["balances"] if b["currency"] == "CNY" and b["kind"] == "buyer_balance"]
        assert len(cny) == 1 and cny[0]["available"] == 100_000  # the 1,000.00 CNY deposit, in fen, untouched
    finally:
        _stop(proc)
