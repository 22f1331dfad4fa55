"""Media stored as blobs (``media_ref``) through every delivery path, against a real uvicorn server.

Objects above 1,500 bytes become content-addressed blobs (the default threshold is 1 MiB), so the
gradient PNGs of ``media_sets`` are part inline, part blobs, and ``img5`` shares ``img0``'s blob.
The stream carries only the reference; the SDK fetches the bytes through signed, expiring URLs that
the exchange grants only for records the entitlement was billed for, at no extra charge. Packages
list every blob, so a downloaded package is a self-contained folder.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "media"))

import media_gen  # noqa: E402
import media_sets  # noqa: E402

from ciyuan.db import tx  # noqa: E402
from ciyuan.delivery import media, plan, stream, usage  # noqa: E402
from ciyuan.market import orders, quotes  # noqa: E402
from ciyuan.sdk import ApiError, Client, TokenStream, read_package  # noqa: E402
from ciyuan.tokens import get_schedule  # noqa: E402

WIDE = {"filter": {"field": "meta.image.width", "op": "ge", "value": 512}}  # img0, img2, img3, img5
ARROW = {"Accept": "application/vnd.apache.arrow.stream"}


def _ref(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _market(name: str, records: list[dict], schedule: str) -> SimpleNamespace:
    from ciyuan.ledger import ledger
    from ciyuan.ledger.money import parse_amount
    from ciyuan.market import accounts, listings

    def setup(sess):
        accs = {n: accounts.create_account(sess, n, r)
                for n, r in [("prov", "provider"), ("alice", "buyer"), ("bob", "buyer")]}
        keys = {n: accounts.create_key(sess, n)[1] for n in ("alice", "bob")}
        for n in ("alice", "bob"):
            ledger.deposit(sess, f"dep-{n}", accs[n].id, parse_amount("100000.00", "CNY"), "CNY")
        return accs, keys

    accs, keys = tx.run(setup)
    keep = {r["id"]: dict(r) for r in records}  # the builder moves a blob's bytes out of its record
    v = media_sets.build(name, [dict(r) for r in records], (schedule,), rows_per_shard=3, batch_rows=2)
    listing = listings.publish(v.ref, provider="prov", price_per_mtok="1000.00", schedule=schedule, sample=0)
    counts = dict(zip([r["id"] for r in records], get_schedule(schedule).count_records(records), strict=True))
    return SimpleNamespace(key=keys["alice"], bob=keys["bob"], buyer=accs["alice"].id, bob_id=accs["bob"].id,
                           listing=listing, version=v, records=keep, counts=counts)


@pytest.fixture
def blobs_small(home, monkeypatch):
    from ciyuan.config import settings

    monkeypatch.setenv("CIYUAN_MEDIA_INLINE_MAX_BYTES", "1500")
    settings.cache_clear()
    yield 1500
    settings.cache_clear()


@pytest.fixture
def images(blobs_small, server_factory):
    env = _market("pics", media_sets.image_records(), "qwen2-vl-image")
    env.srv = server_factory().start()
    return env


def _metered(env, selection, buyer=None, key="k1") -> tuple[str, dict]:
    q = quotes.create_quote(buyer or env.buyer, env.listing["id"], selection)
    order, _ = usage.place_metered_order(buyer or env.buyer, q["id"], key)
    return order["entitlement"]["id"], q


def _meter(ent: str) -> dict:
    return tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))


def _balance(c: Client) -> int:
    return next(b["available"] for b in c.balance()["balances"] if b["currency"] == "CNY")


def test_the_version_holds_blobs_and_the_stream_only_their_refs(images) -> None:
    env = images
    raw = {r["id"]: r for r in env.version.iter_records()}
    assert {i for i, r in raw.items() if r["media_ref"]} == {"img0", "img2", "img4", "img5"}
    assert raw["img0"]["media_ref"] == raw["img5"]["media_ref"] == _ref(env.records["img0"]["media"])
    ent, _q = _metered(env, None)
    c = Client(env.srv.url, env.key)
    kept = list(c.stream(ent, resolve_media=False))  # the reference only, as the exchange sends it
    assert [r["media"] is None for r in kept] == [True, False, True, False, True, True]
    assert kept[2]["media_ref"] == _ref(env.records["img2"]["media"])


def test_stream_resolves_blob_bytes_billed_exactly_once_and_fetching_is_free(images) -> None:
    env = images
    ent, q = _metered(env, WIDE)
    c = Client(env.srv.url, env.key)
    before = _balance(c)
    got = list(c.stream(ent, max_tokens=1, fmt="ndjson"))  # one record a batch, NDJSON
    assert [r["id"] for r in got] == ["img0", "img2", "img3", "img5"]
    for r in got:
        want = env.records[r["id"]]
        assert r["media"] == want["media"] and r["meta"]["image"] == want["meta"]["image"]
    m = _meter(ent)
    assert (m["tokens_posted"], m["amount_posted"], m["tokens_held"]) == (q["tokens"], q["amount"], 0)
    assert before - _balance(c) == q["amount"]
    # fetching the blobs again, replaying the stream, decoding it: nothing more is charged
    for r in got:
        if r["media_ref"]:
            assert c.media(ent, r["media_ref"]) == r["media"]
    again = list(c.stream(ent, decode="numpy"))
    assert [r["decoded"].shape[:2] for r in again] == [(480, 640), (512, 512), (256, 1024), (480, 640)]
    assert _meter(ent) == m and before - _balance(c) == q["amount"]
    usage_rows = c.all_usage(ent)
    assert sum(u["tokens"] for u in usage_rows) == q["tokens"]


def test_blobs_are_refused_before_billing_for_other_buyers_and_outside_the_selection(images) -> None:
    env = images
    ent, _q = _metered(env, WIDE)
    img0, img2, img4 = (_ref(env.records[i]["media"]) for i in ("img0", "img2", "img4"))
    c = Client(env.srv.url, env.key)
    with pytest.raises(ApiError) as err:  # nothing delivered yet: nothing billed
        c.media(ent, img0)
    assert (err.value.status, err.value.code) == (403, "media_not_billed")
    with httpx.Client(base_url=env.srv.url, headers={"Authorization": f"Bearer {env.key}"}, timeout=60) as h:
        r = h.get(f"/v1/entitlements/{ent}/records", params={"max_tokens": 1}, headers=ARROW)
        assert r.status_code == 200 and r.headers["Ciyuan-Records"] == "1"  # img0 sent: held, so billed
        held = _meter(ent)
        assert c.media(ent, img0) == env.records["img0"]["media"]  # the open batch's blob is granted
        with pytest.raises(ApiError, match="media_not_billed"):  # img2 is in a batch not sent yet
            c.media(ent, img2)
        with pytest.raises(ApiError) as err:
            c.media(ent, img4)  # img4 is 300 px wide: not in this selection at all
        assert (err.value.status, err.value.code) == (404, "media_not_found")
        assert _meter(ent) == held  # asking for blobs moves no money
    with pytest.raises(ApiError) as err:  # another buyer cannot use alice's entitlement
        Client(env.srv.url, env.bob).media(ent, img0)
    assert err.value.status == 404
    # bob's own entitlement grants nothing of what he was not billed for either
    bob_ent, _ = _metered(env, WIDE, buyer=env.bob_id, key="k2")
    with pytest.raises(ApiError, match="media_not_billed"):
        Client(env.srv.url, env.bob).media(bob_ent, img0)
    # a signed URL cannot be bent to another blob, another entitlement, or past its expiry
    url = c.media_url(ent, img0)
    with httpx.Client(timeout=60) as anon:
        assert anon.get(url).content == env.records["img0"]["media"]  # the URL is the credential
        path, query = url.split("?")
        d0, d4 = img0.removeprefix("sha256:"), img4.removeprefix("sha256:")
        assert anon.get(path.replace(d0, d4) + "?" + query).status_code == 403
        assert anon.get(path.replace(ent, bob_ent) + "?" + query).status_code == 403
        old = media.signed_path(ent, d0, int(time.time()) - 10)
        r = anon.get(env.srv.url + old)
        assert r.status_code == 410 and r.json()["error"]["code"] == "url_expired"


def test_video_blob_streams_by_byte_ranges_and_resumes_a_download(blobs_small, server_factory, tmp_path) -> None:
    clip = media_gen.video_bytes(frames=30, size=(160, 120))
    env = _market("clips", [media_sets.media_record("clip0", clip, "clip0.mp4", text="noise")], "qwen2.5-vl-video")
    srv = server_factory().start()
    ent, q = _metered(env, None)
    c = Client(srv.url, env.key)
    (rec,) = c.stream(ent, decode="numpy")  # fetched, checked and decoded transparently
    v = rec["meta"]["video"]
    assert rec["media"] == clip and rec["decoded"].shape == (v["frames"], v["height"], v["width"], 3)
    url = c.media_url(ent, _ref(clip))
    with httpx.Client(timeout=60) as h:
        whole = h.get(url)
        assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
        assert int(whole.headers["content-length"]) == len(clip) and whole.content == clip
        part = h.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == clip[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(clip)}"
        assert h.get(url, headers={"Range": "bytes=-50"}).content == clip[-50:]
        assert h.get(url, headers={"Range": f"bytes={len(clip) - 10}-"}).content == clip[-10:]
        past = h.get(url, headers={"Range": f"bytes={len(clip)}-"})
        assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{len(clip)}"
    target = tmp_path / "clip0.mp4"
    (tmp_path / "clip0.mp4.part").write_bytes(clip[:1000])  # a download broken after 1,000 bytes
    assert c.media(ent, _ref(clip), path=target) == len(clip)
    assert target.read_bytes() == clip and not (tmp_path / "clip0.mp4.part").exists()
    (tmp_path / "bad.mp4.part").write_bytes(b"\0" * 1000)  # a corrupt partial file is thrown away
    assert c.media(ent, _ref(clip), path=tmp_path / "bad.mp4") == len(clip)
    assert (tmp_path / "bad.mp4").read_bytes() == clip
    m = _meter(ent)
    assert (m["tokens_posted"], m["amount_posted"]) == (q["tokens"], q["amount"])


def test_token_stream_in_forked_workers_resolves_blobs_once_each(images) -> None:
    from torch.utils.data import DataLoader

    env = images
    ent, q = _metered(env, None)
    c = Client(env.srv.url, env.key)
    c.balance()  # the parent's connection exists before the workers fork
    ds = TokenStream(c, ent, max_tokens=600, num_workers=2)
    seen = {}
    for item in DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork"):
        assert item["id"] not in seen
        seen[item["id"]] = item
    assert sorted(seen) == [f"img{i}" for i in range(6)]
    for rid, item in seen.items():
        assert item["media"] == env.records[rid]["media"]
    m = _meter(ent)
    assert (m["tokens_posted"], m["amount_posted"]) == (q["tokens"], q["amount"])
    ds = TokenStream(c, ent, max_tokens=600, resolve_media=False)
    ds.load_state_dict(ds_state(ent))  # the stream keeps its two partitions; read partition 0 again, free
    refs = next(iter(ds))
    assert refs["media"] == b"" and refs["media_ref"] == _ref(env.records["img0"]["media"])
    assert _meter(ent)["amount_posted"] == q["amount"]


def ds_state(ent: str) -> dict:
    """A TokenStream state at the start of a two-partition stream."""
    return {"entitlement_id": ent, "parts": 2, "positions": {}}


def test_package_is_a_self_contained_folder_with_every_blob(images, tmp_path) -> None:
    env = images
    q = quotes.create_quote(env.buyer, env.listing["id"], WIDE)
    order, _ = orders.place_order(env.buyer, q["id"], "paid-1")
    ent = order["entitlement"]["id"]
    c = Client(env.srv.url, env.key)
    pkg = c.package(ent)
    assert sorted(m["ref"] for m in pkg["media"]) == sorted({_ref(env.records[i]["media"]) for i in ("img0", "img2")})
    manifest = c.download_package(ent, tmp_path / "pkg")
    assert manifest["records"] == 4 and manifest["tokens"] == q["tokens"]
    for m in manifest["media"]:
        assert (tmp_path / "pkg" / m["file"]).stat().st_size == m["bytes"]
    got = list(read_package(tmp_path / "pkg"))
    assert [r["id"] for r in got] == ["img0", "img2", "img3", "img5"]
    for r in got:
        want = env.records[r["id"]]
        assert r["media"] == want["media"] and r["meta"]["image"] == want["meta"]["image"]
    kept = read_package(tmp_path / "pkg", resolve_media=False)
    assert [r["media"] is None for r in kept] == [True, True, False, True]
    # a paid entitlement also streams, blobs included, with no further charge
    before = _balance(c)
    assert [r["media"] for r in c.stream(ent)] == [env.records[i]["media"] for i in ("img0", "img2", "img3", "img5")]
    assert _balance(c) == before


def test_byte_range_header_parsing() -> None:
    assert media.byte_range(None, 10) is None
    assert media.byte_range("bytes=2-4", 10) == (2, 5)
    assert media.byte_range("bytes=2-", 10) == (2, 10)
    assert media.byte_range("bytes=-3", 10) == (7, 10)
    assert media.byte_range("bytes=-30", 10) == (0, 10)
    assert media.byte_range("bytes=5-100", 10) == (5, 10)
    assert media.byte_range("bytes=0-1,4-5", 10) is None  # several ranges: the whole blob
    assert media.byte_range("items=0-1", 10) is None
    for bad in ("bytes=10-", "bytes=4-2", "bytes=-0"):
        with pytest.raises(media.RangeNotSatisfiable):
            media.byte_range(bad, 10)
    assert json.dumps(media.byte_range("bytes=0-0", 1)) == "[0, 1]"
