"""The dataset page of a knowledge-graph listing in a real Chromium: classes and predicates with
their counts, the SHACL validation summary, and an inline SVG of a sample subject's neighbourhood
(server-rendered, no script); in English and Chinese. The graph is a Turtle file ingested with
``ciyuan ingest``, shapes attached and validated, published with a free sample."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from liveserver import fresh_home, serve

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("web-browser")]
DATA = """@prefix ex: <http://ex.org/plant/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:a-pump1 a ex:Pump ; rdfs:label "一号泵"@zh ; ex:feeds ex:tank1 , ex:tank2 ; ex:rated 15 ; ex:partOf ex:station .
ex:b-pump2 a ex:Pump ; ex:feeds ex:tank1 .
ex:tank1 a ex:Tank ; rdfs:label "tank one" .
ex:tank2 a ex:Tank ; rdfs:label "tank two" .
ex:station a ex:Station ; rdfs:label "station" .
"""
SHAPES = """@prefix sh: <http://www.w3.org/ns/shacl#> .
@prefix ex: <http://ex.org/plant/> .
@prefix rdfs: <http://www.w3.org/2000/01/rdf-schema#> .
ex:LabelShape a sh:NodeShape ; sh:targetClass ex:Pump ; sh:property [ sh:path rdfs:label ; sh:minCount 1 ] .
"""


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict]]:
    with fresh_home(tmp_path_factory.mktemp("kg") / "home") as home:
        from ciyuan.db import tx
        from ciyuan.ingest.run import ingest
        from ciyuan.knowledge import shapes
        from ciyuan.market import accounts, listings
        from ciyuan.store import resolve

        src = home.parent / "plant.ttl"
        src.write_text(DATA, encoding="utf-8")
        (home.parent / "shapes.ttl").write_text(SHAPES, encoding="utf-8")
        out = ingest([str(src)], "plant", license="CC-BY-4.0")
        v = resolve(f"plant@{out['version']}")
        shapes.attach(v, shapes=str(home.parent / "shapes.ttl"))
        shapes.validate(v)
        prov = tx.run(lambda sess: accounts.create_account(sess, "gridco", "provider").id)
        listing = listings.publish(f"plant@{out['version']}", provider=prov, price_per_mtok="10", sample=5)
        with serve(home) as url:
            yield url, listing


def test_graph_page_counts_validation_and_neighbourhood(browser, plant, shot) -> None:
    url, listing = plant
    ctx = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900}, locale="en-US")
    page = ctx.new_page()
    page.set_default_timeout(30_000)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(f"/listings/{listing['id']}")
        assert "14 triples, 5 subjects, 3 classes, 5 predicates" in page.get_by_test_id("graph-summary").inner_text()
        classes = page.get_by_test_id("graph-classes").locator("tbody tr")
        assert [classes.nth(i).locator("td").all_inner_texts() for i in range(3)] == [
            ["Pump", "2"], ["Tank", "2"], ["Station", "1"]]
        preds = page.get_by_test_id("graph-predicates").locator("tbody tr")
        assert preds.nth(0).locator("td").all_inner_texts() == ["type", "5"]
        assert "4 of 5 subjects conform (80.0%)" in page.get_by_test_id("graph-validation").inner_text()
        assert "LabelShape" in page.get_by_test_id("graph-shapes").inner_text()
        svg = page.get_by_test_id("graph-neighbourhood").locator("svg")
        assert svg.get_attribute("role") == "img" and "一号泵" in svg.get_attribute("aria-label")
        assert svg.locator("line.edge").count() == 5  # type, two feeds, rated, partOf; a label is not a link
        texts = svg.locator("text").all_text_contents()
        assert "tank one" in texts and "station" in texts and "feeds" in texts
        assert all(r.startswith(url) for r in requests)  # nothing fetched from elsewhere
        shot(page, "graph-page")
        page.goto(f"/listings/{listing['id']}?lang=zh")
        zh = page.get_by_test_id("graph").inner_text()
        assert "图谱" in zh and "谓词" in zh and "5 个主语中 4 个符合" in zh
    finally:
        ctx.close()
