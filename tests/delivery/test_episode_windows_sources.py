"""Training windows from every kind of episode source, through a real uvicorn server: LeRobot v2.1
(one MP4 per episode), robomimic HDF5 (a raw image-array camera), ALOHA HDF5 (zero-padded JPEG rows)
and RLDS (TFRecord JPEG images), each ingested with the CLI, listed and streamed with
``TokenStream(windows=...)``; and two curated versions whose idle runs were trimmed (a v2.1 video cut
into two segments, an HDF5 image array by frame ranges). Every observation offset, action chunk and
pad mask is checked against the source arrays (read with pyarrow, h5py, PyAV and PIL, never through
our readers), and the entitlement is billed exactly its quote, once, a replay charging nothing.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))

from episode_gen import CAM, arm, draw, hdf5_aloha, hdf5_robomimic, hold_still, lerobot_v21, rlds  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ciyuan.cli.main import app  # noqa: E402
from ciyuan.db import tx  # noqa: E402
from ciyuan.delivery import plan, stream, usage  # noqa: E402
from ciyuan.market import quotes  # noqa: E402
from ciyuan.sdk import Client, TokenStream  # noqa: E402

SCHEDULE = "episode-raw"
IDLE = {0: [(0, 12), (20, 32)]}  # v2.1 episode 0 (40 frames): kept 12-20 and 32-40, two segments


def _frames(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def _jpegs(rows: np.ndarray) -> np.ndarray:
    from PIL import Image

    return np.stack([np.asarray(Image.open(io.BytesIO(r.tobytes())).convert("RGB")) for r in rows])


def v21(tmp: Path, trimmed: bool) -> tuple[Path, dict, dict[int, dict]]:
    lengths = (40, 14) if trimmed else (14, 10, 8)
    root = lerobot_v21(tmp / "v21", lengths=lengths, defects={"idle": IDLE} if trimmed else None, gop=2)
    src = {}
    for ep in range(len(lengths)):
        t = pq.read_table(root / f"data/chunk-000/episode_{ep:06d}.parquet")
        src[ep] = {"observation.state": np.asarray(t.column("observation.state").to_pylist(), np.float32),
                   "action": np.asarray(t.column("action").to_pylist(), np.float32),
                   CAM: _frames(root / f"videos/chunk-000/{CAM}/episode_{ep:06d}.mp4")}
    return root, {"observation.state": [-0.1, 0.0], "action": [0.0, 0.1, 0.2], CAM: [-0.1, 0.0]}, src


def robomimic(tmp: Path, trimmed: bool) -> tuple[Path, dict, dict[int, dict]]:
    import h5py

    path = hdf5_robomimic(tmp / "demos.hdf5", lengths=(30, 12) if trimmed else (14, 10))
    if trimmed:  # demo 0 holds still (and is commanded 0) for frames 0-24: kept 25-30 at 20 Hz
        hold_still(path, 0, 25)
    src = {}
    with h5py.File(path, "r") as f:
        for name, d in f["data"].items():
            src[int(name.split("_")[1])] = {key: d[key][()] for key in
                                            ("obs/robot0_joint_pos", "actions", "obs/agentview_image")}
    return path, {"obs/robot0_joint_pos": [-0.05, 0.0], "actions": [0.0, 0.05, 0.1],
                  "obs/agentview_image": [0.0, 0.05]}, src


def aloha(tmp: Path, trimmed: bool) -> tuple[Path, dict, dict[int, dict]]:
    import h5py

    path = hdf5_aloha(tmp / "aloha" / "episode_0.hdf5", n=20, compress=True)
    with h5py.File(path, "r") as f:
        src = {0: {"observations/qpos": f["observations/qpos"][()], "action": f["action"][()],
                   "observations/images/top": _jpegs(f["observations/images/top"][()])}}
    return path.parent, {"observations/qpos": [-0.02, 0.0], "action": [0.0, 0.02, 0.04],
                         "observations/images/top": [0.0]}, src


def rlds_src(tmp: Path, trimmed: bool) -> tuple[Path, dict, dict[int, dict]]:
    from PIL import Image

    lengths = (12, 9, 7)
    root = rlds(tmp / "rlds", lengths=lengths)
    src = {}
    for ep, n in enumerate(lengths):  # the generator's own arrays and JPEGs: what the shards hold
        state, action = arm(ep, n, 10.0)
        imgs = []
        for s in state:
            buf = io.BytesIO()
            Image.fromarray(draw(s)).save(buf, format="JPEG")
            imgs.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
        src[ep] = {"observation.state": state, "action": action, "observation.image": np.stack(imgs)}
    return root, {"observation.state": [-0.1, 0.0], "action": [0.0, 0.1, 0.2], "observation.image": [-0.1, 0.0]}, src


SOURCES = {"v2.1": v21, "robomimic": robomimic, "aloha": aloha, "rlds": rlds_src}


def _market(h, srv_factory, ref: str) -> SimpleNamespace:
    m = h.episode_market(ref, SCHEDULE)
    q = quotes.create_quote(m.buyer, m.listing["id"], None)
    order, _ = usage.place_metered_order(m.buyer, q["id"], "k1")
    return SimpleNamespace(client=Client(srv_factory().start().url, m.key), ent=order["entitlement"]["id"], quote=q)


def _posted(ent: str) -> tuple[int, str]:
    m = tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))
    return m["tokens_posted"], m["amount_posted"]


def _check(item: dict, windows: dict, src: dict, fps: float) -> None:
    """The window of ``item``'s frame, from the source arrays: nearest frame inside the episode, padded."""
    n = len(next(iter(src.values())))
    i = int(item["frame_index"])
    for key, offs in windows.items():
        idx = [i + round(d * fps) for d in offs]
        want = src[key][[min(max(j, 0), n - 1) for j in idx]]
        got = np.asarray(item[key])
        assert got.shape == want.shape and np.array_equal(got, want), (key, item["episode_index"], i)
        assert np.asarray(item[f"{key}_is_pad"]).tolist() == [not 0 <= j < n for j in idx], (key, i)


