"""Robot-episode curation through ``ciyuan curate``: LeRobot v2.1 folders made here (arm kinematics and
H.264 cameras from tests/ingest/episode_gen.py), each with the one feature a step acts on: a copied
episode, a noisy re-timed copy, idle runs, short episodes, success columns, untidy task texts; and a
mixed version whose text and image records every episode step lets by."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))
from clihelp import cli
from episode_gen import CAM, _table_stats, arm, features, write_video  # noqa: E402

from ciyuan.ingest.readers.episode import feature_stats, read_table  # noqa: E402

runner = CliRunner()
FPS = 10.0
STEPS = ["episode_task_text", "episode_idle_trim", "episode_filter", "episode_exact_dedup", "episode_near_dedup",
         "episode_stats"]


def episode(seed: int, n: int, task: str = "pick up the red cube", **extra) -> dict:
    state, action = arm(seed, n, FPS)
    return {"state": state, "action": action, "task": task, **extra}


def write_v21(root: Path, eps: list[dict]) -> Path:
    """A LeRobot v2.1 folder of the given episodes (``state``, ``action``, ``task``; optional
    ``columns`` added to the frame table, ``video_of``: copy that episode's video file)."""
    (root / "meta").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    tasks = list(dict.fromkeys(e["task"] for e in eps))
    start, rows, st_rows = 0, [], []
    for i, e in enumerate(eps):
        n = len(e["state"])
        fi = np.arange(n, dtype=np.int64)
        cols = {
            "observation.state": pa.array([list(map(float, r)) for r in e["state"]], type=pa.list_(pa.float32())),
            "action": pa.array([list(map(float, r)) for r in e["action"]], type=pa.list_(pa.float32())),
            "timestamp": pa.array((fi / FPS).astype(np.float32)), "frame_index": pa.array(fi),
            "episode_index": pa.array(np.full(n, i, np.int64)), "index": pa.array(start + fi),
            "task_index": pa.array(np.full(n, tasks.index(e["task"]), np.int64)),
            **{k: pa.array(v) for k, v in (e.get("columns") or {}).items()},
        }
        table = pa.table(cols)
        pq.write_table(table, root / "data" / "chunk-000" / f"episode_{i:06d}.parquet")
        vpath = root / "videos" / "chunk-000" / CAM / f"episode_{i:06d}.mp4"
        if e.get("video_of") is not None:
            vpath.write_bytes((root / "videos" / "chunk-000" / CAM / f"episode_{e['video_of']:06d}.mp4").read_bytes())
        else:
            write_video(vpath, [e["state"]], FPS)
        rows.append({"episode_index": i, "tasks": [e["task"]], "length": n})
        st_rows.append({"episode_index": i, "stats": _table_stats(table)})
        start += n
    info = {"codebase_version": "v2.1", "robot_type": "synthetic_arm6", "total_episodes": len(eps),
            "total_frames": start, "total_tasks": len(tasks), "total_videos": len(eps), "total_chunks": 1,
            "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{len(eps)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features(FPS, {"video.fps": FPS, "video.codec": "libx264"})}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "meta" / "tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                       for i, t in enumerate(tasks)))
    (root / "meta" / "episodes_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in st_rows))
    return root


def ingest(root: Path, name: str) -> str:
    """Import ``root`` as ``name``; the imported version's ref (curating makes a newer one)."""
    out = cli("ingest", str(root), "--dataset", name)
    assert out["quarantined"] == 0, out
    return f"{name}@{out['version'][:12]}"


def by_episode(ref: str, partition: str = "shards") -> dict[int, dict]:
    from ciyuan.store import resolve

    return {r["meta"]["episode"]["episode_index"]: r for r in resolve(ref).iter_records(partition=partition,
                                                                                      resolve_media=True)}


def curate(name: str, *args: str) -> tuple[dict, str]:
    out = cli("curate", name, *args, "--workers", "1")
    return out, f"{out['dataset']}@{out['version'][:12]}"


def step(out: dict, name: str) -> dict:
    return next(s for s in out["steps"] if s["step"] == name)


def test_exact_duplicate_episode(home: Path, tmp_path: Path) -> None:
    eps = [episode(0, 30), episode(1, 24), episode(2, 20), episode(0, 30, video_of=0)]
    ingest(write_v21(tmp_path / "d", eps), "dup")
    out, ref = curate("dup", "--steps", "episode_exact_dedup")
    s = step(out, "episode_exact_dedup")
    assert (s["seen"], s["rejected_by_rule"]) == (4, {"exact_duplicate": 1})
    kept, gone = by_episode(ref), by_episode(ref, "rejected")
    assert sorted(kept) == [0, 1, 2] and list(gone) == [3]
    assert gone[3]["meta"]["exact_dup_of"] == kept[0]["id"]
    shown = cli("show", ref, "--rejected", "--reason", "episode_exact_dedup")["items"]
    assert len(shown) == 1 and "camera bytes/ranges" in shown[0]["reason"] and kept[0]["id"] in shown[0]["reason"]


def test_same_frames_with_another_video_is_not_an_exact_duplicate(home: Path, tmp_path: Path) -> None:
    other = episode(0, 30)
    eps = [episode(0, 30), episode(1, 24), other]
    root = write_v21(tmp_path / "d", eps)
    # the third episode's camera shows something else: same frame table, other bytes
    write_video(root / "videos" / "chunk-000" / CAM / "episode_000002.mp4", [arm(7, 30, FPS)[0]], FPS)
    ingest(root, "dupv")
    out, _ = curate("dupv", "--steps", "episode_exact_dedup")
    assert step(out, "episode_exact_dedup")["rejected"] == 0


def test_near_duplicate_trajectory(home: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    base = episode(0, 30)
    # a slower, noisy copy: the same path over 36 frames, every value moved by up to 0.004
    s0, a0 = base["state"], base["action"]
    at = np.linspace(0, 29, 36)
    slow = np.stack([np.interp(at, np.arange(30), s0[:, d]) for d in range(6)], 1).astype(np.float32)
    slow += rng.uniform(-0.004, 0.004, slow.shape).astype(np.float32)
    act = np.stack([np.interp(at, np.arange(30), a0[:, d]) for d in range(6)], 1).astype(np.float32)
    eps = [base, episode(1, 24), episode(2, 20), {"state": slow, "action": act, "task": base["task"]},
           episode(3, 30)]
    ingest(write_v21(tmp_path / "n", eps), "near")
    out, ref = curate("near", "--steps", "episode_near_dedup")
    s = step(out, "episode_near_dedup")
    assert s["rejected_by_rule"] == {"near_duplicate": 1}, s
    gone = by_episode(ref, "rejected")
    kept = by_episode(ref)
    assert list(gone) == [3] and sorted(kept) == [0, 1, 2, 4]
    assert gone[3]["meta"]["near_dup_of"] == kept[0]["id"] and gone[3]["meta"]["near_dup_similarity"] >= 0.5
    pair = s["extra"]["near_duplicates"]["pairs"][0]
    assert (pair["removed"], pair["kept"]) == (gone[3]["id"], kept[0]["id"])


def idle_episode() -> dict:
    """40 frames: idle 0-14 (state still, action 0), moving 15-24, idle 25-36, moving 37-39 ... then a
    short idle run (0.5 s) is left alone."""
    state, action = arm(4, 50, FPS)
    state, action = state.copy(), action.copy()
    state[:15] = state[15]
    action[:15] = 0
    state[25:37] = state[24]
    action[25:37] = 0
    state[45:50] = state[44]
    action[45:50] = 0
    return {"state": state, "action": action, "task": "stack the blocks"}


def test_idle_trim_reindexes_and_records_camera_ranges(home: Path, tmp_path: Path) -> None:
    src = ingest(write_v21(tmp_path / "i", [idle_episode(), episode(1, 24)]), "idle")
    out, ref = curate(src, "--steps", "episode_idle_trim")
    s = step(out, "episode_idle_trim")
    assert s["changed"] == 1 and s["counters"]["frames_cut"] == 27 and s["rejected"] == 0
    rec = by_episode(ref)[0]
    ep = rec["meta"]["episode"]
    assert ep["length"] == 23 and ep["trimmed"]["cut"] == [[0, 15], [25, 37]]
    assert ep["trimmed"]["kept"] == [[15, 25], [37, 50]] and ep["trimmed"]["original_length"] == 50
    t = read_table(rec["media"])
    assert t.num_rows == 23
    assert t.column("frame_index").to_pylist() == list(range(23))
    assert np.allclose(t.column("timestamp").to_numpy(), np.arange(23) / FPS)
    assert t.column("index").to_pylist() == list(range(23))  # contiguous from the episode's first index
    states = pq.read_table(tmp_path / "i" / "data" / "chunk-000" / "episode_000000.parquet") \
        .column("observation.state").to_pylist()
    want = [*states[15:25], *states[37:]]
    assert t.column("observation.state").to_pylist() == want
    cam = ep["cameras"][CAM]
    assert cam["frames"] == 23 and cam["whole_file"] is False
    assert cam["segments"] == [[1.5, 2.5], [3.7, 5.0]] and (cam["from_s"], cam["to_s"]) == (1.5, 5.0)
    assert cam["frames_kept"] == [[15, 25], [37, 50]]
    # the video blob is the original file, untouched
    orig = by_episode(src)[0]
    assert rec["meta"]["attachments"] == orig["meta"]["attachments"]
    assert rec["meta"]["curation"]["changed_by"] == ["episode_idle_trim"]
    assert by_episode(ref)[1]["media"] == by_episode(src)[1]["media"]  # nothing idle there: untouched


def test_idle_trim_ends_only(home: Path, tmp_path: Path) -> None:
    ingest(write_v21(tmp_path / "e", [idle_episode()]), "ends")
    _, ref = curate_recipe("ends", tmp_path, [{"episode_idle_trim": {"where": "ends"}}])
    ep = by_episode(ref)[0]["meta"]["episode"]
    assert ep["trimmed"]["cut"] == [[0, 15]] and ep["length"] == 35
    assert ep["cameras"][CAM]["segments"] == [[1.5, 5.0]]


def curate_recipe(name: str, tmp_path: Path, steps: list) -> tuple[dict, str]:
    import yaml

    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "test", "steps": steps}))
    return curate(name, "--recipe", str(path))


