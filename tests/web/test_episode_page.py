"""The dataset page of a robot-episode listing in a real Chromium: per-episode rows (task, length,
success), state and action plotted over time for the sample episode, and a strip of camera frames
decoded server-side with PyAV. The listing is a LeRobot v3.0 folder made by the test generator
(many episodes in one video file, so the strip of a later episode must seek into it), imported with
``ciyuan ingest`` and published with a free sample."""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from liveserver import fresh_home, serve
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))

from episode_gen import CAM, lerobot_v30  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-browser")]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def robots(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    with fresh_home(tmp_path_factory.mktemp("eps") / "home") as home:
        from ciyuan.db import tx
        from ciyuan.ingest.run import ingest
        from ciyuan.market import accounts, listings

        root = lerobot_v30(home.parent / "so100", lengths=(30, 24, 20))
        out = ingest([str(root)], "arm-v3", license="CC-BY-4.0")
        prov = tx.run(lambda sess: accounts.create_account(sess, "robotco", "provider").id)
        listing = listings.publish(f"arm-v3@{out['version']}", provider=prov, price_per_mtok="10", sample=2,
                                   schedule="episode-openvla")
        with serve(home) as url:
            yield url, listing


def test_episode_page_rows_plot_and_camera_strip(browser, robots, shot) -> None:
    url, listing = robots
    ctx = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900}, locale="en-US")
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    try:
        page.goto(f"/listings/{listing['id']}")
        rows = page.get_by_test_id("episode-rows").locator("tbody tr")
        assert rows.count() == 3
        cells = [rows.nth(i).locator("td").all_inner_texts() for i in range(3)]
        assert [c[0] for c in cells] == ["0", "1", "2"]
        assert [c[1] for c in cells] == ["pick up the red cube", "push the block to the left", "pick up the red cube"]
        assert [c[2] for c in cells] == ["30", "24", "20"]
        assert [c[3] for c in cells] == ["3", "2.4", "2"]  # seconds at 10 fps
        assert {c[4] for c in cells} == {"unknown"}  # the generator declares no success
        head = page.get_by_test_id("sample-episode").inner_text()
        assert "0" in head and "30 frames" in head
        for kind in ("state", "action"):
            svg = page.get_by_test_id(f"episode-plot-{kind}").locator("svg")
            assert svg.get_attribute("role") == "img"
            assert svg.locator("polyline.series").count() == 6  # six joints
        strip = page.get_by_test_id("camera-strip")
        assert strip.count() == 1 and CAM in strip.get_attribute("alt")
        page.wait_for_function("() => document.querySelector('[data-testid=camera-strip]').naturalWidth > 0")
        assert page.evaluate("() => document.querySelector('[data-testid=camera-strip]').naturalWidth") > 5 * 64
        shot(page, "episode-page")
        # the strip of a later episode seeks into the shared v3.0 video: its frames are that episode's
        one = Image.open(io.BytesIO(httpx.get(f"{url}/listings/{listing['id']}/episodes/1/strip/0.webp").content))
        zero = Image.open(io.BytesIO(httpx.get(f"{url}/listings/{listing['id']}/episodes/0/strip/0.webp").content))
        assert one.size == zero.size and one.tobytes() != zero.tobytes()
        assert httpx.get(f"{url}/listings/{listing['id']}/episodes/5/strip/0.webp").status_code == 404
        assert httpx.get(f"{url}/listings/{listing['id']}/episodes/0/strip/3.webp").status_code == 404
        fields = page.locator("details", has_text="Fields")
        fields.locator("summary").click()
        assert "list of names" in fields.inner_text()  # meta.episode.cameras, meta.episode.tasks
        page.goto(f"/listings/{listing['id']}?lang=zh")
        assert "回合" in page.get_by_test_id("episodes").inner_text()
        assert "未知" in page.get_by_test_id("episode-rows").inner_text()
    finally:
        ctx.close()
