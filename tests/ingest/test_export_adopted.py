"""HDF5 demonstrations and RLDS episodes out as LeRobot v3.0 and v2.1 (``ciyuan/store/lerobot_adopt.py``):
the frame table with LeRobot's names (``/`` made ``.``), ``index``/``task_index`` added, our stats,
and each image-array camera encoded once as H.264 (lossy, listed in ``encoded`` and the export's
note). The folder reads back through our own LeRobot reader with nothing quarantined, every number
of the table as in the source file (read with h5py), and every camera frame close to the source
image; a trimmed demo goes out as its kept frames only."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clihelp import cli
from episode_gen import hdf5_aloha, hdf5_robomimic, hold_still, rlds

MAX_MEAN_ERR = 4.0  # mean absolute pixel error of H.264 at its default quality: 2.3-2.9 measured here


def _block(frames: np.ndarray) -> np.ndarray:
    """Where the drawn arm block is in each frame (its bright red pixels' centroid, row and column)."""
    out = []
    for img in frames:
        ys, xs = np.nonzero(img[..., 0] > 128)
        out.append((ys.mean(), xs.mean()))
    return np.asarray(out)


def _close(frames: np.ndarray, src: np.ndarray) -> None:
    """Same count and size, little coding error, and the block where the source has it, frame by frame."""
    assert frames.shape == src.shape
    assert np.abs(frames.astype(int) - src).mean() < MAX_MEAN_ERR
    assert np.abs(_block(frames) - _block(src)).max() <= 1.0


def _decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _v21_files(out: Path, i: int, cam: str) -> tuple[pa.Table, np.ndarray]:
    return (pq.read_table(out / f"data/chunk-000/episode_{i:06d}.parquet"),
            _decoded(out / f"videos/chunk-000/{cam}/episode_{i:06d}.mp4"))


def _v30_files(out: Path, i: int, cam: str) -> tuple[pa.Table, np.ndarray]:
    row = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()[i]
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    table = data.slice(row["dataset_from_index"], row["length"])
    video = out / f"videos/{cam}/chunk-{row[f'videos/{cam}/chunk_index']:03d}/" \
                  f"file-{row[f'videos/{cam}/file_index']:03d}.mp4"
    assert row[f"videos/{cam}/from_timestamp"] == 0.0
    return table, _decoded(video)


def _export_and_read_back(ref: str, fmt: str, out: Path, episodes: int) -> dict:
    res = cli("export", ref, "--format", f"lerobot-{fmt}", "--out", str(out))
    assert res["episodes"] == episodes and len(res["encoded"]) == episodes, res
    assert all(e["codec"] == "h264" and "image array" in e["why"] for e in res["encoded"])
    note = json.loads((out / "meta/ciyuan_export.json").read_text())
    assert len(note["encoded"]) == episodes
    back = cli("ingest", str(out), "--dataset", "back")
    assert (back["records"], back["quarantined"]) == (episodes, 0), back
    assert cli("show", "back", "--quarantine", "--limit", "10")["items"] == []
    return json.loads((out / "meta/info.json").read_text())


@pytest.mark.parametrize("fmt", ["v3.0", "v2.1"])
def test_robomimic_demos_export_and_read_back(home: Path, tmp_path: Path, fmt: str) -> None:
    import h5py

    path = hdf5_robomimic(tmp_path / "demos.hdf5", lengths=(30, 24))
    cli("ingest", str(path), "--dataset", "demos")
    out = tmp_path / "out"
    info = _export_and_read_back("demos", fmt, out, 2)
    cam = "obs.agentview_image"
    assert info["features"][cam]["dtype"] == "video" and info["fps"] == 20.0
    assert {"obs.robot0_joint_pos", "actions", "rewards", "dones", "index", "task_index"} <= set(info["features"])
    files = _v30_files if fmt == "v3.0" else _v21_files
    start = 0
    with h5py.File(path, "r") as f:
        for i in range(2):
            d = f[f"data/demo_{i}"]
            table, frames = files(out, i, cam)
            assert np.array_equal(np.asarray(table.column("actions").to_pylist(), np.float32), d["actions"][()])
            assert np.array_equal(np.asarray(table.column("obs.robot0_joint_pos").to_pylist(), np.float32),
                                  d["obs/robot0_joint_pos"][()])
            assert table.column("index").to_pylist() == list(range(start, start + len(d["actions"])))
            start += len(d["actions"])
            src = d["obs/agentview_image"][()]
            assert frames.shape == src.shape  # one frame per row, the source's size

    _close(frames, src)


@pytest.mark.parametrize("fmt", ["v3.0", "v2.1"])
def test_aloha_jpeg_camera_exports(home: Path, tmp_path: Path, fmt: str) -> None:
    import io

    import h5py
    from PIL import Image

    path = hdf5_aloha(tmp_path / "aloha" / "episode_0.hdf5", n=20, compress=True)
    cli("ingest", str(path.parent), "--dataset", "aloha")
    out = tmp_path / "out"
    _export_and_read_back("aloha", fmt, out, 1)
    table, frames = (_v30_files if fmt == "v3.0" else _v21_files)(out, 0, "observations.images.top")
    with h5py.File(path, "r") as f:
        src = np.stack([np.asarray(Image.open(io.BytesIO(r.tobytes())).convert("RGB"))
                        for r in f["observations/images/top"][()]])
        assert np.array_equal(np.asarray(table.column("observations.qpos").to_pylist(), np.float32),
                              f["observations/qpos"][()])
    _close(frames, src)


@pytest.mark.parametrize("fmt", ["v3.0", "v2.1"])
def test_rlds_episodes_export(home: Path, tmp_path: Path, fmt: str) -> None:
    cli("ingest", str(rlds(tmp_path / "rlds", lengths=(12, 9, 7))), "--dataset", "oxe")
    out = tmp_path / "out"
    info = _export_and_read_back("oxe", fmt, out, 3)
    assert info["total_frames"] == 28 and info["features"]["observation.image"]["dtype"] == "video"
    tasks = (pq.read_table(out / "meta/tasks.parquet").to_pandas().index.tolist() if fmt == "v3.0" else
             [json.loads(line)["task"] for line in (out / "meta/tasks.jsonl").read_text().splitlines()])
    assert tasks == ["pick up the red cube"]
    for i, n in enumerate((12, 9, 7)):
        table, frames = (_v30_files if fmt == "v3.0" else _v21_files)(out, i, "observation.image")
        assert table.num_rows == len(frames) == n


def test_trimmed_demo_exports_its_kept_frames(home: Path, tmp_path: Path) -> None:
    import h5py

    path = hdf5_robomimic(tmp_path / "demos.hdf5", lengths=(30, 12))
    hold_still(path, 0, 25)
    with h5py.File(path, "r") as f:
        src = f["data/demo_0/obs/agentview_image"][()][25:]
    cli("ingest", str(path), "--dataset", "demos")
    cur = cli("curate", "demos", "--steps", "episode_idle_trim", "--workers", "1")
    out = tmp_path / "out"
    _export_and_read_back(f"demos@{cur['version'][:12]}", "v2.1", out, 2)
    table, frames = _v21_files(out, 0, "obs.agentview_image")
    assert table.num_rows == len(frames) == 5 and table.column("frame_index").to_pylist() == list(range(5))
    _close(frames, src)
