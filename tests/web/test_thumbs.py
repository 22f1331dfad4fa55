"""The thumbnail grid of a listing's free sample (ciyuan/web/thumbs.py): cached server-side
thumbnails, audio and video previews, each tile with its token count under the listing's schedule.

In-process app with its real routes, over a real store and database; PNG, WAV and MP4 bytes
probed by the ingest probe.
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "media"))

import media_gen  # noqa: E402
import media_sets  # noqa: E402


def _listing(sample: int = 8):
    from ciyuan.db import tx
    from ciyuan.market import accounts, listings

    tx.run(lambda s: accounts.create_account(s, "prov", "provider"))
    recs = media_sets.image_records()[:3] + media_sets.audio_records()[:1] + [
        media_sets.media_record("clip", media_gen.video_bytes(frames=6, size=(80, 48)), "clip.mp4", text="c"),
        {"id": "note", "text": "a text record"}]  # fmt: skip
    v = media_sets.build("mixed", recs, ("qwen2-vl-image",))
    return listings.publish(v.ref, provider="prov", price_per_mtok="10.00", schedule="qwen2-vl-image",
                            sample=sample), recs  # fmt: skip


def test_grid_thumbnails_previews_and_token_counts(db_home) -> None:
    from fastapi.testclient import TestClient
    from PIL import Image

    from ciyuan.api.app import create_app
    from ciyuan.config import settings
    from ciyuan.tokens import get_schedule

    listing, recs = _listing()
    lid = listing["id"]
    counts = get_schedule("qwen2-vl-image").count_records(recs)
    with TestClient(create_app()) as c:
        page = c.get(f"/listings/{lid}/thumbs")
        assert page.status_code == 200 and page.text.count('data-testid="tile"') == 6
        shown = [int(x.replace(",", "")) for x in re.findall(r'data-testid="tile-tokens">([\d,]+)<', page.text)]
        assert shown == counts and shown[0] > 0 and shown[3] == 0  # audio has no tokens under an image schedule
        assert f"/listings/{lid}/thumbs/0.webp" in page.text and f"/listings/{lid}/preview/3" in page.text
        assert "免费样例" in c.get(f"/listings/{lid}/thumbs?lang=zh").text
        assert f'href="/listings/{lid}/thumbs"' in c.get(f"/listings/{lid}").text  # linked from the listing page

        for i, r in enumerate(recs[:3]):
            t = c.get(f"/listings/{lid}/thumbs/{i}.webp")
            assert t.status_code == 200 and t.headers["content-type"] == "image/webp"
            im = Image.open(io.BytesIO(t.content))
            w, h = r["meta"]["image"]["width"], r["meta"]["image"]["height"]
            assert max(im.size) == min(256, max(w, h)) and abs(im.size[0] / im.size[1] - w / h) < 0.05
        video = Image.open(io.BytesIO(c.get(f"/listings/{lid}/thumbs/4.webp").content))
        assert video.size == (80, 48)  # smaller than a thumbnail: kept as it is

        # made once, then served from the cache folder
        cached = list((Path(settings().home) / "cache" / "thumbs").rglob("*.webp"))
        assert len(cached) == 4
        first = next(p for p in cached if p.name.startswith(recs[0]["meta"]["sha256"]))
        first.write_bytes(b"RIFF-cached")
        assert c.get(f"/listings/{lid}/thumbs/0.webp").content == b"RIFF-cached"

        audio = c.get(f"/listings/{lid}/preview/3")
        assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
        assert audio.content == recs[3]["media"]
        assert c.get(f"/listings/{lid}/preview/4").headers["content-type"] == "video/mp4"
        no_thumb = c.get(f"/listings/{lid}/thumbs/3.webp")
        assert no_thumb.status_code == 422 and "preview" in no_thumb.json()["error"]["hint"]
        missing = c.get(f"/listings/{lid}/thumbs/9.webp")
        assert missing.status_code == 404 and "0..5" in missing.json()["error"]["hint"]
        assert c.get(f"/listings/{lid}/preview/5").status_code == 404  # the text record
        assert c.get("/listings/lst_nope/thumbs").status_code == 404


def test_only_the_free_sample_is_shown(db_home) -> None:
    from fastapi.testclient import TestClient

    from ciyuan.api.app import create_app

    listing, _ = _listing(sample=2)
    with TestClient(create_app()) as c:
        assert c.get(f"/listings/{listing['id']}/thumbs").text.count('data-testid="tile"') == 2
        assert c.get(f"/listings/{listing['id']}/thumbs/2.webp").status_code == 404  # beyond the sample