def test_stats_recomputed_after_trim(home: Path, tmp_path: Path) -> None:
    ingest(write_v21(tmp_path / "s", [idle_episode(), episode(1, 24)]), "st")
    before = by_episode("st")[0]["meta"]["episode"]["stats"]
    out, ref = curate("st", "--recipe", "robot-episodes")
    for rec in by_episode(ref).values():
        ep = rec["meta"]["episode"]
        assert ep["stats"] == json.loads(json.dumps(feature_stats(read_table(rec["media"]), ep["features"])))
    trimmed = by_episode(ref)[0]["meta"]["episode"]
    assert trimmed["stats"]["action"]["count"] == [23] and trimmed["stats"] != before
    assert trimmed["stats_recomputed_by"] == "curation"
    assert step(out, "episode_stats")["counters"].get("stale_stats_replaced", 0) == 0  # the trim already did


def test_tokens_recounted_through_the_schedule(home: Path, tmp_path: Path) -> None:
    from ciyuan.tokens import get_schedule

    ingest(write_v21(tmp_path / "t", [idle_episode(), episode(1, 24)]), "tok")
    out, ref = curate("tok", "--steps", "episode_idle_trim")
    recs = by_episode(ref)
    sched = get_schedule("episode-openvla")
    for rec in recs.values():
        fresh = {**rec, "tokens": {}}
        assert rec["tokens"]["episode_openvla"] == sched.count_records([fresh])[0]
    assert out["tokens_after"] == sum(r["tokens"]["episode_openvla"] for r in recs.values())
    assert out["tokens_before"] - out["tokens_after"] == step(out, "episode_idle_trim")["tokens_removed"] > 27 * 6


