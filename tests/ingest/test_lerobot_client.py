"""The real client: a LeRobot v3.0 folder that ``ciyuan export`` wrote loads in lerobot's own
``LeRobotDataset`` (lerobot 0.6, in its own Python >= 3.12 virtual environment, offline), with the
frames, episodes, features, tasks and camera frames we exported.

lerobot needs torch (PyPI's CUDA build for Python 3.12: several GB), so the venv is not part of the
test install: ``make lerobot-venv`` builds ``.lerobot-venv`` (docs/ingest.md gives the size and time),
or ``CIYUAN_LEROBOT_PYTHON`` names a Python that has lerobot. Without either the test is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from clihelp import cli
from episode_gen import CAM, SIZE, lerobot_v21, lerobot_v30

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, sys
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root, cam, probe, convert = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "convert"
if convert:  # a v2.1 folder: lerobot 0.6 loads only v3.0, so through lerobot's own converter first
    from lerobot.scripts.convert_dataset_v21_to_v30 import convert_dataset

    convert_dataset("ciyuan/export", root=root, push_to_hub=False)
ds = LeRobotDataset("ciyuan/export", root=root, video_backend="pyav")
first, cut = ds[0], ds[probe]
print(json.dumps({
    "frames": ds.num_frames, "episodes": ds.num_episodes, "fps": ds.fps, "features": sorted(ds.features),
    "camera_shape": list(cut[cam].shape), "task": cut["task"], "episode": int(cut["episode_index"]),
    "frame_index": int(cut["frame_index"]), "state": [round(float(x), 6) for x in cut["observation.state"]],
    "first_task": first["task"], "stats": sorted(ds.meta.stats),
}))
"""


def lerobot_python() -> str | None:
    """A Python with lerobot importable, or None (the skip reason names how to get one)."""
    cand = os.environ.get("CIYUAN_LEROBOT_PYTHON") or str(REPO / ".lerobot-venv" / "bin" / "python")
    if not Path(cand).exists():
        return None
    ok = subprocess.run([cand, "-c", "import lerobot.datasets.lerobot_dataset"], capture_output=True, timeout=300)
    return cand if ok.returncode == 0 else None


