"""Synthetic robot episodes: a 6-joint arm moving along smooth joint trajectories, its camera drawn
frame by frame and written with PyAV (H.264 or AV1), saved as LeRobot v2.1, LeRobot v3.0 or HDF5.

``defects`` maps a defect name to the episode that gets it (one defect, one episode, so each check
is seen on its own); docs/ingest.md lists the checks they exercise. ``noise_actions`` names several
episodes whose actions are replaced by uniform noise (a valid record, a useless demonstration: the
appraisal's policy values them, docs/appraisal.md).
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

JOINTS = 6
SIZE = (64, 48)
CAM = "observation.images.top"


def arm(episode: int, length: int, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """(state, action), ``length x 6`` float32: joint angles q(t) and the next step's target."""
    rng = np.random.default_rng(episode)
    q0, amp, freq, phase = (rng.uniform(-1, 1, JOINTS), rng.uniform(0.1, 0.6, JOINTS),
                            rng.uniform(0.1, 0.5, JOINTS), rng.uniform(0, math.tau, JOINTS))
    t = np.arange(length + 1)[:, None] / fps
    q = q0 + amp * np.sin(math.tau * freq * t + phase)
    return q[:-1].astype(np.float32), q[1:].astype(np.float32)


def draw(state: np.ndarray, size=SIZE) -> np.ndarray:
    """One camera frame: the planar projection of the arm's first two links as a bright block."""
    w, h = size
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 2] = 40
    x = w / 2 + (w / 4) * (math.cos(state[0]) + 0.5 * math.cos(state[0] + state[1]))
    y = h / 2 + (h / 4) * (math.sin(state[0]) + 0.5 * math.sin(state[0] + state[1]))
    xi, yi = int(np.clip(x, 4, w - 5)), int(np.clip(y, 4, h - 5))
    img[yi - 4:yi + 4, xi - 4:xi + 4] = (230, 200, 40)
    return img