def test_recount_leaves_no_stale_count_beside_the_new_one(home: Path, tmp_path: Path) -> None:
    """A trimmed episode read from a source shard has its count under the column's key
    (``episode_openvla``); the recount must replace it, not add ``episode-openvla`` beside it, and an
    unchanged episode's count is kept under the schedule's name, not counted a second time."""
    from ciyuan.curate.curate import work_dir
    from ciyuan.curate.executor import make_executor, run_recipe
    from ciyuan.curate.recipes import load_recipe, recipe_sha256
    from ciyuan.store import resolve
    from ciyuan.tokens import get_schedule

    src = ingest(write_v21(tmp_path / "r", [idle_episode(), episode(1, 24)]), "rc")
    parent = resolve(src)
    before = {r["meta"]["episode"]["episode_index"]: r["tokens"] for r in parent.iter_records()}
    assert set(before[0]) == {"episode_openvla"}  # how a shard's column reads back
    canon = load_recipe("robot-episodes")
    sha = recipe_sha256(canon)
    with make_executor("local", 1) as ex:
        shards, _ = run_recipe(canon, sha, [parent.path(s["path"]) for s in parent.manifest["shards"]],
                               work_dir(parent.id, sha), ex, parent.tokenizers)
    recs = {r["meta"]["episode"]["episode_index"]: r for sh in shards for r in sh.records()}
    sched = get_schedule("episode-openvla")
    assert recs[0]["meta"]["curation"]["changed_by"] == ["episode_idle_trim"]
    for i, rec in recs.items():
        assert set(rec["tokens"]) == {"episode-openvla"}, (i, rec["tokens"])
        assert rec["tokens"]["episode-openvla"] == sched.count_records([{**rec, "tokens": {}}])[0]
    assert recs[0]["tokens"]["episode-openvla"] < before[0]["episode_openvla"]
    assert recs[1]["tokens"]["episode-openvla"] == before[1]["episode_openvla"]


