"""LeRobot dataset folders, v2.1 (one Parquet file and one MP4 per camera per episode) and v3.0 (many
episodes per Parquet and per MP4 file), read with pyarrow and PyAV alone: no lerobot, no torch.

Each episode is one record (``ciyuan.ingest.readers.episode``). The meta files say where an
episode's rows and frames are; the checks then compare them with what the files hold. A v3.0 video
file that holds many episodes is stored once, whole, as one blob; each episode's record refers to it
with the episode's ``from_s``/``to_s`` range (cutting it would mean re-encoding wherever an episode
does not start on a keyframe). Problems with the dataset as a whole (``info.json`` totals that the
files contradict, data files no episode lists) are quarantine rows of their own; the good episodes
still import.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ciyuan.errors import InvalidInput
from ciyuan.ingest.readers import Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import Meter
from ciyuan.ingest.readers.episode import Camera, EpisodeInput, code, episode_item


def _info(root: str) -> dict | None:
    try:
        with open(os.path.join(root, "meta", "info.json"), encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _jsonl(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    out = []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except ValueError as exc:
                    raise InvalidInput(f"{path} line {n}: not JSON: {exc}", hint="fix the meta file") from exc
    return out


class Videos:
    """Decoded videos of one read, each file decoded once (a v3.0 file serves many episodes); the
    last file only is kept, since episodes come in file order."""

    def __init__(self, meter: Meter):
        self.meter = meter
        self._last: tuple[str, object] | None = None
        self._seen: set[str] = set()

    def __call__(self, path: str):
        from ciyuan.ingest.probe.frames import decode_all

        if self._last is not None and self._last[0] == path:
            return self._last[1]
        got = decode_all(path)
        if path not in self._seen:
            self._seen.add(path)
            self.meter(os.path.getsize(path))
        self._last = (path, got)
        return got


def _rel(root: str, path: str) -> str:
    return os.path.relpath(path, root).replace(os.sep, "/")


def _features(info: dict) -> tuple[dict, list[str]]:
    feats = info.get("features") or {}
    if not isinstance(feats, dict):
        feats = {}
    videos = [k for k, v in feats.items() if isinstance(v, dict) and v.get("dtype") == "video"]
    return feats, videos


def _totals(root: str, info: dict, episodes: int, frames: int, videos: int) -> Iterator[Bad]:
    """``info.json`` totals against what the files hold."""
    where = os.path.join(root, "meta", "info.json")
    for key, found in (("total_episodes", episodes), ("total_frames", frames), ("total_videos", videos)):
        said = info.get(key)
        if isinstance(said, int) and said != found:
            yield Bad(where, 0, code("totals_mismatch", f"meta/info.json says {key} {said}, the files hold {found}"),
                      b"")


_COUNTS = ("total_episodes", "total_frames", "total_tasks", "total_videos", "total_chunks", "splits")
_LOCATION = ("episode_index", "tasks", "length", "dataset_from_index", "dataset_to_index")


def _declared(info: dict, row: dict, stats: dict | None, tasks: dict, table: pa.Table) -> dict:
    """The source's own meta of one episode, kept verbatim so an export gives it back (docs/ingest.md
    "Export"): ``info.json`` less what depends on the set of episodes, the episode row less where its
    rows and frames are, its declared stats, and the names of the task indexes its rows use."""
    used = [] if "task_index" not in table.column_names else \
        sorted({int(x) for x in table.column("task_index").to_pylist() if x is not None})
    rest = {k: v for k, v in row.items() if k not in _LOCATION
            and not k.startswith(("data/", "videos/", "meta/episodes/", "stats/"))}
    return {"info": {k: v for k, v in info.items() if k not in _COUNTS}, "episode": rest, "stats": stats,
            "tasks": {str(i): tasks[i] for i in used if tasks.get(i) is not None}}


def _data_files(root: str) -> list[str]:
    return sorted(glob.glob(os.path.join(root, "data", "**", "*.parquet"), recursive=True))


def _read_table(path: str, meter: Meter) -> pa.Table | str:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        return f"does not read as Parquet: {exc}"
    meter(os.path.getsize(path))
    return table


def _drop_videos(table: pa.Table, videos: list[str]) -> pa.Table:
    return table.drop_columns([c for c in videos if c in table.column_names])


# ------------------------------------------------------------------------------------------ v2.1


def read_v21(root: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
    info = _info(root) or {}
    fps = float(info.get("fps") or 0)
    feats, video_keys = _features(info)
    chunks = int(info.get("chunks_size") or 1000)
    data_path = info.get("data_path") or "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
    video_path = info.get("video_path") or \
        "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
    tasks = {int(t["task_index"]): t.get("task") for t in _jsonl(os.path.join(root, "meta", "tasks.jsonl"))
             if "task_index" in t}
    eps = sorted(_jsonl(os.path.join(root, "meta", "episodes.jsonl")), key=lambda e: int(e.get("episode_index", -1)))
    stats = {int(e["episode_index"]): e.get("stats") for e in
             _jsonl(os.path.join(root, "meta", "episodes_stats.jsonl")) if "episode_index" in e}
    videos = Videos(meter)
    listed: set[str] = set()
    frames = n_videos = 0
    start = 0
    for e in eps:
        idx = int(e["episode_index"])
        length = e.get("length")
        chunk = idx // chunks
        path = os.path.join(root, data_path.format(episode_chunk=chunk, episode_index=idx))
        listed.add(os.path.normpath(path))
        from_index = start
        start += int(length or 0)
        shown = _rel(root, path)
        if not os.path.isfile(path):
            yield Bad(path, idx, code("missing_file", f"{shown}: episode {idx} is listed in meta/episodes.jsonl "
                                      "but its data file is missing"), b"")
            continue
        table = _read_table(path, meter)
        if isinstance(table, str):
            yield Bad(path, idx, code("unreadable", f"{shown} {table}"), b"")
            continue
        frames += table.num_rows
        cams = []
        for key in video_keys:
            vp = os.path.join(root, video_path.format(episode_chunk=chunk, video_key=key, episode_index=idx))
            found = os.path.isfile(vp)
            n_videos += found
            cams.append(Camera(key, vp if found else None, _rel(root, vp)))
        task_list = [str(t) for t in e.get("tasks") or []] or _task_names(table, tasks)
        ep = EpisodeInput(path, shown, idx, _drop_videos(table, video_keys), fps, "lerobot-v2.1", task_list,
                          info.get("robot_type"), feats, stats.get(idx), cams,
                          int(length) if isinstance(length, int) else None, from_index,
                          extra=_declared_success(e), declared=_declared(info, e, stats.get(idx), tasks, table))
        yield episode_item(ep, options, videos)
    on_disk = _data_files(root)
    for path in on_disk:
        if os.path.normpath(path) not in listed:
            yield Bad(path, 0, code("unlisted_file", f"{_rel(root, path)}: no episode in meta/episodes.jsonl "
                                    "names this data file"), b"")
    yield from _totals(root, info, len(eps), frames, n_videos)


def _declared_success(e: dict) -> dict:
    """A ``success`` flag some datasets add to their episode rows (kept only when boolean)."""
    v = e.get("success")
    return {"success": v} if isinstance(v, bool) else {}


def _task_names(table: pa.Table, tasks: dict[int, str | None]) -> list[str]:
    if "task_index" not in table.column_names:
        return []
    seen = dict.fromkeys(int(x) for x in table.column("task_index").to_pylist() if x is not None)
    return [str(tasks[i]) for i in seen if tasks.get(i) is not None]


# ------------------------------------------------------------------------------------------ v3.0


def _tasks_v3(root: str) -> dict[int, str]:
    path = os.path.join(root, "meta", "tasks.parquet")
    if not os.path.isfile(path):
        return {}
    t = pq.read_table(path)
    names = [c for c in t.column_names if c != "task_index"]
    col = "task" if "task" in names else (names[0] if names else None)  # pandas keeps the task as its index
    if col is None or "task_index" not in t.column_names:
        return {}
    return {int(i): str(s) for i, s in zip(t.column("task_index").to_pylist(), t.column(col).to_pylist(),
                                          strict=True)}


def _episodes_v3(root: str) -> list[dict]:
    files = sorted(glob.glob(os.path.join(root, "meta", "episodes", "**", "*.parquet"), recursive=True))
    rows: list[dict] = []
    for f in files:
        rows.extend(pq.read_table(f).to_pylist())
    return sorted(rows, key=lambda r: int(r.get("episode_index", -1)))


def _stats_v3(row: dict) -> dict | None:
    out: dict = {}
    for k, v in row.items():
        if k.startswith("stats/"):
            _, feat_stat = k.split("/", 1)
            feat, _, stat = feat_stat.rpartition("/")
            out.setdefault(feat, {})[stat] = v
    return out or None


def read_v30(root: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
    info = _info(root) or {}
    fps = float(info.get("fps") or 0)
    feats, video_keys = _features(info)
    data_path = info.get("data_path") or "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    video_path = info.get("video_path") or "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    tasks = _tasks_v3(root)
    eps = _episodes_v3(root)
    videos = Videos(meter)
    tables: dict[str, pa.Table | str] = {}
    frames = 0
    counted: set[str] = set()
    for e in eps:
        idx = int(e["episode_index"])
        path = os.path.join(root, data_path.format(chunk_index=int(e.get("data/chunk_index") or 0),
                                                   file_index=int(e.get("data/file_index") or 0)))
        shown = _rel(root, path)
        if path not in tables:
            if not os.path.isfile(path):
                tables = {path: f"is missing (meta/episodes lists episode {idx} in it)"}
            else:
                got = _read_table(path, meter)
                tables = {path: got}  # episodes come in file order: one data file in memory at a time
                if not isinstance(got, str) and path not in counted:
                    frames += got.num_rows
                    counted.add(path)
        table = tables[path]
        if isinstance(table, str):
            yield Bad(path, idx, code("missing_file" if "missing" in table else "unreadable",
                                      f"{shown} {table}"), b"")
            continue
        if "episode_index" not in table.column_names:
            yield Bad(path, idx, code("no_episode_index", f"{shown}: no episode_index column"), b"")
            continue
        rows = np.flatnonzero(np.asarray(table.column("episode_index").to_numpy()) == idx)
        part = table.take(pa.array(rows)) if rows.size else table.slice(0, 0)
        cams = []
        for key in video_keys:
            ci, fi = e.get(f"videos/{key}/chunk_index"), e.get(f"videos/{key}/file_index")
            vp = os.path.join(root, video_path.format(video_key=key, chunk_index=int(ci or 0), file_index=int(fi or 0)))
            start, end = e.get(f"videos/{key}/from_timestamp"), e.get(f"videos/{key}/to_timestamp")
            found = os.path.isfile(vp) and ci is not None
            cams.append(Camera(key, vp if found else None, _rel(root, vp), float(start or 0.0),
                               float(end) if end is not None else None))
        from_index = e.get("dataset_from_index")
        to_index = e.get("dataset_to_index")
        length = e.get("length")
        if isinstance(from_index, int) and isinstance(to_index, int) and isinstance(length, int) \
                and to_index - from_index != length:
            yield Bad(path, idx, code("index_gap", f"{shown} episode {idx}: meta/episodes gives the range "
                                      f"{from_index}..{to_index} for {length} frames"), b"")
            continue
        task_list = [str(t) for t in e.get("tasks") or []] or _task_names(part, tasks)
        ep = EpisodeInput(path, shown, idx, _drop_videos(part, video_keys), fps, "lerobot-v3.0", task_list,
                          info.get("robot_type"), feats, _stats_v3(e), cams,
                          int(length) if isinstance(length, int) else None,
                          int(from_index) if isinstance(from_index, int) else None,
                          extra=_declared_success(e), declared=_declared(info, e, _stats_v3(e), tasks, part))
        yield episode_item(ep, options, videos)
    listed = {os.path.join(root, data_path.format(chunk_index=int(e.get("data/chunk_index") or 0),
                                                  file_index=int(e.get("data/file_index") or 0))) for e in eps}
    total_frames = frames
    for path in _data_files(root):
        if path not in listed:
            yield Bad(path, 0, code("unlisted_file", f"{_rel(root, path)}: no episode in meta/episodes is in this "
                                    "data file"), b"")
            got = _read_table(path, lambda n: None)
            total_frames += 0 if isinstance(got, str) else got.num_rows
    yield from _totals(root, {k: v for k, v in info.items() if k != "total_videos"}, len(eps), total_frames, 0)


# ------------------------------------------------------------------------------------------ readers


class LeRobotReader:
    """A LeRobot dataset folder of one codebase version (``meta/info.json`` says which)."""

    suffixes: tuple[str, ...] = ()
    modality = "episode"
    reads_folders = True
    carries_media = True

    def __init__(self, name: str, major: str, read):
        self.name, self._major, self._read = name, major, read

    def detect(self, path: str, head_bytes: bytes) -> bool:
        info = _info(path) if os.path.isdir(path) else None
        return bool(info) and str(info.get("codebase_version", "")).startswith(self._major)

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        info = _info(path)
        if info is None:
            raise InvalidInput(f"{path}: no readable meta/info.json", hint="give the LeRobot dataset's root folder")
        return self._read(path, options, meter)

    def size(self, path: str) -> int:
        total = 0
        for sub in ("data", "videos"):
            for f in glob.glob(os.path.join(path, sub, "**", "*"), recursive=True):
                if os.path.isfile(f):
                    total += os.path.getsize(f)
        return total


register(LeRobotReader("lerobot-v2.1", "v2", read_v21))
register(LeRobotReader("lerobot-v3.0", "v3", read_v30))