@pytest.mark.parametrize(("source", "target"), [("v2.1", "v3.0"), ("v3.0", "v3.0"), ("v3.0", "v2.1")])
def test_export_loads_in_lerobot_dataset(home: Path, tmp_path: Path, source: str, target: str) -> None:
    """v3.0 exports load as they are; a v2.1 export (here cut out of a shared v3.0 video) loads after
    lerobot's own v2.1 -> v3.0 converter, which reads every file of the v2.1 layout."""
    py = lerobot_python()
    if py is None:
        pytest.skip("no Python with lerobot 0.6 (needs Python >= 3.12 and torch, several GB): run "
                    "`make lerobot-venv` or set CIYUAN_LEROBOT_PYTHON")
    make = lerobot_v21 if source == "v2.1" else lerobot_v30
    src = make(tmp_path / "src", lengths=(30, 24, 20))
    cli("ingest", str(src), "--dataset", "eps")
    out = tmp_path / "export"
    cli("export", "eps", "--format", f"lerobot-{target}", "--out", str(out))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_LEROBOT_HOME": str(tmp_path / "hf" / "lerobot")}
    mode = "convert" if target == "v2.1" else "load"
    run = subprocess.run([py, "-c", SCRIPT, str(out), CAM, "31", mode], capture_output=True, text=True, env=env,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert (got["frames"], got["episodes"], got["fps"]) == (74, 3, 10)
    assert {"observation.state", "action", CAM, "timestamp", "frame_index", "episode_index", "index",
            "task_index"} <= set(got["features"])
    assert got["camera_shape"] == [3, SIZE[1], SIZE[0]]  # channels first, as LeRobot gives frames
    assert (got["episode"], got["frame_index"]) == (1, 1)
    assert got["task"] == "push the block to the left" and got["first_task"] == "pick up the red cube"
    from episode_gen import arm

    assert got["state"] == [round(float(x), 6) for x in arm(1, 24, 10.0)[0][1]]
    assert {"observation.state", "action"} <= set(got["stats"])


CENTROIDS = r"""
import json, sys
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root, cam, convert = sys.argv[1], sys.argv[2], sys.argv[3] == "convert"
if convert:
    from lerobot.scripts.convert_dataset_v21_to_v30 import convert_dataset

    convert_dataset("ciyuan/export", root=root, push_to_hub=False)
ds = LeRobotDataset("ciyuan/export", root=root, video_backend="pyav")
rows = []
for i in range(ds.num_frames):  # every frame: lerobot checks each decoded timestamp against the asked one
    item = ds[i]
    ys, xs = (item[cam][0] > 0.5).nonzero(as_tuple=True)
    rows.append([int(item["episode_index"]), int(item["frame_index"]), float(ys.float().mean()),
                 float(xs.float().mean()), [float(x) for x in item["observation.state"][:2]]])
print(json.dumps({"frames": ds.num_frames, "episodes": ds.num_episodes, "rows": rows}))
"""


@pytest.mark.parametrize("target", ["v3.0", "v2.1"])
def test_curated_export_loads_in_lerobot_dataset(home: Path, tmp_path: Path, target: str) -> None:
    """A version curated by ``robot-episodes`` (idle runs cut out of two episodes, a repeated demo and a
    short one dropped) loads in ``LeRobotDataset``, and every camera frame it decodes is the one drawn
    from that row's state: the kept ranges were cut and joined in order, none lost or shifted."""
    import numpy as np
    from episode_gen import draw

    py = lerobot_python()
    if py is None:
        pytest.skip("no Python with lerobot 0.6: run `make lerobot-venv` or set CIYUAN_LEROBOT_PYTHON")
    src = lerobot_v21(tmp_path / "src", lengths=(50, 25, 40, 25, 8), gop=5,
                      defects={"idle": {0: [(0, 15), (25, 35)], 2: [(20, 30)]}, "copy_of": {3: 1}})
    cli("ingest", str(src), "--dataset", "eps")
    cur = cli("curate", "eps", "--recipe", "robot-episodes", "--workers", "1")
    out = tmp_path / "export"
    cli("export", f"eps@{cur['version'][:12]}", "--format", f"lerobot-{target}", "--out", str(out))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_LEROBOT_HOME": str(tmp_path / "hf" / "lerobot")}
    run = subprocess.run([py, "-c", CENTROIDS, str(out), CAM, "convert" if target == "v2.1" else "load"],
                         capture_output=True, text=True, env=env, timeout=1800)
    assert run.returncode == 0, run.stderr[-4000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert (got["frames"], got["episodes"]) == (80, 3)
    assert [(r[0], r[1]) for r in got["rows"]] == [(e, f) for e, n in enumerate((25, 25, 30)) for f in range(n)]
    for ep, fi, y, x, state in got["rows"]:
        img = draw(np.asarray(state + [0.0] * 4, np.float32))
        ys, xs = (img[..., 0] > 128).nonzero()
        assert abs(y - ys.mean()) <= 1.5 and abs(x - xs.mean()) <= 1.5, (ep, fi, y, x, ys.mean(), xs.mean())


ADOPTED = r"""
import json, sys
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root, cam, action = sys.argv[1], sys.argv[2], sys.argv[3]
ds = LeRobotDataset("ciyuan/export", root=root, video_backend="pyav")
shapes = [list(ds[i][cam].shape) for i in range(ds.num_frames)]  # every frame decodes at its timestamp
last = ds[ds.num_frames - 1]
print(json.dumps({"frames": ds.num_frames, "episodes": ds.num_episodes, "fps": ds.fps, "features": sorted(ds.features),
                  "shapes": sorted(set(map(tuple, shapes))), "episode": int(last["episode_index"]),
                  "frame_index": int(last["frame_index"]), "action": [float(x) for x in last[action]],
                  "task": last["task"]}))
"""


@pytest.mark.parametrize("source", ["robomimic", "rlds"])
def test_hdf5_and_rlds_exports_load_in_lerobot_dataset(home: Path, tmp_path: Path, source: str) -> None:
    """Episodes not read from LeRobot (their cameras encoded as H.264 by the export) load in
    ``LeRobotDataset`` too: every frame's camera decodes, the last row's action is the source's."""
    from episode_gen import arm, hdf5_robomimic, rlds

    py = lerobot_python()
    if py is None:
        pytest.skip("no Python with lerobot 0.6: run `make lerobot-venv` or set CIYUAN_LEROBOT_PYTHON")
    if source == "robomimic":
        path, lengths, fps, cam, action = hdf5_robomimic(tmp_path / "d.hdf5", lengths=(20, 16)), (20, 16), 20.0, \
            "obs.agentview_image", "actions"
        size, task = [3, 32, 32], "Lift"
    else:
        path, lengths, fps, cam, action = rlds(tmp_path / "rlds", lengths=(12, 9, 7)), (12, 9, 7), 10.0, \
            "observation.image", "action"
        size, task = [3, SIZE[1], SIZE[0]], "pick up the red cube"
    cli("ingest", str(path), "--dataset", "eps")
    out = tmp_path / "export"
    cli("export", "eps", "--format", "lerobot-v3.0", "--out", str(out))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_LEROBOT_HOME": str(tmp_path / "hf" / "lerobot")}
    run = subprocess.run([py, "-c", ADOPTED, str(out), cam, action], capture_output=True, text=True, env=env,
                         timeout=900)
    assert run.returncode == 0, run.stderr[-4000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert (got["frames"], got["episodes"], got["fps"]) == (sum(lengths), len(lengths), fps)
    assert {cam, action, "index", "task_index", "timestamp", "frame_index", "episode_index"} <= set(got["features"])
    assert got["shapes"] == [size]
    n = lengths[-1]
    assert (got["episode"], got["frame_index"], got["task"]) == (len(lengths) - 1, n - 1, task)
    want = arm(len(lengths) - 1, n, fps)[1][n - 1]
    assert got["action"] == pytest.approx([float(x) for x in want], abs=1e-6)
