"""Media through every delivery path: the metered stream (NDJSON base64, Arrow binary), the SDK's
``Client.stream`` and ``TokenStream`` decoding to PIL / numpy / torch, and a paid package.

Real PNG/WAV/MP4 bytes with the probe's facts, listings under media schedules (qwen2-vl-image,
whisper-audio, qwen2.5-vl-video), a real uvicorn server and ledger. Each path must deliver the
ingested bytes unchanged (sha256 against ``meta.sha256``), with their probed meta, and bill the
schedule's count of exactly the selected records once, also across a resume.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import httpx
import pyarrow as pa
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "media"))

import media_gen  # noqa: E402
import media_sets  # noqa: E402

from ciyuan.db import tx  # noqa: E402
from ciyuan.delivery import packages, plan, stream, usage  # noqa: E402
from ciyuan.market import orders, quotes  # noqa: E402
from ciyuan.sdk import Client, TokenStream  # noqa: E402
from ciyuan.tokens import get_schedule  # noqa: E402

WIDE = {"filter": {"field": "meta.image.width", "op": "ge", "value": 512}}


def _market(name: str, records: list[dict], schedule: str) -> SimpleNamespace:
    from ciyuan.ledger import ledger
    from ciyuan.ledger.money import parse_amount
    from ciyuan.market import accounts, listings

    def setup(sess):
        accs = {n: accounts.create_account(sess, n, r) for n, r in [("prov", "provider"), ("alice", "buyer")]}
        _, key = accounts.create_key(sess, "alice")
        ledger.deposit(sess, "dep-1", accs["alice"].id, parse_amount("100000.00", "CNY"), "CNY")
        return accs, key

    accs, key = tx.run(setup)
    v = media_sets.build(name, records, (schedule,), rows_per_shard=3, batch_rows=2)
    listing = listings.publish(v.ref, provider="prov", price_per_mtok="1000.00", schedule=schedule, sample=0)
    counts = dict(zip([r["id"] for r in records], get_schedule(schedule).count_records(records), strict=True))
    return SimpleNamespace(key=key, buyer=accs["alice"].id, listing=listing, records={r["id"]: r for r in records},
                           counts=counts)


def _metered(env, selection, key="k1") -> tuple[str, dict]:
    q = quotes.create_quote(env.buyer, env.listing["id"], selection)
    order, _ = usage.place_metered_order(env.buyer, q["id"], key)
    return order["entitlement"]["id"], q


def _billed(ent: str, q: dict) -> None:
    m = tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))
    assert m["tokens_posted"] == q["tokens"] and m["amount_posted"] == q["amount"] and m["tokens_held"] == 0


def _same_bytes(env, rid: str, data: bytes) -> None:
    assert hashlib.sha256(data).hexdigest() == env.records[rid]["meta"]["sha256"]
    assert data == env.records[rid]["media"]


@pytest.fixture
def images(home, server_factory):
    env = _market("pics", media_sets.image_records(), "qwen2-vl-image")
    env.srv = server_factory().start()
    return env


def test_ndjson_and_arrow_carry_media_bytes_and_probed_meta_billed_once(images) -> None:
    env = images
    ent, q = _metered(env, WIDE)
    wide = ["img0", "img2", "img3", "img5"]
    assert q["records"] == 4 and q["tokens"] == sum(env.counts[i] for i in wide)
    got: list[str] = []
    cursor = None
    with httpx.Client(base_url=env.srv.url, headers={"Authorization": f"Bearer {env.key}"}, timeout=60) as c:
        for k in range(10):
            fmt = "ndjson" if k % 2 == 0 else "arrow"  # alternate formats within one stream
            headers = {"Accept": "application/vnd.apache.arrow.stream"} if fmt == "arrow" else {}
            params = {"max_tokens": 1} | ({"cursor": cursor} if cursor else {})
            r = c.get(f"/v1/entitlements/{ent}/records", params=params, headers=headers)
            assert r.status_code == 200, r.text
            if r.headers.get("Ciyuan-Done") == "true":
                break
            if fmt == "ndjson":
                recs = [json.loads(line) for line in r.content.splitlines()]
                for rec in recs:
                    _same_bytes(env, rec["id"], base64.b64decode(rec["media"]))  # documented: base64 text
                    assert rec["meta"]["image"] == env.records[rec["id"]]["meta"]["image"]
            else:
                table = pa.ipc.open_stream(r.content).read_all()
                assert table.schema.field("media").type == pa.binary()
                recs = table.to_pylist()
                for rec in recs:
                    _same_bytes(env, rec["id"], rec["media"])
                    assert json.loads(rec["meta"])["image"]["width"] >= 512
            assert int(r.headers["Ciyuan-Tokens"]) == sum(env.counts[x["id"]] for x in recs)
            got += [x["id"] for x in recs]
            cursor = r.headers["Ciyuan-Next-Cursor"]
    assert got == wide
    _billed(ent, q)


def test_sdk_decodes_images_and_token_stream_resumes_exactly(images) -> None:
    import numpy as np
    import torch
    from PIL import Image

    env = images
    ent, q = _metered(env, None)
    c = Client(env.srv.url, env.key)
    ds = TokenStream(c, ent, max_tokens=600, decode="numpy")
    it = iter(ds)
    first = [next(it) for _ in range(2)]
    state = ds.state_dict()
    del it
    for rec in first:
        meta = json.loads(rec["meta"])["image"]
        assert isinstance(rec["decoded"], np.ndarray) and rec["decoded"].dtype == np.uint8
        assert rec["decoded"].shape == (meta["height"], meta["width"], 3)
    again = TokenStream(c, ent, max_tokens=600, decode="torch")
    again.load_state_dict(state)
    rest = list(again)
    assert [r["id"] for r in first + rest] == [f"img{i}" for i in range(6)]  # every record once, in order
    for rec in rest:
        meta = json.loads(rec["meta"])["image"]
        assert isinstance(rec["decoded"], torch.Tensor) and tuple(rec["decoded"].shape) == (3, meta["height"],
                                                                                             meta["width"])
        _same_bytes(env, rec["id"], rec["media"])
    _billed(ent, q)  # the resume re-read its open batch free: billed the quote exactly
    pil = list(c.stream(ent, fmt="ndjson", decode="pil"))  # a free replay, decoded to PIL
    assert [r["id"] for r in pil] == [f"img{i}" for i in range(6)]
    for rec in pil:
        assert isinstance(rec["decoded"], Image.Image)
        assert rec["decoded"].size == (rec["meta"]["image"]["width"], rec["meta"]["image"]["height"])
    assert np.array_equal(np.asarray(pil[0]["decoded"]), np.asarray(pil[5]["decoded"]))  # img5 copies img0
    _billed(ent, q)
    with pytest.raises(Exception, match="not a decoder"):
        TokenStream(c, ent, decode="jpeg")


def test_package_holds_media_bytes_and_meta(images, tmp_path) -> None:
    import pyarrow.parquet as pq

    env = images
    q = quotes.create_quote(env.buyer, env.listing["id"], WIDE)
    order, _ = orders.place_order(env.buyer, q["id"], "paid-1")
    ent = order["entitlement"]["id"]
    pkg = Client(env.srv.url, env.key).package(ent)
    assert pkg["tokens"] == q["tokens"] and pkg["records"] == 4
    rows = []
    for s in pkg["shards"]:
        target = tmp_path / f"{s['shard']}.parquet"
        Client(env.srv.url, env.key).download(s["url"], target)
        rows += pq.read_table(target).to_pylist()
    assert [r["id"] for r in rows] == ["img0", "img2", "img3", "img5"]
    for r in rows:
        _same_bytes(env, r["id"], r["media"])
        assert json.loads(r["meta"])["image"] == env.records[r["id"]]["meta"]["image"]
    assert packages.package(plan.plan(ent, env.buyer))["tokens"] == q["tokens"]


def test_audio_decodes_to_float32_with_its_sample_rate(home, server_factory) -> None:
    import numpy as np

    env = _market("talks", media_sets.audio_records(), "whisper-audio")
    srv = server_factory().start()
    ent, q = _metered(env, {"filter": {"field": "meta.audio.duration_s", "op": "le", "value": 30}})
    recs = list(Client(srv.url, env.key).stream(ent, max_tokens=100, decode="numpy"))
    assert [r["id"] for r in recs] == ["wav0", "wav2", "wav3"]
    for r in recs:
        a = r["meta"]["audio"]
        assert r["decoded"].dtype == np.float32 and r["decoded"].shape == (a["frames"],)
        assert r["sample_rate"] == a["sample_rate"] and 0.2 < float(np.abs(r["decoded"]).max()) <= 0.31
    _billed(ent, q)
    t = next(iter(TokenStream(Client(srv.url, env.key), ent, decode="torch")))
    assert tuple(t["decoded"].shape) == (1, env.records["wav0"]["meta"]["audio"]["frames"])


def test_video_decodes_to_frames(home, server_factory) -> None:

    clips = [media_sets.media_record(f"clip{i}", media_gen.video_bytes(frames=10 + 5 * i, size=(64, 48)),
                                     f"clip{i}.mp4", text="a clip") for i in range(2)]
    env = _market("clips", clips, "qwen2.5-vl-video")
    srv = server_factory().start()
    ent, q = _metered(env, {"filter": {"field": "meta.video.frames", "op": "gt", "value": 12}})
    assert q["records"] == 1 and q["tokens"] == env.counts["clip1"] > 0
    (rec,) = Client(srv.url, env.key).stream(ent, decode="numpy")
    v = rec["meta"]["video"]
    assert rec["decoded"].shape == (v["frames"], v["height"], v["width"], 3) and rec["fps"] == v["fps"]
    _billed(ent, q)
    frames = next(iter(TokenStream(Client(srv.url, env.key), ent, decode="pil")))["decoded"]
    assert len(frames) == 15 and frames[0].size == (64, 48)


def test_media_by_reference_refuses_to_decode_with_a_clear_error() -> None:
    from ciyuan.sdk.media import decode_record

    rec = {"id": "big", "modality": "video", "media": None, "media_ref": "sha256:" + "ab" * 32}
    with pytest.raises(Exception, match="big.*sha256:abab"):
        decode_record(rec, "numpy")
    assert decode_record({"id": "t", "modality": "text", "text": "x"}, "pil") == {"id": "t", "modality": "text",
                                                                                  "text": "x"}
    bad = {"id": "junk", "modality": "image", "media": b"\x89PNG\r\n\x1a\nnot really"}
    with pytest.raises(Exception, match="junk.*do not decode"):
        decode_record(bad, "pil")


def test_torch_decoding_without_torch_is_refused_before_streaming(monkeypatch) -> None:
    """On a machine without PyTorch, decode='torch' fails at once with what to do, not mid-stream."""
    import importlib.util

    from ciyuan.errors import InvalidInput
    from ciyuan.sdk import media

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(InvalidInput, match="needs PyTorch") as err:
        media.check_decode("torch")
    assert "decode='numpy'" in err.value.hint
    assert media.check_decode("numpy") == "numpy"