def test_length_filter(home: Path, tmp_path: Path) -> None:
    ingest(write_v21(tmp_path / "l", [episode(0, 30), episode(1, 8), episode(2, 60)]), "len")
    out, ref = curate_recipe("len", tmp_path, [{"episode_filter": {"min_frames": 10, "max_s": 5.0}}])
    s = step(out, "episode_filter")
    assert s["rejected_by_rule"] == {"too_few_frames": 1, "too_long": 1}
    gone = by_episode(ref, "rejected")
    assert sorted(gone) == [1, 2] and sorted(by_episode(ref)) == [0]
    shown = {it["reason"] for it in cli("show", ref, "--rejected", "--reason", "episode_filter")["items"]}
    assert shown == {"episode_filter: 8 frames < 10", "episode_filter: 6 s (60 frames at 10 fps) > 5 s"}


def test_success_filter(home: Path, tmp_path: Path) -> None:
    ok = np.zeros(20, bool)
    ok[-3:] = True
    eps = [episode(0, 20, columns={"next.success": ok}),
           episode(1, 20, columns={"next.success": np.zeros(20, bool)}),
           episode(2, 20),
           episode(3, 20, columns={"next.reward": np.linspace(0, 1, 20).astype(np.float32)})]
    src = ingest(write_v21(tmp_path / "x", eps), "succ")
    out, ref = curate_recipe(src, tmp_path, [{"episode_filter": {"success": "required"}}])
    assert step(out, "episode_filter")["rejected_by_rule"] == {"not_successful": 1, "no_success_signal": 1}
    kept = by_episode(ref)
    assert sorted(kept) == [0, 3]
    assert kept[0]["meta"]["episode"]["success_source"] == "column 'next.success'"
    assert kept[3]["meta"]["episode"]["success_source"].startswith("column 'next.reward'")
    gone = by_episode(ref, "rejected")
    assert gone[1]["meta"]["episode"]["success"] is False
    _, ref2 = curate_recipe(src, tmp_path, [{"episode_filter": {"success": "required",
                                                                       "unknown_success": "keep"}}])
    assert sorted(by_episode(ref2)) == [0, 2, 3]


