"""The Croissant card of media versions: FileSets per media format with their IANA encodingFormat,
a ``media`` field typed sc:ImageObject / sc:AudioObject / sc:VideoObject, valid by ``mlcroissant
validate``, and ``mlcroissant load`` yields every record with its bytes (decoded to PIL for images).

Real PNG and WAV bytes probed by the ingest probe, committed by the store's builder.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "media"))

import media_gen  # noqa: E402
import media_sets  # noqa: E402

from ciyuan.appraise import engine  # noqa: E402
from ciyuan.appraise.card import media_type  # noqa: E402

EXE = Path(sys.executable).with_name("mlcroissant")


def _validate(path: Path) -> None:
    res = subprocess.run([str(EXE), "validate", "--jsonld", str(path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def _load(path: Path) -> list[dict]:
    import mlcroissant as mlc

    return list(mlc.Dataset(str(path)).records("records"))


def _media_sets(card: dict) -> dict[str, dict]:
    return {d["@id"]: d for d in card["distribution"] if str(d["@id"]).startswith("media-")}


def test_image_card_validates_and_loads_pil_images(home, tmp_path) -> None:
    from PIL import Image

    recs = media_sets.image_records() + [media_sets.media_record("jpg0", media_gen.image_bytes("JPEG", (80, 60)),
                                                                 "jpg0.jpg", text="a jpeg")]
    v = media_sets.build("pics", recs)
    out = tmp_path / "card.json"
    card = engine.card(v.ref, out=str(out))
    sets = _media_sets(card)
    assert {k: (s["encodingFormat"], s["@type"]) for k, s in sets.items()} == {
        "media-image-png": ("image/png", "cr:FileSet"), "media-image-jpeg": ("image/jpeg", "cr:FileSet")}
    assert all(s["containedIn"] == {"@id": "shards"} for s in sets.values())
    fields = {f["name"]: f for f in card["recordSet"][0]["field"]}
    assert fields["media"]["dataType"] == "sc:ImageObject"
    assert card["ciyuan:media"]["by_modality"] == {"image": 7}
    _validate(out)
    _validate(Path(v.location) / "croissant.json")  # the copy in the version folder, relative paths
    rows = {r["records/id"].decode(): r for r in _load(out)}
    assert sorted(rows) == sorted(r["id"] for r in recs)
    for r in recs:
        im = rows[r["id"]]["records/media"]
        assert isinstance(im, Image.Image)
        assert im.size == (r["meta"]["image"]["width"], r["meta"]["image"]["height"])
        assert json.loads(rows[r["id"]]["records/meta"])["sha256"] == r["meta"]["sha256"]
    res = subprocess.run([str(EXE), "load", "--jsonld", str(Path(v.location) / "croissant.json"), "--record_set",
                          "records", "--num_records", "20"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len([ln for ln in res.stdout.splitlines() if ln.startswith("{'records/id'")]) == 7


def test_audio_card_validates_and_loads_the_bytes(home, tmp_path) -> None:
    recs = media_sets.audio_records()
    v = media_sets.build("talks", recs)
    out = tmp_path / "audio.json"
    card = engine.card(v.ref, out=str(out))
    assert {k: s["encodingFormat"] for k, s in _media_sets(card).items()} == {"media-audio-wav": "audio/wav"}
    fields = {f["name"]: f for f in card["recordSet"][0]["field"]}
    assert fields["media"]["dataType"] == "sc:AudioObject" and "audio/wav" in fields["media"]["description"]
    _validate(out)
    rows = {r["records/id"].decode(): r for r in _load(out)}
    for r in recs:
        data = rows[r["id"]]["records/media"]
        assert hashlib.sha256(data).hexdigest() == r["meta"]["sha256"]  # the ingested bytes, unchanged


def test_text_card_has_no_media_parts_and_mixed_media_is_raw_bytes(home) -> None:
    v = media_sets.build("plain", [{"id": "t", "text": "hello"}])
    card = engine.card(v.ref)
    assert not _media_sets(card) and "media" not in {f["name"] for f in card["recordSet"][0]["field"]}
    assert "ciyuan:media" not in card
    assert media_type({"by_modality": {"image": 2, "audio": 1}}) == "sc:Text"
    assert media_type({"by_modality": {"video": 1}}) == "sc:VideoObject"


def test_listing_card_with_its_free_sample_validates(db_home, tmp_path) -> None:
    from ciyuan.db import tx
    from ciyuan.market import accounts, listing_files, listings

    tx.run(lambda s: accounts.create_account(s, "prov", "provider"))
    v = media_sets.build("talks", media_sets.audio_records(), ("whisper-audio",))
    listing = listings.publish(v.ref, provider="prov", price_per_mtok="10.00", schedule="whisper-audio", sample=2)
    card = listing_files.listing_card(listing["id"], "http://127.0.0.1:9")
    assert "sample-file" in {d["@id"] for d in card["distribution"]}
    assert {f["name"]: f for f in card["recordSet"][0]["field"]}["media"]["dataType"] == "sc:AudioObject"
    assert "media" not in {f["name"] for f in card["recordSet"][1]["field"]}  # the sample file has no bytes
    assert _media_sets(card)["media-audio-wav"]["encodingFormat"] == "audio/wav"
    path = tmp_path / "c.json"
    path.write_text(json.dumps(card))
    _validate(path)
