"""RLDS / Open X-Embodiment folders through ``ciyuan ingest``, without TensorFlow: TFRecord shards and
tf.train.Example episodes written here (framing, masked crc32c, protobuf wire format), a corrupted
checksum quarantined with its file and record number, a missing features.json refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from clihelp import cli
from episode_gen import arm, example, rlds, tfrecord
from PIL import Image
from typer.testing import CliRunner

from ciyuan.cli.main import app
from ciyuan.ingest.readers import detect_format
from ciyuan.ingest.readers.episode import read_table
from ciyuan.ingest.readers.tfrecord import crc32c, parse_example, records

runner = CliRunner()


def test_crc32c_and_example_roundtrip(tmp_path: Path) -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    from ciyuan.ingest.readers.tfrecord import _raw

    blob = np.random.default_rng(0).integers(0, 256, 300_001, dtype=np.uint8).tobytes()
    for n in (4095, 4096, 5001, 300_001):  # the numpy lanes against the byte loop
        assert crc32c(blob[:n]) == _raw(0xFFFFFFFF, blob[:n]) ^ 0xFFFFFFFF
    data = example({"a": [1.5, -2.0], "b": [b"x", b""], "c": [3, -4, 1 << 40]})
    feats, seq = parse_example(data)
    assert not seq and feats == {"a": ("float", [1.5, -2.0]), "b": ("bytes", [b"x", b""]),
                                 "c": ("int64", [3, -4, 1 << 40])}
    f = tfrecord(tmp_path / "x.tfrecord", [data, data], corrupt=1)
    with open(f, "rb") as fh:
        got = list(records(fh))
    assert [(n, d == data, p is None) for n, d, p in got] == [(0, True, True), (1, True, False)]


def test_rlds_folder(home: Path, tmp_path: Path) -> None:
    root = rlds(tmp_path / "toy")
    old = root / "0.9.0"  # an older version beside it is not read
    old.mkdir()
    tfrecord(old / "toy-train.tfrecord-00000-of-00001", [example({"x": [1]})])
    assert detect_format(str(root)) == "rlds"
    out = cli("ingest", str(root), "--dataset", "oxe")
    assert (out["records"], out["quarantined"], out["modality"]) == (3, 0, "episode")
    assert list(out["tokens"]) == ["episode-openvla"]
    from ciyuan.store import resolve

    recs = sorted(resolve("oxe").iter_records(resolve_media=True), key=lambda r: r["meta"]["episode"]["episode_index"])
    for i, rec in enumerate(recs):
        ep = rec["meta"]["episode"]
        n = (12, 9, 7)[i]
        assert rec["text"] == "pick up the red cube" and ep["format"] == "rlds"
        assert (ep["length"], ep["fps"], ep["fps_source"], ep["action_dim"], ep["state_dim"]) == \
            (n, 10.0, "setting rlds_default_fps", 6, 6)
        assert ep["rlds"]["episode_metadata"] == {"file_path": f"/raw/ep{i}.npy"}
        table = read_table(rec["media"])
        state, action = arm(i, n, 10.0)
        assert np.array_equal(np.stack(table.column("observation.state").to_numpy(zero_copy_only=False)), state)
        assert np.array_equal(np.stack(table.column("action").to_numpy(zero_copy_only=False)), action)
        assert table.column("is_first").to_pylist() == [True] + [False] * (n - 1)
        cam = ep["cameras"]["observation.image"]
        assert (cam["frames"], cam["width"], cam["height"], cam["codec"]) == (n, 64, 48, "jpeg-padded")
    # the camera blob is the original JPEG bytes, zero-padded to the longest frame
    from ciyuan.store.blobs import BlobStore, digest_of

    ref = recs[0]["meta"]["attachments"]["observation.image"]["media_ref"]
    data = BlobStore().get(digest_of(ref))
    assert len(data) % 12 == 0
    frame = data[: len(data) // 12]
    assert Image.open(io.BytesIO(frame)).size == (64, 48)


def test_rlds_bad_crc_quarantines_one_record(home: Path, tmp_path: Path) -> None:
    root = rlds(tmp_path / "toy", corrupt=1)
    out = cli("ingest", str(root), "--dataset", "oxe2")
    assert (out["records"], out["quarantined"]) == (2, 1)
    rows = cli("show", "oxe2", "--quarantine")["items"]
    assert len(rows) == 1 and rows[0]["line"] == 1
    assert rows[0]["reason"].startswith("episode.bad_crc: 1.0.0/toy-train.tfrecord-00000-of-00002 record 1: data "
                                        "checksum does not match")


def test_rlds_without_features_json(home: Path, tmp_path: Path) -> None:
    root = rlds(tmp_path / "toy", lengths=(5,), features_json=False)
    res = runner.invoke(app, ["ingest", str(root), "--dataset", "oxe3", "--format", "rlds", "--json"])
    assert res.exit_code != 0 and "no features.json" in res.output


def test_appraise_counts_episode_tokens_by_default(home: Path, tmp_path: Path) -> None:
    from ciyuan.appraise import engine

    cli("ingest", str(rlds(tmp_path / "toy", lengths=(8, 6))), "--dataset", "oxe4")
    ap = engine.appraise("oxe4", seeds=(0,))
    assert ap["tokenizer"] == "episode-openvla"


def test_sequence_example() -> None:
    from episode_gen import _feature, _ld

    context = _ld(1, _ld(1, b"episode_id") + _ld(2, _feature([7])))
    flist = b"".join(_ld(1, _feature([float(i), float(i) + 0.5])) for i in range(3))
    lists = _ld(1, _ld(1, b"steps/action") + _ld(2, flist))
    feats, seq = parse_example(_ld(1, context) + _ld(2, lists))
    assert seq and feats == {"episode_id": ("int64", [7]), "steps/action": ("float", [0.0, 0.5, 1.0, 1.5, 2.0, 2.5])}