def test_task_text_normalised(home: Path, tmp_path: Path) -> None:
    eps = [episode(0, 12, task="  Pick up the  RED cube. "), episode(1, 12, task="pick up the red cube"),
           episode(2, 12, task="ｐｕｓｈ the block!")]
    ingest(write_v21(tmp_path / "k", eps), "task")
    out, ref = curate("task", "--steps", "episode_task_text")
    assert step(out, "episode_task_text")["changed"] == 2
    recs = by_episode(ref)
    assert [recs[i]["text"] for i in range(3)] == ["pick up the red cube", "pick up the red cube", "push the block"]
    assert recs[0]["meta"]["task"] == "pick up the red cube"
    assert recs[0]["meta"]["episode"]["tasks"] == ["pick up the red cube"]
    assert recs[0]["meta"]["curation"]["tasks_before"] == ["  Pick up the  RED cube. "]
    assert "curation" not in recs[1]["meta"]


def test_text_and_media_records_pass_through(home: Path, tmp_path: Path) -> None:
    from ciyuan.curate.report import build_report, render_html
    from ciyuan.store import resolve
    from ciyuan.store.builder import VersionBuilder

    ingest(write_v21(tmp_path / "m", [idle_episode(), episode(1, 24), episode(1, 24, video_of=1)]), "mix0")
    src = resolve("mix0")
    b = VersionBuilder("mix", made_by={"command": "test"}, tokenizers=["episode-openvla"])
    for rec in src.iter_records():
        b.add(rec)
    others = [{"id": f"t{i}", "modality": "text", "text": "  Pick up the cube.  ", "meta": {"k": i}} for i in range(3)]
    others.append({"id": "img", "modality": "image", "media": b"\x89PNG" * 30, "meta": {"width": 28, "height": 28}})
    for r in others:
        b.add(dict(r, meta=dict(r["meta"])))
    b.commit()
    out, ref = curate("mix", "--recipe", "robot-episodes")
    assert [s["step"] for s in out["steps"]] == STEPS
    for s in out["steps"]:
        assert s["not_applicable_by_modality"] == {"image": 1, "text": 3}, s
        assert s["seen"] == s["kept"] + s["rejected"]
    assert step(out, "episode_exact_dedup")["rejected"] == 1
    kept = {r["id"]: r for r in resolve(ref).iter_records()}
    for r in others:
        got = kept[r["id"]]
        assert (got["text"], got.get("media"), got["modality"]) == (r.get("text"), r.get("media"), r["modality"])
        assert "curation" not in got["meta"]
    rep = build_report(ref)
    assert [s["not_applicable"] for s in rep["steps"]] == [4] * len(STEPS)
    assert '<td title="image: 1, text: 3" translate="no">4</td>' in render_html(rep, "en")


def test_recipe_is_listed(home: Path) -> None:
    assert "robot-episodes" in cli("steps")["recipes"]
    listed = {s["name"]: s for s in cli("steps")["steps"]}
    assert all(listed[n]["modalities"] == ["episode"] for n in STEPS)


def test_hdf5_demos_idle_image_cameras_and_rewards(home: Path, tmp_path: Path) -> None:
    import h5py
    from episode_gen import hdf5_robomimic

    f = hdf5_robomimic(tmp_path / "r.hdf5", lengths=(30, 24))
    with h5py.File(f, "r+") as h:
        d0 = h["data/demo_0"]
        for name in ("states", "obs/robot0_joint_pos"):
            x = d0[name][()]
            x[:22] = x[22]
            d0[name][...] = x
        a = d0["actions"][()]
        a[:22] = 0
        d0["actions"][...] = a  # demo 0 waits 1.1 s at 20 fps, and has no reward
        r = h["data/demo_1/rewards"][()]
        r[-1] = 1.0
        h["data/demo_1/rewards"][...] = r
    src = f"mimic@{cli('ingest', str(f), '--dataset', 'mimic')['version'][:12]}"
    out, ref = curate_recipe(src, tmp_path, ["episode_task_text", "episode_idle_trim",
                                             {"episode_filter": {"success": "required"}}])
    assert step(out, "episode_idle_trim")["counters"] == {"episodes_trimmed": 1, "frames_cut": 22}
    assert step(out, "episode_filter")["rejected_by_rule"] == {"not_successful": 1}
    (gone,), (kept,) = by_episode(ref, "rejected").values(), by_episode(ref).values()
    cam = gone["meta"]["episode"]["cameras"]["obs/agentview_image"]
    assert cam["frames_kept"] == [[22, 30]] and cam["frames"] == 8 and "segments" not in cam  # one image a frame
    assert gone["meta"]["episode"]["success_source"] == "column 'rewards' (max 0)"
    assert kept["meta"]["episode"]["success"] is True and kept["text"] == "lift"


