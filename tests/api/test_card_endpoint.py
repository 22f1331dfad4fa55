"""GET /v1/listings/{id}/card: the listed version's Croissant JSON-LD, public, over a real server.

Uses the ``mkt`` fixture (uvicorn on a loopback port, a fresh home, one published listing), so the
request goes through routing, error mapping and serialisation exactly as a client would see them.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_card_is_public_json_ld_and_matches_the_web_card(mkt, tmp_path: Path) -> None:
    lid = mkt.listing["id"]
    res = mkt.client().get(f"/v1/listings/{lid}/card")  # no key: a public catalog read
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("application/ld+json")
    card = res.json()
    assert isinstance(card["@context"], dict) and card["@context"].get("cr")
    assert card["@type"] in ("sc:Dataset", "Dataset", "schema:Dataset")
    assert card["recordSet"] and card["recordSet"][0]["@id"] == "records"
    assert card["name"] == mkt.version.dataset and card["version"].endswith(mkt.version.id[:12])
    assert card["conformsTo"] == "http://mlcommons.org/croissant/1.0"

    # one card per version: the web face's croissant.json is the same document
    web = mkt.client().get(f"/listings/{lid}/croissant.json")
    assert web.status_code == 200 and web.json() == card

    # and it is valid Croissant, by the reference validator
    path = tmp_path / "card.json"
    path.write_text(res.text)
    exe = Path(sys.executable).with_name("mlcroissant")
    done = subprocess.run([str(exe), "validate", "--jsonld", str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


def test_unknown_listing_is_a_404_json_error(mkt) -> None:
    res = mkt.client().get("/v1/listings/nosuchlisting/card")
    assert res.status_code == 404
    assert res.headers["content-type"].startswith("application/json")
    err = res.json()["error"]
    assert err["code"] == "not_found" and err["message"]


def test_malformed_id_is_a_422_json_error(mkt) -> None:
    res = mkt.client().get("/v1/listings/not-an-id!/card")
    assert res.status_code == 422
    assert res.json()["error"]["code"]


def test_card_is_in_the_openapi_schema_as_json_ld(mkt) -> None:
    spec = mkt.client().get("/openapi.json").json()
    op = spec["paths"]["/v1/listings/{listing_id}/card"]["get"]
    assert list(op["responses"]["200"]["content"]) == ["application/ld+json"]
    assert list(op["responses"]["404"]["content"]) == ["application/json"]  # errors stay plain JSON
    assert "security" not in op or op["security"] in ([], [{}])
