"""Training windows of robot episodes through the metered stream, against a real uvicorn server.

A generated LeRobot v3.0 dataset (one data file, one video file shared by the episodes) is ingested
with the CLI and listed; ``TokenStream(windows=...)`` gives one window per frame: state and action
columns at offsets, camera frames decoded with PyAV from the episode's range of the shared video
blob (granted through the entitlement's signed media URLs like a ``media_ref`` blob), and
``_is_pad`` masks at the episode edges. Expected values come from the source files read directly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))

from episode_gen import CAM, lerobot_v30  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from ciyuan.cli.main import app  # noqa: E402
from ciyuan.db import tx  # noqa: E402
from ciyuan.delivery import plan, stream, usage  # noqa: E402
from ciyuan.market import quotes  # noqa: E402
from ciyuan.sdk import ApiError, Client, TokenStream  # noqa: E402

LENGTHS = (12, 10, 8)
FPS = 10.0
WINDOWS = {"observation.state": [-0.1, 0.0], "action": [0.0, 0.1, 0.2], CAM: [-0.1, 0.0]}
SCHEDULE = "episode-raw"


@pytest.fixture
def arm(home, server_factory, tmp_path, h) -> SimpleNamespace:
    root = lerobot_v30(tmp_path / "arm", lengths=LENGTHS, fps=FPS)
    res = CliRunner().invoke(app, ["ingest", str(root), "--dataset", "arm", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["records"] == len(LENGTHS)
    m = h.episode_market("arm", SCHEDULE)
    with av.open(str(root / "videos" / CAM / "chunk-000" / "file-000.mp4")) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    table = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    return SimpleNamespace(key=m.key, buyer=m.buyer, listing=m.listing, frames=frames, table=table,
                           srv=server_factory().start())


def _entitlement(env) -> tuple[str, dict]:
    q = quotes.create_quote(env.buyer, env.listing["id"], None)
    order, _ = usage.place_metered_order(env.buyer, q["id"], "k1")
    return order["entitlement"]["id"], q


def _posted(ent: str) -> tuple[int, str]:
    m = tx.run(lambda s: stream.meter_state(s, plan.plan(ent, None)))
    return m["tokens_posted"], m["amount_posted"]


def _expected(env, ep: int, i: int) -> dict:
    """The window of frame ``i`` of episode ``ep`` from the source files (LeRobot's rule: nearest frame, padded)."""
    start, n = sum(LENGTHS[:ep]), LENGTHS[ep]
    state = np.asarray(env.table.column("observation.state").to_pylist(), np.float32)
    action = np.asarray(env.table.column("action").to_pylist(), np.float32)
    src = {"observation.state": state, "action": action, CAM: env.frames}
    out = {}
    for key, offs in WINDOWS.items():
        idx = [i + round(d * FPS) for d in offs]
        out[key] = src[key][[start + min(max(j, 0), n - 1) for j in idx]]
        out[f"{key}_is_pad"] = np.array([not 0 <= j < n for j in idx])
    return out


def _check(env, item) -> None:
    want = _expected(env, int(item["episode_index"]), int(item["frame_index"]))
    for k, v in want.items():
        got = np.asarray(item[k])
        assert got.shape == v.shape and np.array_equal(got, v), (k, item["episode_index"], item["frame_index"])


def test_windows_decode_state_action_and_camera_with_pads_billed_once(arm) -> None:
    env = arm
    ent, q = _entitlement(env)
    c = Client(env.srv.url, env.key)
    with pytest.raises(ApiError) as e:  # the camera blob is granted only once its episode is billed
        c.attachments(ent, [_camera_ref(env)])
    assert e.value.code == "media_not_billed"
    ds = TokenStream(c, ent, windows=WINDOWS, max_tokens=200)
    items = list(ds)
    assert [(int(x["episode_index"]), int(x["frame_index"])) for x in items] == [
        (ep, i) for ep, n in enumerate(LENGTHS) for i in range(n)]
    for item in items:
        _check(env, item)
    first, last = items[0], items[LENGTHS[0] - 1]
    assert np.asarray(first["observation.state_is_pad"]).tolist() == [True, False]
    assert np.asarray(last["action_is_pad"]).tolist() == [False, True, True]
    assert tuple(np.asarray(first[CAM]).shape) == (2, *env.frames.shape[1:])
    assert _posted(ent) == (q["tokens"], q["amount"])
    assert len(c.attachments(ent, [_camera_ref(env)])[_camera_ref(env)]) > 0  # billed now, and free
    again = list(TokenStream(c, ent, windows=WINDOWS, frame_step=4))  # a replay, sampled: nothing more charged
    assert [(int(x["episode_index"]), int(x["frame_index"])) for x in again] == [
        (ep, i) for ep, n in enumerate(LENGTHS) for i in range(0, n, 4)]
    assert _posted(ent) == (q["tokens"], q["amount"])


def _camera_ref(env) -> str:
    from ciyuan.store import resolve

    rec = next(resolve("arm").iter_records())
    return rec["meta"]["attachments"][CAM]["media_ref"]


def test_windows_in_two_forked_workers_then_resume_exactly_once(arm) -> None:
    env = arm
    ent, q = _entitlement(env)
    c = Client(env.srv.url, env.key)
    c.balance()  # the parent's connection exists before the workers fork
    ds = TokenStream(c, ent, windows=WINDOWS, max_tokens=150, num_workers=2)
    seen: list[tuple[int, int]] = []
    for batch in ds.loader(batch_size=4, multiprocessing_context="fork"):
        seen += list(zip(batch["episode_index"].tolist(), batch["frame_index"].tolist(), strict=True))
        for j in range(len(batch["frame_index"])):
            _check(env, {k: v[j] for k, v in batch.items()})
        if len(seen) >= 12:
            break
    state = json.loads(json.dumps(ds.state_dict()))
    assert state["parts"] == 2 and state["order"]["windows"] == WINDOWS
    resumed = TokenStream(c, ent, windows=WINDOWS, max_tokens=150)
    resumed.load_state_dict(state)
    rest = [(int(x["episode_index"]), int(x["frame_index"])) for x in resumed]
    everything = seen + rest
    assert len(everything) == len(set(everything)) == sum(LENGTHS)
    assert _posted(ent) == (q["tokens"], q["amount"])
    with pytest.raises(ValueError):  # a state saved with other windows does not resume this stream
        TokenStream(c, ent, windows={"action": [0.0]}).load_state_dict(state)
