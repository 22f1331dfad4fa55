"""Robot episodes for curation: the frame table of a record, its state/action arrays, content keys,
trajectory shingles, idle runs, and the re-indexed table and camera ranges after a trim.

An episode record (docs/ingest.md "Robot episodes") carries its per-frame table as Arrow IPC stream
bytes in ``media`` (or a blob named by ``media_ref`` when large), its measured facts in
``meta.episode`` and its camera files as blobs in ``meta.attachments``. Everything here works from
those measured facts and the table, never from a provider's declared meta.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pyarrow as pa

from ciyuan.curate import media
from ciyuan.curate.text import mix64
from ciyuan.ingest.readers.episode import feature_stats, leaf, read_table, table_bytes

# columns that place an episode in its dataset (which episode, which global row, which task number), not
# what happened in it: two copies of one demonstration differ there and nowhere else
POSITION_COLUMNS = ("episode_index", "index", "task_index")


def facts(record: dict) -> dict:
    """``meta.episode`` of a record (empty when a record lacks it)."""
    return (record.get("meta") or {}).get("episode") or {}


def load_table(record: dict) -> pa.Table:
    """The record's frame table, from its inline bytes or its blob (:class:`media.NoMedia` if neither)."""
    with media.open_media(record) as src:
        data = src if isinstance(src, bytes) else src.read()
    try:
        return read_table(data)
    except (pa.ArrowInvalid, OSError) as exc:
        raise media.NoMedia("not_a_frame_table", f"record {record.get('id')}: media is no Arrow frame table: {exc}") \
            from None


def numbers(table: pa.Table, feats: dict, kind: str) -> np.ndarray:
    """``(frames, width)`` float64 of every numeric column whose measured role is ``kind`` (``state`` or
    ``action``), side by side in column order; ``(frames, 0)`` when there is none."""
    n = table.num_rows
    parts = []
    for name in table.column_names:
        if (feats.get(name) or {}).get("role") != kind:
            continue
        values, _ = leaf(table.column(name))
        if not (pa.types.is_floating(values.type) or pa.types.is_integer(values.type)):
            continue
        parts.append(values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(n, -1))
    return np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))


def content_digest(record: dict, table: pa.Table) -> bytes:
    """SHA-256 over what an episode is: every frame column but the position columns (name, type and
    values), the task texts, and each camera's blob digest with the time range the episode covers in
    it (a LeRobot v3.0 file holds many episodes: the same blob at another range is another episode)."""
    h = hashlib.sha256()
    for name in sorted(c for c in table.column_names if c not in POSITION_COLUMNS):
        col = table.column(name).combine_chunks()
        h.update(f"{name}\0{col.type}\0{len(col)}\0".encode())
        values, levels = leaf(col)
        for lengths in levels:
            h.update(np.ascontiguousarray(lengths, dtype=np.int64).tobytes())
        if pa.types.is_string(values.type) or pa.types.is_large_string(values.type):
            h.update("\0".join(str(v) for v in values.to_pylist()).encode())
        else:
            h.update(np.ascontiguousarray(values.to_numpy(zero_copy_only=False)).tobytes())
    f = facts(record)
    h.update(("\0".join(f.get("tasks") or []) + "\1").encode())
    attach = (record.get("meta") or {}).get("attachments") or {}
    for cam, c in sorted((f.get("cameras") or {}).items()):
        ref = (attach.get(cam) or {}).get("media_ref")
        h.update(f"{cam}\0{ref}\0{c.get('from_s')}\0{c.get('to_s')}\0{c.get('segments')}\0".encode())
    return h.digest()


def resample(x: np.ndarray, points: int) -> np.ndarray:
    """``points`` rows of ``x`` linearly interpolated at equal shares of the episode (length-free)."""
    n = len(x)
    if n == 0:
        return np.zeros((0, x.shape[1]))
    if n == 1:
        return np.repeat(x, points, axis=0)
    at = np.linspace(0, n - 1, points)
    return np.stack([np.interp(at, np.arange(n), x[:, d]) for d in range(x.shape[1])], axis=1)


