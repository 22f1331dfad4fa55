"""Lossless, content-addressed media: small objects inside the shards, large ones as blobs named by
their sha256 on the same storage; the version id covers the bytes, ``ciyuan verify`` checks blobs."""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from clihelp import cli
from media_gen import image_bytes, video_bytes
from typer.testing import CliRunner

from ciyuan.cli.main import app

runner = CliRunner()


@pytest.fixture
def small_inline(home: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Objects above 4,000 bytes become blobs (the default is 1 MiB)."""
    from ciyuan.config import settings

    monkeypatch.setenv("CIYUAN_MEDIA_INLINE_MAX_BYTES", "4000")
    settings.cache_clear()
    return 4000


def _folder(root: Path, big: bytes, small: bytes) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "big.png").write_bytes(big)
    (root / "small.png").write_bytes(small)
    (root / "big.txt").write_text("a large picture", encoding="utf-8")
    return root


def test_threshold_round_trip_and_verify(home: Path, small_inline: int, tmp_path: Path) -> None:
    from ciyuan.store import resolve
    from ciyuan.store.blobs import BlobStore, rel_path

    big, small = image_bytes("PNG", (200, 150)), image_bytes("PNG", (16, 16))
    assert len(big) > small_inline >= len(small)
    out = cli("ingest", str(_folder(tmp_path / "pics", big, small)), "--dataset", "pics")
    assert (out["records"], out["blobs"]) == (2, 1)

    v = resolve("pics")
    raw = {r["meta"]["path"]: r for r in v.iter_records()}
    digest = hashlib.sha256(big).hexdigest()
    assert raw["big.png"]["media"] is None and raw["big.png"]["media_ref"] == f"sha256:{digest}"
    assert raw["small.png"]["media"] == small and raw["small.png"]["media_ref"] is None
    assert v.manifest["blobs"] == [{"sha256": digest, "bytes": len(big)}]
    store = BlobStore()
    blob = Path(store.path(digest))
    assert blob.read_bytes() == big and blob.parent.name == digest[:2] and blob.name == digest[2:]
    assert blob.is_relative_to(home)  # the same storage as the shards

    resolved = {r["meta"]["path"]: r for r in v.iter_records(resolve_media=True)}
    for name, data in (("big.png", big), ("small.png", small)):
        assert resolved[name]["media"] == data
        assert resolved[name]["meta"]["sha256"] == hashlib.sha256(data).hexdigest()
        with v.open_media(raw[name]) as fh:
            assert fh.read() == data

    assert cli("verify", "pics")["ok"] is True
    flipped = bytearray(big)
    flipped[len(flipped) // 2] ^= 0x01
    blob.write_bytes(bytes(flipped))
    res = cli("verify", "pics", code=1)
    assert res["problems"] == [{"path": rel_path(digest), "problem": "changed", "expected": digest,
                                "actual": hashlib.sha256(flipped).hexdigest()}]
    shown = runner.invoke(app, ["verify", "pics"])
    assert shown.exit_code == 1 and rel_path(digest) in shown.stdout
    blob.unlink()
    assert cli("verify", "pics", code=1)["problems"] == [{"path": rel_path(digest), "problem": "missing"}]


def test_version_id_covers_the_media_bytes(home: Path, small_inline: int, tmp_path: Path) -> None:
    big, small = image_bytes("PNG", (200, 150)), image_bytes("PNG", (16, 16))
    first = cli("ingest", str(_folder(tmp_path / "a" / "pics", big, small)), "--dataset", "p")["version"]
    again = cli("ingest", str(_folder(tmp_path / "b" / "pics", big, small)), "--dataset", "p")["version"]
    assert first == again  # same bytes, same names: same version, wherever the folder sat
    for which in ("big", "small"):  # one byte of pixel data changed: a blob, then an inline object
        data = bytearray(big if which == "big" else small)
        data[len(data) // 2] ^= 0x01  # inside IDAT: the structure still probes the same
        pair = (bytes(data), small) if which == "big" else (big, bytes(data))
        other = cli("ingest", str(_folder(tmp_path / which / "pics", *pair)), "--dataset", "p")
        assert other["records"] == 2 and other["version"] != first


def test_large_tar_member_streams_into_a_blob(home: Path, small_inline: int, tmp_path: Path) -> None:
    from ciyuan.store import resolve

    clip = video_bytes("mp4", "libx264", frames=30, size=(96, 64), fps=10)
    assert len(clip) > small_inline
    shard = tmp_path / "clips.tar"
    with tarfile.open(shard, "w") as tf:
        tf.add(_write(tmp_path / "c1.mp4", clip), arcname="c1.mp4")
        tf.add(_write(tmp_path / "c1.txt", b"moving noise"), arcname="c1.txt")
    out = cli("ingest", str(shard), "--dataset", "clips")
    assert (out["records"], out["blobs"], out["modality"]) == (1, 1, "video")
    (rec,) = resolve("clips").iter_records(resolve_media=True)
    assert rec["media"] == clip and rec["media_ref"] == "sha256:" + hashlib.sha256(clip).hexdigest()
    assert rec["meta"]["source"] == "clips.tar/c1.mp4" and rec["text"] == "moving noise"
    from ciyuan.store.blobs import BlobStore

    assert not list((Path(BlobStore().root) / "blobs" / "tmp").glob("*"))  # no half-written blob left


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_export_writes_the_media_bytes_exactly(home: Path, small_inline: int, tmp_path: Path) -> None:
    big, small = image_bytes("PNG", (200, 150)), image_bytes("PNG", (16, 16))
    cli("ingest", str(_folder(tmp_path / "pics", big, small)), "--dataset", "pics")
    media = tmp_path / "media"
    out = cli("export", "pics", "--format", "jsonl", "--out", str(tmp_path / "pics.jsonl"), "--media-dir", str(media))
    assert out["records"] == 2 and out["media_dir"] == str(media)
    lines = (tmp_path / "pics.jsonl").read_text().splitlines()
    rows = {json.loads(line)["meta"]["path"]: json.loads(line) for line in lines}
    for name, data in (("big.png", big), ("small.png", small)):
        written = (media / rows[name]["media_file"]).read_bytes()
        assert written == data and hashlib.sha256(written).hexdigest() == rows[name]["meta"]["sha256"]
    assert rows["big.png"]["media_ref"] == "sha256:" + hashlib.sha256(big).hexdigest()
    cli("export", "pics", "--format", "parquet", "--out", str(tmp_path / "pics.parquet"), "--media-dir",
        str(tmp_path / "m2"))
    assert sorted(p.name for p in (tmp_path / "m2").rglob("*") if p.is_file()) == sorted(
        hashlib.sha256(d).hexdigest() for d in (big, small))


def test_a_version_made_from_blob_records_lists_their_blobs(home: Path, small_inline: int, tmp_path: Path) -> None:
    """Curation and other derived versions copy records with ``media_ref``: the blobs stay listed."""
    from ciyuan.errors import InvalidInput
    from ciyuan.store import VersionBuilder, resolve

    big, small = image_bytes("PNG", (200, 150)), image_bytes("PNG", (16, 16))
    cli("ingest", str(_folder(tmp_path / "pics", big, small)), "--dataset", "pics")
    parent = resolve("pics")
    b = VersionBuilder("pics-copy", made_by={"tool": "tests"}, tokenizers=parent.tokenizers)
    for rec in parent.iter_records():
        b.add(rec)
    child = b.commit()
    assert child.manifest["blobs"] == parent.manifest["blobs"]
    assert cli("verify", "pics-copy")["ok"] is True
    bad = VersionBuilder("bad", made_by={"tool": "tests"})
    with pytest.raises(InvalidInput, match="names no blob"):
        bad.add({"id": "x", "modality": "image", "text": None, "media_ref": "sha256:" + "0" * 64, "meta": {}})
    bad.abort()