def test_idle_trim_in_a_shared_v30_video(home: Path, tmp_path: Path) -> None:
    from episode_gen import lerobot_v30

    root = lerobot_v30(tmp_path / "v3", lengths=(30, 40, 20))
    path = root / "data" / "chunk-000" / "file-000.parquet"
    data = pq.read_table(path)
    state = np.asarray(data.column("observation.state").to_pylist(), np.float32)
    action = np.asarray(data.column("action").to_pylist(), np.float32)
    state[30:42], action[30:42] = state[42], 0  # episode 1 waits 1.2 s before it moves
    for name, arr in (("observation.state", state), ("action", action)):
        i = data.column_names.index(name)
        data = data.set_column(i, data.schema.field(i), pa.array(arr.tolist(), type=pa.list_(pa.float32())))
    pq.write_table(data, path)
    meta_path = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    rows = pq.read_table(meta_path).to_pylist()
    for feat, st in _table_stats(data.slice(30, 40)).items():
        for k, v in st.items():
            if f"stats/{feat}/{k}" in rows[1]:
                rows[1][f"stats/{feat}/{k}"] = v
    pq.write_table(pa.Table.from_pylist(rows), meta_path)
    (root / "meta" / "stats.json").write_text(json.dumps(_table_stats(data)))
    src = ingest(root, "v3idle")
    out, ref = curate(src, "--steps", "episode_idle_trim")
    assert step(out, "episode_idle_trim")["counters"] == {"episodes_trimmed": 1, "frames_cut": 12}
    recs, orig = by_episode(ref), by_episode(src)
    cam = recs[1]["meta"]["episode"]["cameras"][CAM]
    # the episode sits at 3.0-7.0 s of the camera's one file; the wait was its first 1.2 s
    assert cam["segments"] == [[4.2, 7.0]] and (cam["from_s"], cam["to_s"], cam["frames"]) == (4.2, 7.0, 28)
    assert recs[1]["meta"]["attachments"] == orig[1]["meta"]["attachments"] == orig[0]["meta"]["attachments"]
    t = read_table(recs[1]["media"])
    assert t.column("index").to_pylist() == list(range(30, 58)) and t.column("frame_index").to_pylist()[-1] == 27
    assert recs[0]["meta"]["episode"]["cameras"] == orig[0]["meta"]["episode"]["cameras"]


def test_a_second_trim_composes_with_the_first(home: Path, tmp_path: Path) -> None:
    src = ingest(write_v21(tmp_path / "c", [idle_episode()]), "twice")
    _, ref = curate_recipe(src, tmp_path, [{"episode_idle_trim": {"where": "ends"}}, "episode_idle_trim"])
    ep = by_episode(ref)[0]["meta"]["episode"]
    assert ep["trimmed"] == {"original_length": 50, "cut": [[0, 15], [25, 37]], "kept": [[15, 25], [37, 50]],
                             "seconds_cut": 2.7}
    cam = ep["cameras"][CAM]
    assert cam["segments"] == [[1.5, 2.5], [3.7, 5.0]] and cam["frames_kept"] == [[15, 25], [37, 50]]
    assert cam["original_from_s"] == 0.0 and ep["length"] == cam["frames"] == 23