def trajectory_shingles(x: np.ndarray, points: int, quantum: float, k: int) -> np.ndarray:
    """uint64 shingle hashes of the state sequence ``x`` resampled to ``points`` steps and quantised.

    Resampling to equal shares of the episode makes the set independent of the frame rate and of the
    length (a slower copy of a demonstration lines up with it). Each value is rounded to a grid of
    ``quantum``; a shingle is one dimension's run of ``k`` grid values at one resampled step, hashed
    with the dimension and the step. A copy with a little noise moves a few values across a grid line
    and keeps most shingles; another trajectory shares only the chance coincidences.
    """
    if not len(x) or not x.shape[1]:
        return np.zeros(0, np.uint64)
    q = np.round(resample(x, points) / quantum).astype(np.int64).astype(np.uint64)
    windows = max(1, points - k + 1)
    dims = q.shape[1]
    with np.errstate(over="ignore"):
        acc = np.zeros((windows, dims), dtype=np.uint64)
        for j in range(min(k, points)):
            acc = mix64(acc * np.uint64(0x100000001B3) + q[j : j + windows])
        salt = np.arange(windows, dtype=np.uint64)[:, None] * np.uint64(1 << 20) + np.arange(dims, dtype=np.uint64)
        return mix64(acc ^ mix64(salt)).reshape(-1)


