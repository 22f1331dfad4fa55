"""Robot episodes end to end through ``ciyuan ingest``: LeRobot v2.1 and v3.0 folders and HDF5 demos
made here (arm kinematics, H.264/AV1 videos written with PyAV), each defect on its own episode, which
goes to the quarantine with its file, episode and frame while the other episodes import."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from clihelp import cli, quarantine, records
from episode_gen import CAM, hdf5_aloha, hdf5_robomimic, lerobot_v21, lerobot_v30
from typer.testing import CliRunner

from ciyuan.cli.main import app
from ciyuan.ingest.readers import detect_format
from ciyuan.ingest.readers.episode import read_table

runner = CliRunner()


def manifest(name: str) -> dict:
    from ciyuan.store import resolve

    return resolve(name).manifest


def blob(ref: str) -> bytes:
    from ciyuan.store.blobs import BlobStore, digest_of

    return BlobStore().get(digest_of(ref))


def test_detects_each_layout(tmp_path: Path) -> None:
    assert detect_format(str(lerobot_v21(tmp_path / "a", lengths=(5,)))) == "lerobot-v2.1"
    assert detect_format(str(lerobot_v30(tmp_path / "b", lengths=(5,)))) == "lerobot-v3.0"
    assert detect_format(str(hdf5_robomimic(tmp_path / "c.hdf5", lengths=(5,)))) == "hdf5-demos"
    assert detect_format(str(hdf5_aloha(tmp_path / "d" / "episode_0.hdf5").parent)) == "hdf5-demos"


def test_lerobot_v21(home: Path, tmp_path: Path) -> None:
    root = lerobot_v21(tmp_path / "so100", lengths=(30, 24, 20))
    out = cli("ingest", str(root), "--dataset", "arm")
    assert (out["records"], out["quarantined"], out["modality"]) == (3, 0, "episode")
    assert list(out["tokens"]) == ["episode-openvla"] and out["tokens"]["episode-openvla"] > 74 * 6
    recs = sorted(records("arm"), key=lambda r: r["meta"]["episode"]["episode_index"])
    m = manifest("arm")
    blobs = {b["sha256"] for b in m["blobs"]}
    for i, rec in enumerate(recs):
        ep = rec["meta"]["episode"]
        assert rec["modality"] == "episode" and rec["text"] == ["pick up the red cube",
                                                               "push the block to the left"][i % 2]
        assert (ep["length"], ep["fps"], ep["action_dim"], ep["state_dim"]) == ((30, 24, 20)[i], 10.0, 6, 6)
        assert ep["features"]["action"] == {"dtype": "float", "shape": [6], "role": "action"}
        assert ep["robot_type"] == "synthetic_arm6" and "stats_recomputed" not in ep
        # the frame table is the data file's rows, exactly
        table = read_table(rec["media"])
        assert table.equals(pq.read_table(root / "data" / "chunk-000" / f"episode_{i:06d}.parquet"))
        # the camera video is the original file's bytes, content addressed
        cam = ep["cameras"][CAM]
        assert (cam["frames"], cam["width"], cam["height"], cam["codec"]) == (ep["length"], 64, 48, "h264")
        ref = rec["meta"]["attachments"][CAM]["media_ref"]
        raw = (root / cam["file"]).read_bytes()
        assert blob(ref) == raw and ref == "sha256:" + hashlib.sha256(raw).hexdigest()
        assert ref.removeprefix("sha256:") in blobs


def test_lerobot_v30_shares_one_video_blob(home: Path, tmp_path: Path) -> None:
    root = lerobot_v30(tmp_path / "v3", lengths=(30, 24, 20))
    out = cli("ingest", str(root), "--dataset", "arm3")
    assert (out["records"], out["quarantined"]) == (3, 0)
    recs = sorted(records("arm3"), key=lambda r: r["meta"]["episode"]["episode_index"])
    refs = {r["meta"]["attachments"][CAM]["media_ref"] for r in recs}
    raw = (root / "videos" / CAM / "chunk-000" / "file-000.mp4").read_bytes()
    assert refs == {"sha256:" + hashlib.sha256(raw).hexdigest()}  # one file, stored once, whole
    ranges = [(r["meta"]["episode"]["cameras"][CAM]["from_s"], r["meta"]["episode"]["cameras"][CAM]["to_s"])
              for r in recs]
    assert ranges == [(0.0, 3.0), (3.0, 5.4), (5.4, 7.4)]
    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    start = 0
    for rec in recs:
        n = rec["meta"]["episode"]["length"]
        assert read_table(rec["media"]).equals(data.slice(start, n))
        start += n


def test_av1_camera(home: Path, tmp_path: Path) -> None:
    root = lerobot_v30(tmp_path / "av1", lengths=(12, 10), codec="libsvtav1")
    out = cli("ingest", str(root), "--dataset", "av1")
    assert (out["records"], out["quarantined"]) == (2, 0)
    assert {r["meta"]["episode"]["cameras"][CAM]["codec"] for r in records("av1")} <= {"av1", "libdav1d", "libaom-av1"}


DEFECTS_V21 = {
    "frame_gap": ("frame_index_gap", "frame 5"),
    "index_gap": ("index_gap", "frame 7"),
    "timestamp_drift": ("timestamp_drift", "frame 4"),
    "nan": ("non_finite", "frame 3"),
    "shape": ("shape_changed", "frame 4"),
    "dtype": ("dtype_mismatch", "'action'"),
    "stats_mismatch": ("stats_mismatch", "mean of 'action'"),
    "video_frames": ("video_frames", "decodes to 23 frame(s)"),
    "video_fps": ("video_fps", "15 fps"),
    "video_corrupt": ("video_corrupt", CAM),
}


@pytest.mark.parametrize("defect", sorted(DEFECTS_V21))
def test_v21_defect_quarantines_one_episode(home: Path, tmp_path: Path, defect: str) -> None:
    root = lerobot_v21(tmp_path / defect, lengths=(30, 24, 20), defects={defect: 1})
    out = cli("ingest", str(root), "--dataset", "d")
    want, where = DEFECTS_V21[defect]
    assert (out["records"], out["quarantined"]) == (2, 1), out
    assert out["quarantined_by_reason"] == {f"episode.{want}": 1}
    (row,) = quarantine("d")
    assert row["source"].endswith("data/chunk-000/episode_000001.parquet") and row["line"] == 1
    assert row["reason"].startswith(f"episode.{want}: data/chunk-000/episode_000001.parquet episode 1")
    assert where in row["reason"]
    assert sorted(r["meta"]["episode"]["episode_index"] for r in records("d")) == [0, 2]


DEFECTS_V30 = {k: v for k, v in DEFECTS_V21.items() if not k.startswith("video_")}
DEFECTS_V30["video_frames"] = ("video_frames", "between 3 s and 5.3 s")


@pytest.mark.parametrize("defect", sorted(DEFECTS_V30))
def test_v30_defect_quarantines_one_episode(home: Path, tmp_path: Path, defect: str) -> None:
    root = lerobot_v30(tmp_path / defect, lengths=(30, 24, 20), defects={defect: 1})
    out = cli("ingest", str(root), "--dataset", "d3")
    want, where = DEFECTS_V30[defect]
    assert (out["records"], out["quarantined"]) == (2, 1), out
    (row,) = quarantine("d3")
    file = "file-001" if defect == "dtype" else "file-000"
    assert row["source"].endswith(f"data/chunk-000/{file}.parquet") and row["line"] == 1
    assert row["reason"].startswith(f"episode.{want}: data/chunk-000/{file}.parquet episode 1")
    assert where in row["reason"]


@pytest.mark.parametrize("make", [lerobot_v21, lerobot_v30])
def test_totals_mismatch_is_reported_and_the_episodes_import(home: Path, tmp_path: Path, make) -> None:
    out = cli("ingest", str(make(tmp_path / "t", defects={"totals": 0})), "--dataset", "tot")
    assert (out["records"], out["quarantined_by_reason"]) == (3, {"episode.totals_mismatch": 1})
    (row,) = quarantine("tot")
    assert row["source"].endswith("meta/info.json") and "total_frames 75, the files hold 74" in row["reason"]


@pytest.mark.parametrize("make", [lerobot_v21, lerobot_v30])
def test_missing_stats_are_recomputed(home: Path, tmp_path: Path, make) -> None:
    out = cli("ingest", str(make(tmp_path / "s", defects={"stats_missing": 2})), "--dataset", "st")
    assert (out["records"], out["quarantined"]) == (3, 0)
    by_ep = {r["meta"]["episode"]["episode_index"]: r["meta"]["episode"] for r in records("st")}
    assert by_ep[2]["stats_recomputed"] == ["observation.state"] and "stats_recomputed" not in by_ep[0]
    state = np.asarray(read_table(next(r["media"] for r in records("st") if r["meta"]["episode"]["episode_index"]
                                       == 2)).column("observation.state").to_pylist())
    assert np.allclose(by_ep[2]["stats"]["observation.state"]["mean"], state.mean(0))


@pytest.mark.parametrize("make", [lerobot_v21, lerobot_v30])
def test_repair_timestamps_is_opt_in_and_in_the_lineage(home: Path, tmp_path: Path, make) -> None:
    root = make(tmp_path / "r", defects={"timestamp_drift": 0})
    out = cli("ingest", str(root), "--dataset", "rep", "--repair-timestamps")
    assert (out["records"], out["quarantined"]) == (3, 0)
    m = manifest("rep")
    assert m["made_by"]["options"]["repair_timestamps"] is True
    assert m["extra"]["repairs"] == {"timestamps": {"episodes": 1, "how": "timestamp = frame_index / fps"}}
    rec = next(r for r in records("rep") if r["meta"]["episode"]["episode_index"] == 0)
    assert rec["meta"]["episode"]["repaired"] == ["timestamps"]
    ts = np.asarray(read_table(rec["media"]).column("timestamp").to_pylist())
    assert np.abs(ts - np.arange(30) / 10).max() <= 1e-6


def test_timestamp_tolerance_is_a_setting(home: Path, tmp_path: Path) -> None:
    root = lerobot_v21(tmp_path / "tol", defects={"timestamp_drift": 0})
    out = cli("ingest", str(root), "--dataset", "tol", "--timestamp-tolerance", "0.02")
    assert (out["records"], out["quarantined"]) == (3, 0)
    assert manifest("tol")["made_by"]["options"]["timestamp_tolerance_s"] == 0.02


def test_hdf5_robomimic_and_aloha(home: Path, tmp_path: Path) -> None:
    f = hdf5_robomimic(tmp_path / "lift.hdf5", lengths=(30, 24))
    out = cli("ingest", str(f), "--dataset", "lift")
    assert (out["records"], out["quarantined"], out["modality"]) == (2, 0, "episode")
    rec = min(records("lift"), key=lambda r: r["meta"]["episode"]["episode_index"])
    ep = rec["meta"]["episode"]
    assert (ep["format"], ep["fps"], ep["fps_source"], ep["robot_type"]) == ("hdf5-robomimic", 20.0,
                                                                            "env_args.control_freq", "Panda")
    assert (ep["action_dim"], ep["length"], rec["text"]) == (6, 30, "Lift")
    cam = ep["cameras"]["obs/agentview_image"]
    assert (cam["width"], cam["height"], cam["frames"], cam["codec"]) == (32, 32, 30, "raw")
    import h5py

    with h5py.File(f) as h:
        pixels = h["data/demo_0/obs/agentview_image"][()]
        assert blob(rec["meta"]["attachments"]["obs/agentview_image"]["media_ref"]) == pixels.tobytes()
        assert np.array_equal(np.asarray(read_table(rec["media"]).column("actions").to_pylist(), np.float32),
                              h["data/demo_0/actions"][()])
    d = hdf5_aloha(tmp_path / "aloha" / "episode_3.hdf5").parent
    out = cli("ingest", str(d), "--dataset", "aloha")
    (rec,) = records("aloha")
    assert (rec["meta"]["episode"]["episode_index"], rec["meta"]["episode"]["action_dim"],
            rec["meta"]["episode"]["fps"]) == (3, 12, 50.0)


@pytest.mark.parametrize(("defect", "want", "where"), [
    ("nan", "non_finite", "frame 3: 'actions' holds inf"),
    ("length", "length_mismatch", "obs/robot0_joint_pos has 23 rows, actions has 24"),
])
def test_hdf5_defect_quarantines_one_demo(home: Path, tmp_path: Path, defect: str, want: str, where: str) -> None:
    f = hdf5_robomimic(tmp_path / "bad.hdf5", lengths=(30, 24, 20), defects={defect: 1})
    out = cli("ingest", str(f), "--dataset", "h")
    rows = [r for r in quarantine("h") if not r["reason"].startswith("episode.totals")]
    assert out["records"] == 2 and len(rows) == 1
    assert rows[0]["line"] == 1 and rows[0]["reason"].startswith(f"episode.{want}: bad.hdf5")
    assert where in rows[0]["reason"]


def test_hdf5_totals(home: Path, tmp_path: Path) -> None:
    out = cli("ingest", str(hdf5_robomimic(tmp_path / "t.hdf5", defects={"totals": 0})), "--dataset", "ht")
    assert (out["records"], out["quarantined_by_reason"]) == (2, {"episode.totals_mismatch": 1})


def test_missing_and_unlisted_files(home: Path, tmp_path: Path) -> None:
    root = lerobot_v21(tmp_path / "m", lengths=(30, 24, 20, 12))
    (root / "data" / "chunk-000" / "episode_000001.parquet").unlink()
    (root / "videos" / "chunk-000" / CAM / "episode_000002.mp4").unlink()
    extra = root / "data" / "chunk-000" / "episode_000009.parquet"
    extra.write_bytes((root / "data" / "chunk-000" / "episode_000000.parquet").read_bytes())
    out = cli("ingest", str(root), "--dataset", "m")
    assert out["records"] == 2
    assert out["quarantined_by_reason"] == {"episode.missing_file": 1, "episode.video_missing": 1,
                                            "episode.unlisted_file": 1, "episode.totals_mismatch": 2}
    by = {r["reason"].split(":", 1)[0]: r for r in quarantine("m")}
    assert by["episode.missing_file"]["line"] == 1 and by["episode.video_missing"]["line"] == 2
    assert by["episode.unlisted_file"]["source"].endswith("episode_000009.parquet")


def test_a_cut_v30_video_keeps_the_episodes_before_the_cut(home: Path, tmp_path: Path) -> None:
    root = lerobot_v30(tmp_path / "cut", lengths=(30, 30, 30, 30), faststart=True)
    video = root / "videos" / CAM / "chunk-000" / "file-000.mp4"
    raw = video.read_bytes()
    from ciyuan.ingest.probe.frames import decode_all

    full = len(decode_all(str(video)).times)
    video.write_bytes(raw[: int(len(raw) * 0.6)])
    got = decode_all(str(video))
    out = cli("ingest", str(root), "--dataset", "cut")
    kept = sorted(r["meta"]["episode"]["episode_index"] for r in records("cut"))
    assert full == 120 and len(got.times) < 120
    assert kept == list(range(len(got.times) // 30)) and kept  # every episode wholly before the cut imports
    assert out["quarantined"] == 4 - len(kept)
    assert set(out["quarantined_by_reason"]) <= {"episode.video_frames", "episode.video_corrupt"}


def test_forced_format_without_info_json_is_refused(home: Path, tmp_path: Path) -> None:
    root = lerobot_v21(tmp_path / "noinfo", lengths=(5,))
    (root / "meta" / "info.json").unlink()
    res = runner.invoke(app, ["ingest", str(root), "--dataset", "x", "--format", "lerobot-v2.1", "--json"])
    assert res.exit_code == 2 and "no readable meta/info.json" in res.stdout


def test_workers_give_the_same_counts(home: Path, tmp_path: Path) -> None:
    root = lerobot_v30(tmp_path / "w", lengths=(30, 24, 20))
    one = cli("ingest", str(root), "--dataset", "w1")
    two = cli("ingest", str(root), "--dataset", "w2", "--workers", "2")
    assert one["tokens"] == two["tokens"] and one["records"] == two["records"] == 3
    raw = cli("tokens", "w1", "--schedule", "episode-raw")
    assert raw["schedule"] == "episode-raw" and raw["tokens"] > one["tokens"]["episode-openvla"]


def test_a_derived_version_keeps_the_camera_blobs(home: Path, tmp_path: Path) -> None:
    from ciyuan.store import resolve
    from ciyuan.store.builder import VersionBuilder

    cli("ingest", str(lerobot_v21(tmp_path / "p", lengths=(12, 10))), "--dataset", "parent")
    src = resolve("parent")
    b = VersionBuilder("child", made_by={"command": "test"}, parent=src.id, tokenizers=["episode-openvla"])
    for rec in src.iter_records():
        b.add(rec)
    b.add({"id": "t", "modality": "text", "text": "x", "meta": {"attachments": "the provider's own field"}})
    child = b.commit()
    assert {x["sha256"] for x in child.manifest["blobs"]} == {x["sha256"] for x in src.manifest["blobs"]}


def test_aloha_jpeg_cameras_are_kept_as_stored(home: Path, tmp_path: Path) -> None:
    f = hdf5_aloha(tmp_path / "z" / "episode_4.hdf5", compress=True)
    out = cli("ingest", str(f), "--dataset", "aloha-jpeg")
    assert (out["records"], out["quarantined"]) == (1, 0)
    (rec,) = records("aloha-jpeg")
    cam = rec["meta"]["episode"]["cameras"]["observations/images/top"]
    assert (cam["width"], cam["height"], cam["frames"], cam["codec"]) == (40, 30, 25, "jpeg-padded")
    import h5py

    with h5py.File(f) as h:
        assert blob(rec["meta"]["attachments"]["observations/images/top"]["media_ref"]) == \
            h["observations/images/top"][()].tobytes()
    assert "compress_len" not in rec["meta"]["episode"]["table"]["columns"]
