"""Quotes over HTTP that filter on probed media facts (``meta.image.width``, ``meta.audio.duration_s``).

The listings are real: PNG and WAV bytes probed by the ingest probe, published under a media
schedule (qwen2-vl-image, whisper-audio); the expected token totals are the schedule's own counts
of exactly the records the filter should keep, worked out from the records in the test.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "media"))

import media_sets  # noqa: E402

from ciyuan.tokens import get_schedule  # noqa: E402


def _market(sched: str, records: list[dict], name: str):
    from ciyuan.db import tx
    from ciyuan.market import accounts, listings

    def setup(s):
        for n, r in [("prov", "provider"), ("alice", "buyer")]:
            accounts.create_account(s, n, r)
        return accounts.create_key(s, "alice")[1]

    key = tx.run(setup)
    v = media_sets.build(name, records, (sched,))
    listing = listings.publish(v.ref, provider="prov", price_per_mtok="100.00", schedule=sched, sample=0)
    return key, listing


def _client(live, key):
    import httpx

    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def test_quote_filters_on_probed_image_width(live):
    recs = media_sets.image_records()
    key, listing = _market("qwen2-vl-image", recs, "pics")
    counts = dict(zip([r["id"] for r in recs], get_schedule("qwen2-vl-image").count_records(recs), strict=True))
    assert len(set(counts.values())) > 2  # sizes differ, so a wrong set of records gives a wrong total
    with _client(live, key) as c:
        whole = c.post("/v1/quotes", json={"listing_id": listing["id"]}).json()
        assert whole["tokens"] == sum(counts.values()) and whole["records"] == 6
        card = c.get(f"/v1/listings/{listing['id']}").json()["card"]
        assert card["fields"]["meta.image.width"] == "integer"
        f = {"field": "meta.image.width", "op": "ge", "value": 512}
        q = c.post("/v1/quotes", json={"listing_id": listing["id"], "selection": {"filter": f}})
        assert q.status_code == 201, q.text
        wide = [i for i, r in zip(counts, recs, strict=True) if r["meta"]["image"]["width"] >= 512]
        assert wide == ["img0", "img2", "img3", "img5"]  # 511 wide is out, 512 is in
        assert q.json()["records"] == 4 and q.json()["tokens"] == sum(counts[i] for i in wide)
        both = {"and": [f, {"field": "meta.image.height", "op": "lt", "value": 500}]}
        q2 = c.post("/v1/quotes", json={"listing_id": listing["id"], "selection": {"filter": both}}).json()
        assert q2["records"] == 3 and q2["tokens"] == counts["img0"] + counts["img3"] + counts["img5"]
        typo = c.post("/v1/quotes", json={"listing_id": listing["id"], "selection": {"filter": {
            "field": "meta.image.widht", "op": "ge", "value": 512}}})
        assert typo.status_code == 422 and "meta.image.width" in typo.json()["error"]["hint"]


def test_quote_filters_on_probed_audio_duration(live):
    recs = media_sets.audio_records()
    key, listing = _market("whisper-audio", recs, "talks")
    counts = get_schedule("whisper-audio").count_records(recs)
    with _client(live, key) as c:
        f = {"field": "meta.audio.duration_s", "op": "le", "value": 30}
        q = c.post("/v1/quotes", json={"listing_id": listing["id"], "selection": {"filter": f}}).json()
        assert q["records"] == 3  # 2 s, 0.5 s, 12 s; not the 31 s one
        assert q["tokens"] == counts[0] + counts[2] + counts[3] and q["tokens"] < sum(counts)
        rate = {"field": "meta.audio.sample_rate", "op": "eq", "value": 8000}
        q = c.post("/v1/quotes", json={"listing_id": listing["id"], "selection": {"filter": rate}}).json()
        assert q["records"] == 2 and q["tokens"] == counts[1] + counts[3]