def idle_runs(state: np.ndarray, action: np.ndarray, action_tol: float, state_tol: float, action_mode: str,
              min_frames: int) -> list[tuple[int, int]]:
    """Frame ranges ``[a, b)`` at least ``min_frames`` long in which the robot is idle.

    A frame is idle when its action is ~0 (``action_mode: zero``: every dimension within
    ``action_tol``) or unchanged from the previous frame's (``constant``), and its state is within
    ``state_tol`` of the previous frame's in every dimension (frame 0 compares with frame 1). An
    episode without state or without action has no idle frames: nothing was measured to say so.
    """
    n = len(state)
    if n < 2 or not state.shape[1] or not action.shape[1]:
        return []
    ds = np.abs(np.diff(state, axis=0)).max(axis=1)
    still = np.concatenate(([ds[0]], ds)) <= state_tol
    if action_mode == "constant":
        da = np.abs(np.diff(action, axis=0)).max(axis=1)
        quiet = np.concatenate(([da[0]], da)) <= action_tol
    else:
        quiet = np.abs(action).max(axis=1) <= action_tol
    idle = still & quiet
    edges = np.diff(np.concatenate(([0], idle.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True) if b - a >= max(1, min_frames)]


def kept_ranges(n: int, cut: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The frame ranges ``[a, b)`` of ``0..n`` outside the ``cut`` ranges (sorted, disjoint)."""
    out, at = [], 0
    for a, b in cut:
        if a > at:
            out.append((at, a))
        at = max(at, b)
    if at < n:
        out.append((at, n))
    return out


def reindexed(table: pa.Table, keep: list[tuple[int, int]], fps: float) -> pa.Table:
    """The rows of ``keep`` with ``frame_index`` 0..L'-1, ``timestamp = frame_index / fps`` and the global
    ``index`` contiguous from the episode's first one, each in its column's type."""
    rows = np.concatenate([np.arange(a, b) for a, b in keep]) if keep else np.zeros(0, np.int64)
    t = table.take(pa.array(rows, type=pa.int64()))
    n = t.num_rows
    fi = np.arange(n, dtype=np.int64)
    fixes = {"frame_index": fi, "timestamp": fi / fps}
    if "index" in t.column_names and table.num_rows:
        first = int(np.asarray(table.column("index").to_numpy())[0])
        fixes["index"] = first + fi
    for name, values in fixes.items():
        if name in t.column_names:
            i = t.column_names.index(name)
            f = t.schema.field(i)
            t = t.set_column(i, f, pa.array(values.astype(f.type.to_pandas_dtype()), type=f.type))
    return t


def runs_of(frames: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive runs ``[a, b)`` of an increasing array of frame numbers."""
    if not len(frames):
        return []
    breaks = np.flatnonzero(np.diff(frames) != 1) + 1
    starts = np.concatenate(([0], breaks))
    ends = np.concatenate((breaks, [len(frames)]))
    return [(int(frames[i]), int(frames[j - 1]) + 1) for i, j in zip(starts, ends, strict=True)]


def trimmed_cameras(cams: dict, kept: list[tuple[int, int]], fps: float) -> dict:
    """Each camera's new range in its original file after a trim (no re-encoding).

    ``kept`` are runs of the episode's *original* frames (as imported). Frame ``i`` of the original
    episode sits at ``start_s + i / fps`` in the camera's file (``start_s``: the ``from_s`` it was
    imported with, kept as ``original_from_s``); the kept runs become ``segments``
    (``[from_s, to_s]`` in file time), ``from_s``/``to_s`` span them, ``frames`` counts them.
    ``frames_kept`` lists the original frame ranges for every camera, image-array cameras too (their
    blob holds one image per original frame).
    """
    out = {}
    frames = sum(b - a for a, b in kept)
    for key, cam in cams.items():
        c = dict(cam)
        c["frames_kept"] = [[a, b] for a, b in kept]
        c["frames"] = frames
        if c.get("format") != "array":
            base = float(c.setdefault("original_from_s", c.get("from_s") or 0.0))
            segs = [[_t(base + a / fps), _t(base + b / fps)] for a, b in kept]
            c["segments"] = segs
            c["from_s"], c["to_s"] = (segs[0][0], segs[-1][1]) if segs else (base, base)
            c["whole_file"] = False
        out[key] = c
    return out


def _t(x: float) -> float:
    return round(x, 6)


def trim(record: dict, table: pa.Table, cut: list[tuple[int, int]]) -> None:
    """Drop the ``cut`` frame ranges (of ``table``) from the episode: table re-indexed, cameras' ranges,
    stats and length updated in ``meta.episode``; ``meta.episode.trimmed`` says which of the frames
    as imported were cut and kept (a second trim composes with the first)."""
    f = facts(record)
    fps = float(f["fps"])
    keep = kept_ranges(table.num_rows, cut)
    new = reindexed(table, keep, fps)
    record["media"], record["media_ref"] = table_bytes(new), None
    prior = f.get("trimmed") or {}
    orig = (np.concatenate([np.arange(a, b) for a, b in prior["kept"]]) if prior.get("kept")
            else np.arange(table.num_rows))  # current row -> frame as imported
    rows = np.concatenate([np.arange(a, b) for a, b in keep]) if keep else np.zeros(0, np.int64)
    original_length = int(prior.get("original_length", table.num_rows))
    kept = runs_of(orig[rows])
    f["trimmed"] = {
        "original_length": original_length,
        "cut": [[a, b] for a, b in kept_ranges(original_length, kept)],
        "kept": [[a, b] for a, b in kept],
        "seconds_cut": round((original_length - len(rows)) / fps, 6),
    }
    f["length"] = new.num_rows
    f["cameras"] = trimmed_cameras(f.get("cameras") or {}, kept, fps)
    f["stats"] = feature_stats(new, f.get("features") or {})
    f["stats_recomputed_by"] = "curation"
    if isinstance(f.get("table"), dict):
        f["table"]["rows"] = new.num_rows


def success_of(record: dict, table: pa.Table, reward_at_least: float) -> tuple[bool | None, str]:
    """Whether the episode succeeded and what says so: ``meta.episode.success`` if a reader measured it,
    else a success column (``next.success``, ``success``, ``is_success``: any true frame), else a reward
    column (``next.reward``, ``rewards``, ``reward``: its largest value at least ``reward_at_least``);
    ``(None, "")`` when the episode carries no such signal."""
    f = facts(record)
    if isinstance(f.get("success"), bool):
        return f["success"], "meta.episode.success"
    for name in ("next.success", "success", "is_success"):
        if name in table.column_names:
            values, _ = leaf(table.column(name))
            arr = values.to_numpy(zero_copy_only=False)
            return bool(np.any(arr.astype(bool))), f"column {name!r}"
    for name in ("next.reward", "rewards", "reward"):
        if name in table.column_names:
            values, _ = leaf(table.column(name))
            arr = values.to_numpy(zero_copy_only=False).astype(np.float64)
            best = float(arr.max()) if arr.size else -math.inf
            return best >= reward_at_least, f"column {name!r} (max {best:g})"
    return None, ""