def write_video(path: Path, states: list[np.ndarray], fps: float, codec: str = "libx264", size=SIZE,
                faststart: bool = False, gop: int | None = None) -> None:
    """The frames of ``states`` (episodes one after the other) as one video file (``faststart``: the
    index before the frames, so a file cut short still opens; ``gop``: a keyframe every so many frames)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"} if faststart else {}) as c:
        opts = {"bf": "0"} if codec == "libx264" else {}
        if gop:
            opts.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
        vs = c.add_stream(codec, rate=int(fps), options=opts)
        vs.width, vs.height, vs.pix_fmt = size[0], size[1], "yuv420p"
        i = 0
        for st in states:
            for row in st:
                frame = av.VideoFrame.from_ndarray(draw(row, size), format="rgb24")
                frame.pts = i
                i += 1
                c.mux(vs.encode(frame))
        c.mux(vs.encode())


def stats(arr: np.ndarray) -> dict:
    a = arr.astype(np.float64).reshape(len(arr), -1)
    return {"min": a.min(0).tolist(), "max": a.max(0).tolist(), "mean": a.mean(0).tolist(),
            "std": a.std(0).tolist(), "count": [len(arr)]}


def episode_table(ep: int, length: int, fps: float, start: int, defects: dict) -> tuple[pa.Table, np.ndarray]:
    state, action = arm((defects.get("copy_of") or {}).get(ep, ep), length, fps)  # copy_of: a repeated demo
    for a, b in (defects.get("idle") or {}).get(ep, ()):  # the arm holds still, commanded 0: an idle run
        state, action = state.copy(), action.copy()
        state[a:b] = state[a - 1] if a else state[b]
        action[a:b] = 0
    fi = np.arange(length, dtype=np.int64)
    ts = (fi / fps).astype(np.float32)
    idx = start + fi
    if defects.get("frame_gap") == ep:
        fi = fi.copy()
        fi[5:] += 1
    if defects.get("index_gap") == ep:
        idx = idx.copy()
        idx[7] += 3
    if defects.get("timestamp_drift") == ep:
        ts = ts.copy()
        ts[4:] += np.float32(0.01)
    if defects.get("nan") == ep:
        action = action.copy()
        action[3, 2] = np.nan
    if ep in defects.get("noise_actions", ()):  # a demonstration whose actions ignore its states
        action = np.random.default_rng(1000 + ep).uniform(-1.5, 1.5, action.shape).astype(np.float32)
    act_type = pa.list_(pa.float64()) if defects.get("dtype") == ep else pa.list_(pa.float32())
    states = [list(map(float, r)) for r in state]
    if defects.get("shape") == ep:
        states[4] = states[4][:5]
    table = pa.table({
        "observation.state": pa.array(states, type=pa.list_(pa.float32())),
        "action": pa.array([list(map(float, r)) for r in action], type=act_type),
        "timestamp": pa.array(ts, type=pa.float32()),
        "frame_index": pa.array(fi), "episode_index": pa.array(np.full(length, ep, np.int64)),
        "index": pa.array(idx), "task_index": pa.array(np.full(length, ep % 2, np.int64)),
    })
    return table, state


def features(fps: float, video: dict, size=SIZE) -> dict:
    return {
        "observation.state": {"dtype": "float32", "shape": [JOINTS], "names": [f"j{i}" for i in range(JOINTS)]},
        "action": {"dtype": "float32", "shape": [JOINTS], "names": [f"j{i}" for i in range(JOINTS)]},
        CAM: {"dtype": "video", "shape": [size[1], size[0], 3], "names": ["height", "width", "channels"],
              "info": video},
        "timestamp": {"dtype": "float32", "shape": [1]}, "frame_index": {"dtype": "int64", "shape": [1]},
        "episode_index": {"dtype": "int64", "shape": [1]}, "index": {"dtype": "int64", "shape": [1]},
        "task_index": {"dtype": "int64", "shape": [1]},
    }


TASKS = ["pick up the red cube", "push the block to the left"]


def _table_stats(table: pa.Table) -> dict:
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        arr = np.asarray(col.to_pylist(), dtype=object)
        with contextlib.suppress(ValueError):  # a ragged column (the shape defect): no stats for it
            out[name] = stats(np.array([np.asarray(v, dtype=np.float64).reshape(-1) for v in arr]))
    return out


def lerobot_v21(root: Path, lengths=(30, 24, 20), fps: float = 10.0, defects: dict | None = None,
                codec: str = "libx264", success: tuple | None = None, gop: int | None = None) -> Path:
    """A LeRobot v2.1 folder; ``defects`` name the episode that gets each defect (``idle``: episode ->
    frame ranges where the arm stands still, no defect but what curation trims); ``success`` (one
    bool or None per episode) goes into the episode rows."""
    d = defects or {}
    (root / "meta").mkdir(parents=True, exist_ok=True)
    start, eps, st_rows = 0, [], []
    for ep, n in enumerate(lengths):
        table, state = episode_table(ep, n, fps, start, d)
        pq.write_table(table, root / "data" / "chunk-000" / f"episode_{ep:06d}.parquet") if (
            root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True) is None else None
        vfps = 15 if d.get("video_fps") == ep else fps
        vstate = state[:-1] if d.get("video_frames") == ep else state
        vpath = root / "videos" / "chunk-000" / CAM / f"episode_{ep:06d}.mp4"
        write_video(vpath, [vstate], vfps, codec, gop=gop)
        if d.get("video_corrupt") == ep:
            raw = vpath.read_bytes()
            vpath.write_bytes(raw[:32] + bytes(len(raw) - 32))
        eps.append({"episode_index": ep, "tasks": [TASKS[ep % 2]], "length": n,
                    **({"success": success[ep]} if success and success[ep] is not None else {})})
        s = _table_stats(table)
        if d.get("stats_mismatch") == ep:
            s["action"]["mean"] = [x + 0.5 for x in s["action"]["mean"]]
        if d.get("stats_missing") == ep:
            s.pop("observation.state")
        st_rows.append({"episode_index": ep, "stats": s})
        start += n
    total = sum(lengths) + (1 if d.get("totals") is not None else 0)
    info = {"codebase_version": "v2.1", "robot_type": "synthetic_arm6", "total_episodes": len(lengths),
            "total_frames": total, "total_tasks": 2, "total_videos": len(lengths), "total_chunks": 1,
            "chunks_size": 1000, "fps": fps, "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": features(fps, {"video.fps": fps, "video.codec": codec})}
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=1))
    (root / "meta" / "episodes.jsonl").write_text("".join(json.dumps(e) + "\n" for e in eps))
    (root / "meta" / "tasks.jsonl").write_text("".join(json.dumps({"task_index": i, "task": t}) + "\n"
                                                       for i, t in enumerate(TASKS)))
    (root / "meta" / "episodes_stats.jsonl").write_text("".join(json.dumps(r) + "\n" for r in st_rows))
    return root


def lerobot_v30(root: Path, lengths=(30, 24, 20), fps: float = 10.0, defects: dict | None = None,
                codec: str = "libx264", size=SIZE, faststart: bool = False, gop: int | None = None) -> Path:
    """A LeRobot v3.0 folder: every episode in one data file and one video file per camera."""
    d = defects or {}
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True, exist_ok=True)
    (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
    start, tables, states, rows = 0, [], [], []
    for ep, n in enumerate(lengths):
        table, state = episode_table(ep, n, fps, start, d)
        tables.append(table)
        states.append(state)
        s = _table_stats(table)
        if d.get("stats_mismatch") == ep:
            s["action"]["mean"] = [x + 0.5 for x in s["action"]["mean"]]
        if d.get("stats_missing") == ep:
            s.pop("observation.state")
        t0 = start / fps
        t1 = (start + n - (1 if d.get("video_frames") == ep else 0)) / fps
        row = {"episode_index": ep, "tasks": [TASKS[ep % 2]], "length": n, "data/chunk_index": 0,
               "data/file_index": 0, "dataset_from_index": start, "dataset_to_index": start + n,
               f"videos/{CAM}/chunk_index": 0, f"videos/{CAM}/file_index": 0,
               f"videos/{CAM}/from_timestamp": t0, f"videos/{CAM}/to_timestamp": t1,
               "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
        for feat in ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index",
                     "task_index"):
            for k, v in s.get(feat, {}).items():
                row[f"stats/{feat}/{k}"] = v
        rows.append(row)
        start += n
    # a data file has one schema: the episode with the dtype defect sits in a second file of its own
    odd = d.get("dtype")
    for row in rows:
        row["data/file_index"] = 1 if row["episode_index"] == odd else 0
    data = pa.concat_tables([t for ep, t in enumerate(tables) if ep != odd], promote_options="permissive")
    pq.write_table(data, root / "data" / "chunk-000" / "file-000.parquet")
    if odd is not None:
        pq.write_table(tables[odd], root / "data" / "chunk-000" / "file-001.parquet")
    write_video(root / "videos" / CAM / "chunk-000" / "file-000.mp4", states, fps, codec, size, faststart, gop)
    cols = sorted({k for r in rows for k in r})
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in cols} for r in rows]),
                   root / "meta" / "episodes" / "chunk-000" / "file-000.parquet")
    pq.write_table(pa.table({"task_index": [0, 1], "__index_level_0__": TASKS}), root / "meta" / "tasks.parquet")
    total = sum(lengths) + (1 if d.get("totals") is not None else 0)
    info = {"codebase_version": "v3.0", "robot_type": "synthetic_arm6", "total_episodes": len(lengths),
            "total_frames": total, "total_tasks": 2, "chunks_size": 1000, "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500, "fps": fps, "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
            "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
            "features": features(fps, {"video.fps": fps, "video.codec": codec}, size)}
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=1))
    (root / "meta" / "stats.json").write_text(json.dumps(_table_stats(data)))
    return root


def hdf5_robomimic(path: Path, lengths=(30, 24), defects: dict | None = None, image: bool = True) -> Path:
    """A robomimic-style file: data/demo_N with actions, rewards, dones, obs/ (and an 84x84 camera)."""
    import h5py

    d = defects or {}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        g = f.create_group("data")
        g.attrs["env_args"] = json.dumps({"env_name": "Lift", "env_kwargs": {"control_freq": 20,
                                                                             "robots": ["Panda"]}})
        for ep, n in enumerate(lengths):
            state, action = arm(ep, n, 20.0)
            if d.get("nan") == ep:
                action[3, 1] = np.inf
            demo = g.create_group(f"demo_{ep}")
            demo.attrs["num_samples"] = n
            demo.create_dataset("actions", data=action)
            demo.create_dataset("rewards", data=np.zeros(n, np.float32))
            demo.create_dataset("dones", data=(np.arange(n) == n - 1).astype(np.int64))
            demo.create_dataset("states", data=np.concatenate([state, state], axis=1))
            demo.create_dataset("obs/robot0_joint_pos", data=state if d.get("length") != ep else state[:-1])
            if image:
                demo.create_dataset("obs/agentview_image",
                                    data=np.stack([draw(r, (32, 32)) for r in state]), compression="gzip")
        g.attrs["total"] = sum(lengths) + (5 if d.get("totals") is not None else 0)
    return path


def hold_still(path: Path, demo: int, upto: int) -> None:
    """Demo ``demo`` of a robomimic file holds still, commanded 0, for its first ``upto`` frames (the
    state and the camera those of frame ``upto``): an idle run for curation to trim."""
    import h5py

    with h5py.File(path, "r+") as f:
        d = f[f"data/demo_{demo}"]
        for key in ("obs/robot0_joint_pos", "states", "obs/agentview_image", "actions"):
            arr = d[key][()]
            arr[:upto] = 0 if key == "actions" else arr[upto]
            d[key][...] = arr


def hdf5_aloha(path: Path, n: int = 25, compress: bool = False) -> Path:
    """An ALOHA-style episode file: action, observations/qpos, qvel and images/top (``compress``: one
    JPEG a frame, zero-padded, with ``compress_len``, as ALOHA's recorder writes them)."""
    import io

    import h5py
    from PIL import Image

    state, action = arm(7, n, 50.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [draw(r, (40, 30)) for r in state]
    with h5py.File(path, "w") as f:
        f.attrs["sim"] = True
        f.create_dataset("action", data=np.concatenate([action, action], axis=1))
        f.create_dataset("observations/qpos", data=np.concatenate([state, state], axis=1))
        f.create_dataset("observations/qvel", data=np.zeros((n, 12), np.float32))
        if compress:
            f.attrs["compress"] = True
            jpegs = []
            for fr in frames:
                buf = io.BytesIO()
                Image.fromarray(fr).save(buf, format="JPEG", quality=90)
                jpegs.append(buf.getvalue())
            pad = max(map(len, jpegs))
            arr = np.zeros((n, pad), np.uint8)
            for i, j in enumerate(jpegs):
                arr[i, :len(j)] = np.frombuffer(j, np.uint8)
            f.create_dataset("observations/images/top", data=arr)
            f.create_dataset("compress_len", data=np.array([[len(j) for j in jpegs]], np.float32))
        else:
            f.create_dataset("observations/images/top", data=np.stack(frames))
    return path


# RLDS / TFDS: a TFRecord writer (framing + masked crc32c) and the tf.train.Example wire format, made here


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _ld(num: int, payload: bytes) -> bytes:
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _feature(values) -> bytes:
    import struct

    if values and isinstance(values[0], bytes):
        return _ld(1, b"".join(_ld(1, v) for v in values))
    if values and isinstance(values[0], float):
        return _ld(2, _ld(1, struct.pack(f"<{len(values)}f", *values)))
    return _ld(3, _ld(1, b"".join(_varint(int(v)) for v in values)))


def example(feats: dict) -> bytes:
    """A serialized tf.train.Example of ``{key: list of bytes | float | int}``."""
    entries = b"".join(_ld(1, _ld(1, k.encode()) + _ld(2, _feature(v))) for k, v in feats.items())
    return _ld(1, entries)


def tfrecord(path: Path, payloads: list[bytes], corrupt: int | None = None) -> Path:
    import struct

    from ciyuan.ingest.readers.tfrecord import masked_crc

    with open(path, "wb") as f:
        for i, data in enumerate(payloads):
            head = struct.pack("<Q", len(data))
            crc = masked_crc(data) ^ (1 if i == corrupt else 0)
            f.write(head + struct.pack("<I", masked_crc(head)) + data + struct.pack("<I", crc))
    return path


def _tensor(shape, dtype="float32") -> dict:
    return {"pythonClassName": "tensorflow_datasets.core.features.tensor_feature.Tensor",
            "tensor": {"shape": {"dimensions": [str(x) for x in shape]}, "dtype": dtype, "encoding": "none"}}


def rlds_features(size=SIZE) -> dict:
    step = {"action": _tensor([6]), "is_first": _tensor([], "bool"), "is_last": _tensor([], "bool"),
            "is_terminal": _tensor([], "bool"), "reward": _tensor([]),
            "language_instruction": {"pythonClassName": "tensorflow_datasets.core.features.text_feature.Text",
                                     "text": {}},
            "observation": {"featuresDict": {"features": {
                "state": _tensor([6]),
                "image": {"pythonClassName": "tensorflow_datasets.core.features.image_feature.Image",
                          "image": {"shape": {"dimensions": [str(size[1]), str(size[0]), "3"]}, "dtype": "uint8",
                                    "encodingFormat": "jpeg"}}}}}}
    return {"pythonClassName": "tensorflow_datasets.core.features.features_dict.FeaturesDict",
            "featuresDict": {"features": {
                "steps": {"pythonClassName": "tensorflow_datasets.core.features.dataset_feature.Dataset",
                          "sequence": {"feature": {"featuresDict": {"features": step}}, "length": "-1"}},
                "episode_metadata": {"featuresDict": {"features": {
                    "file_path": {"text": {}}}}}}}}


def rlds_episode(ep: int, length: int, fps: float = 10.0) -> bytes:
    import io

    from PIL import Image

    state, action = arm(ep, length, fps)
    jpegs = []
    for s in state:
        buf = io.BytesIO()
        Image.fromarray(draw(s)).save(buf, format="JPEG")
        jpegs.append(buf.getvalue())
    return example({
        "steps/action": [float(x) for x in action.reshape(-1)],
        "steps/observation/state": [float(x) for x in state.reshape(-1)],
        "steps/observation/image": jpegs,
        "steps/is_first": [int(i == 0) for i in range(length)],
        "steps/is_last": [int(i == length - 1) for i in range(length)],
        "steps/is_terminal": [int(i == length - 1) for i in range(length)],
        "steps/reward": [float(i == length - 1) for i in range(length)],
        "steps/language_instruction": [b"pick up the red cube"] * length,
        "episode_metadata/file_path": [f"/raw/ep{ep}.npy".encode()],
    })


def rlds(root: Path, lengths=(12, 9, 7), corrupt: int | None = None, features_json: bool = True) -> Path:
    """``root/1.0.0/`` with features.json, dataset_info.json and two shards (the last episode in the second)."""
    v = root / "1.0.0"
    v.mkdir(parents=True, exist_ok=True)
    eps = [rlds_episode(i, n) for i, n in enumerate(lengths)]
    tfrecord(v / "toy-train.tfrecord-00000-of-00002", eps[:-1], corrupt)
    tfrecord(v / "toy-train.tfrecord-00001-of-00002", eps[-1:])
    if features_json:
        (v / "features.json").write_text(json.dumps(rlds_features()))
    (v / "dataset_info.json").write_text(json.dumps({"name": "toy", "version": "1.0.0",
                                                     "splits": [{"name": "train", "shardLengths": ["2", "1"]}]}))
    return root
