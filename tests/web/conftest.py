"""A living exchange for browser tests: the bundled sample ingested and published, three accounts
with keys, a buyer with a deposit, a real uvicorn server in a subprocess on a free loopback port,
and Debian's Chromium driven by Playwright (never a downloaded browser).

Everything is set up once per module through the same Python functions the CLI calls, in a fresh
``CIYUAN_HOME``; the server process reads that home, so the browser sees exactly that data.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from liveserver import fresh_home, serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "artifacts" / "screenshots"
DEPOSIT = "500.00"
PRICE = "20"
CURATED_PRICE = "35"


@dataclass
class Exchange:
    url: str
    home: Path
    listing: dict  # the whole bundled sample, as ingested
    curated: dict  # a slice of the sample, curated and appraised
    keys: dict[str, str]
    ids: dict[str, str]


MINI_LINES = 200  # records per sample file in the curated slice: enough for every appraisal chart, quick to make


def _curated_slice(work: Path) -> str:
    """Ingest the first lines of the sample files, curate them and appraise the result; returns its ref.

    The whole sample would take minutes to appraise on a shared CI machine; a slice keeps the
    same kinds of records (logs and labelled Q&A in two languages) and exercises the same code.
    """
    from ciyuan.appraise import appraise
    from ciyuan.curate.curate import curate
    from ciyuan.data import sample_files
    from ciyuan.ingest.run import ingest

    work.mkdir(parents=True, exist_ok=True)
    paths = []
    for src in sample_files(include_bad=False):
        dst = work / src.name
        with src.open(encoding="utf-8") as fh:
            dst.write_text("".join(line for _, line in zip(range(MINI_LINES), fh, strict=False)), encoding="utf-8")
        paths.append(str(dst))
    ingest(paths, "maintenance-mini", license="CC-BY-4.0", domain="wind-power-maintenance")
    cur = curate("maintenance-mini", "text-pretrain", workers=1)
    appraise(cur["ref"], provider="windco")
    return cur["ref"]


def _populate(work: Path) -> tuple[dict, dict, dict[str, str], dict[str, str]]:
    """Ingest the sample, make provider/buyer/operator with keys, deposit, publish (as the CLI does)."""
    from ciyuan.cli.quickstart_cmds import SAMPLE_DATASET
    from ciyuan.data import sample_files
    from ciyuan.db import tx
    from ciyuan.ingest.run import ingest
    from ciyuan.ledger import ledger
    from ciyuan.ledger.money import parse_amount
    from ciyuan.market import accounts, listings

    raw = ingest([str(p) for p in sample_files()], SAMPLE_DATASET, license="CC-BY-4.0",
                 domain="wind-power-maintenance")
    mini = _curated_slice(work)
    keys: dict[str, str] = {}
    ids: dict[str, str] = {}

    def people(sess) -> None:
        for name, role in (("windco", "provider"), ("lab-a", "buyer"), ("ops", "operator")):
            ids[name] = accounts.create_account(sess, name, role).id
            keys[name] = accounts.create_key(sess, name)[1]

    tx.run(people)
    tx.run(lambda sess: ledger.deposit(sess, "deposit:web-test", ids["lab-a"], parse_amount(DEPOSIT, "CNY"), "CNY"))
    curated = listings.publish(
        mini, provider=ids["windco"], price_per_mtok=CURATED_PRICE, currency="CNY", license="CC-BY-4.0", sample=3,
        tiers=[{"from_tokens": 20_000, "price_per_mtok": "30"}],
    )  # fmt: skip
    listing = listings.publish(
        f"{SAMPLE_DATASET}@{raw['version']}", provider=ids["windco"], price_per_mtok=PRICE, currency="CNY",
        license="CC-BY-4.0", sample=5,
    )
    return listing, curated, keys, ids


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    with fresh_home(tmp_path_factory.mktemp("web") / "home") as home:
        listing, curated, keys, ids = _populate(home.parent / "slice")
        with serve(home) as url:
            yield Exchange(url, home, listing, curated, keys, ids)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: run `make browser` (apt-get install chromium)")
    from playwright import sync_api
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def shot():
    """``shot(page, name)`` saves a full-page screenshot as a test artefact (artifacts/ is gitignored)."""

    def save(page, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save


@pytest.fixture
def page(browser, exchange: Exchange) -> Iterator:
    ctx = browser.new_context(base_url=exchange.url, viewport={"width": 1280, "height": 900}, locale="en-US")
    p = ctx.new_page()
    p.set_default_timeout(30_000)
    yield p
    ctx.close()


@pytest.fixture(scope="module")
def trades(exchange) -> dict:
    """A prepaid order, a metered order streamed in part, and one streamed to the end (through the SDK)."""
    from ciyuan import sdk

    c = sdk.Client(exchange.url, exchange.keys["lab-a"])
    paid = c.order(c.quote(exchange.listing["id"], {"token_budget": 20_000})["id"])
    part = c.order(c.quote(exchange.listing["id"], {"token_budget": 30_000})["id"], metered=True)
    for _ in itertools.islice(c.stream(part["entitlement"]["id"], max_tokens=1500), 40):
        pass
    full = c.order(c.quote(exchange.curated["id"], {"token_budget": 4_000})["id"], metered=True)
    for _ in c.stream(full["entitlement"]["id"], max_tokens=1000):
        pass
    quote = c.quote(exchange.curated["id"], {"token_budget": 2_000})
    c.close()
    return {"paid": paid, "part": part, "full": full, "quote": quote}