def _stream_and_check(env, windows: dict, src: dict[int, dict], fps: float) -> None:
    items = list(TokenStream(env.client, env.ent, windows=windows, max_tokens=300))
    got = [(int(x["episode_index"]), int(x["frame_index"])) for x in items]
    assert sorted(got) == [(ep, i) for ep in sorted(src) for i in range(len(next(iter(src[ep].values()))))]
    for item in items:
        _check(item, windows, src[int(item["episode_index"])], fps)
    assert _posted(env.ent) == (env.quote["tokens"], env.quote["amount"])  # billed once, all of it
    again = list(TokenStream(env.client, env.ent, windows=windows, frame_step=3))  # a replay: free
    assert len(again) == sum(-(-len(next(iter(s.values()))) // 3) for s in src.values())
    assert _posted(env.ent) == (env.quote["tokens"], env.quote["amount"])


def _ingest(path: Path, name: str) -> dict:
    res = CliRunner().invoke(app, ["ingest", str(path), "--dataset", name, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["quarantined"] == 0, out
    return out


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_windows_from_each_source(home, server_factory, tmp_path, h, source: str) -> None:
    path, windows, src = SOURCES[source](tmp_path, False)
    _ingest(path, "eps")
    from ciyuan.store import resolve

    fps = float(next(resolve("eps").iter_records())["meta"]["episode"]["fps"])
    _stream_and_check(_market(h, server_factory, "eps"), windows, src, fps)


@pytest.mark.parametrize("source", ["v2.1", "robomimic"])
def test_windows_of_trimmed_episodes_are_the_kept_frames(home, server_factory, tmp_path, h,
                                                         source: str) -> None:
    """The blob is the original file; the windows see only the frames the trim kept, re-indexed."""
    from ciyuan.store import resolve

    path, windows, src = SOURCES[source](tmp_path, True)
    _ingest(path, "eps")
    res = CliRunner().invoke(app, ["curate", "eps", "--steps", "episode_idle_trim", "--workers", "1", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    ref = f"eps@{out['version'][:12]}"
    recs = {r["meta"]["episode"]["episode_index"]: r for r in resolve(ref).iter_records()}
    trimmed = {ep: r["meta"]["episode"]["trimmed"]["kept"] for ep, r in recs.items()
               if r["meta"]["episode"].get("trimmed")}
    assert list(trimmed) == [0] and (len(trimmed[0]) == 2 if source == "v2.1" else trimmed[0] == [[25, 30]]), trimmed
    rows = [i for a, b in trimmed[0] for i in range(a, b)]
    src[0] = {k: v[rows] for k, v in src[0].items()}
    _stream_and_check(_market(h, server_factory, ref), windows, src, float(recs[0]["meta"]["episode"]["fps"]))
