"""What every robot-episode layout shares: one episode's frame table and cameras in, one checked record out.

The LeRobot (v2.1, v3.0) and HDF5 readers find an episode's rows, its declared features and stats
and its camera files; :func:`episode_item` runs the checks of docs/ingest.md ("Robot episodes") and
gives a ``Good`` record of modality ``episode`` or a ``Bad`` naming the file, the episode and the
frame. The record's ``media`` is the frame table as Arrow IPC stream bytes (zstd), so the numbers
are kept exactly as read; each camera video is an attachment (a ``FileSpan`` on the original file:
never decoded into the record, never re-encoded) that the builder stores as a content-addressed
blob. What the token schedules read (length, action and state widths, camera facts) is measured
here from the data, never copied from the declared meta.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ciyuan.ingest.readers import Bad, Good, ReadOptions
from ciyuan.store.blobs import FileSpan

INDEX_COLUMNS = ("timestamp", "frame_index", "episode_index", "index", "task_index")
STATS = ("min", "max", "mean", "std")
STATS_RTOL = 1e-4  # declared stats against ours: float32 sums differ in the last digits, not more
STATS_ATOL = 1e-5
FPS_RTOL = 1e-3


def code(reason: str, detail: str) -> str:
    """A quarantine reason: ``episode.<code>: <what and where>`` (the code is counted by kind)."""
    return f"episode.{reason}: {detail}"


@dataclass
class Camera:
    """One camera of one episode: the video file and the time range the episode covers in it
    (``end_s`` None: the whole file, as in LeRobot v2.1). ``raw`` is set for cameras stored as
    image arrays (HDF5): ``(width, height)``, no file to decode."""

    key: str
    path: str | None
    shown: str
    start_s: float = 0.0
    end_s: float | None = None
    raw: tuple[int, int] | None = None
    data: bytes | None = None
    codec: str = "raw"


@dataclass
class EpisodeInput:
    """What a reader found of one episode, before any check."""

    source: str  # the data file (full path: the quarantine row names it)
    shown: str  # its path inside the dataset folder
    episode_index: int
    table: pa.Table
    fps: float
    fmt: str
    tasks: list[str] = field(default_factory=list)
    robot_type: str | None = None
    features: dict = field(default_factory=dict)  # declared: name -> {"dtype", "shape"}
    stats: dict | None = None  # declared per-episode stats, name -> {"min", "max", ...}
    cameras: list[Camera] = field(default_factory=list)
    length: int | None = None  # declared length
    from_index: int | None = None  # declared first global index
    extra: dict = field(default_factory=dict)
    check_timestamps: bool = True  # HDF5 demos carry no timestamps: they are made from the index
    declared: dict | None = None  # LeRobot: the source's own meta, kept verbatim for a lossless export


VideoCache = Callable[[str], object]  # path -> DecodedVideo (decoded once per file)


def role(name: str, dtype: str | None = None) -> str:
    """``action``, ``state``, ``index``, ``camera`` or ``other``: which numbers the schedules count."""
    if dtype in ("video", "image") or ".images." in name or name.startswith("observation.image"):
        return "camera"
    if name in INDEX_COLUMNS:
        return "index"
    if name == "action" or name.startswith(("action.", "actions")):
        return "action"
    if name.startswith(("observation.", "obs/", "observations/")) or name in ("states", "qpos", "qvel"):
        return "state"
    return "other"


def leaf(arr: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, list[np.ndarray]]:
    """The flat values of a (nested) list column and each level's per-row lengths."""
    a = arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr
    levels = []
    while pa.types.is_list(a.type) or pa.types.is_large_list(a.type) or pa.types.is_fixed_size_list(a.type):
        levels.append(np.asarray(pc.fill_null(pc.list_value_length(a), 0)))
        a = a.flatten()
    return a, levels


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _dtype_ok(declared: str, t: pa.DataType) -> bool:
    if declared in ("string", "str"):
        return pa.types.is_string(t) or pa.types.is_large_string(t)
    if declared == "bool":
        return pa.types.is_boolean(t)
    try:
        return pa.from_numpy_dtype(np.dtype(declared)) == t
    except TypeError:
        return True  # a dtype we do not know (image structs): not ours to refuse


def _frame(levels: list[np.ndarray], flat_pos: int) -> int:
    """The row a position in the flattened values belongs to."""
    pos = flat_pos
    for lengths in reversed(levels):
        pos = int(np.searchsorted(np.cumsum(lengths), pos, side="right"))
    return pos


def _check_features(ep: EpisodeInput, where: str) -> tuple[str | None, dict]:
    """Dtypes as declared, shapes constant (and as declared), no NaN/inf in state or action; the
    measured features ``{name: {"dtype", "shape", "role"}}`` when all hold."""
    measured: dict = {}
    for name in ep.table.column_names:
        col = ep.table.column(name)
        values, levels = leaf(col)
        decl = ep.features.get(name) or {}
        if decl.get("dtype") and not _dtype_ok(str(decl["dtype"]), values.type):
            return code("dtype_mismatch", f"{where}: feature {name!r} is {values.type}, info.json declares "
                        f"{decl['dtype']}"), {}
        shape = []
        for depth, lengths in enumerate(levels):
            if len(lengths) and (lengths != lengths[0]).any():
                bad = int(np.argmax(lengths != lengths[0]))
                frame = bad if depth == 0 else _frame(levels[:depth], bad)
                return code("shape_changed", f"{where} frame {frame}: feature {name!r} has {int(lengths[bad])} "
                            f"values where frame 0 has {int(lengths[0])}"), {}
            shape.append(int(lengths[0]) if len(lengths) else 0)
        want = decl.get("shape")
        if want is not None and levels and math.prod(shape) != math.prod(int(x) for x in want):
            return code("shape_mismatch", f"{where}: feature {name!r} has shape {shape}, info.json declares "
                        f"{list(want)}"), {}
        kind = role(name, decl.get("dtype"))
        if kind in ("action", "state") and pa.types.is_floating(values.type):
            arr = values.to_numpy(zero_copy_only=False)
            bad_at = np.flatnonzero(~np.isfinite(arr))
            if bad_at.size:
                frame = _frame(levels, int(bad_at[0])) if levels else int(bad_at[0])
                return code("non_finite", f"{where} frame {frame}: {name!r} holds {arr[bad_at[0]]}"), {}
        measured[name] = {"dtype": str(values.type), "shape": shape or [1], "role": kind}
    return None, measured


def _stats_of(col: pa.ChunkedArray, rows: int) -> dict | None:
    values, levels = leaf(col)
    if not _numeric(values.type) or rows == 0:
        return None
    arr = values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(rows, -1)
    return {"min": arr.min(axis=0).tolist(), "max": arr.max(axis=0).tolist(), "mean": arr.mean(axis=0).tolist(),
            "std": arr.std(axis=0).tolist(), "count": [rows]}


def feature_stats(table: pa.Table, features: dict) -> dict:
    """Stats of every numeric non-camera feature of ``table`` (``features`` as in ``meta.episode``), as
    the readers write them to ``meta.episode.stats``; curation recomputes them with this after a trim."""
    out: dict = {}
    for name in table.column_names:
        if (features.get(name) or {}).get("role") == "camera":
            continue
        got = _stats_of(table.column(name), table.num_rows)
        if got is not None:
            out[name] = got
    return out


def _check_stats(ep: EpisodeInput, where: str, measured: dict,
                 rewritten: tuple[str, ...] = ()) -> tuple[str | None, dict, list[str]]:
    """Stats of every numeric non-camera feature, recomputed; the declared ones must agree (those of
    ``rewritten`` columns, repaired here, are stale by construction: ours replace them)."""
    ours: dict = {}
    missing: list[str] = []
    declared = ep.stats or {}
    for name, facts in measured.items():
        if facts["role"] == "camera":
            continue
        got = _stats_of(ep.table.column(name), ep.table.num_rows)
        if got is None:
            continue
        ours[name] = got
        theirs = declared.get(name)
        if name in rewritten or not isinstance(theirs, dict) or any(theirs.get(k) is None for k in STATS):
            missing.append(name)
            continue
        for stat in STATS:
            a = np.asarray(theirs[stat], dtype=np.float64).reshape(-1)
            b = np.asarray(got[stat], dtype=np.float64).reshape(-1)
            if a.shape != b.shape or not np.allclose(a, b, rtol=STATS_RTOL, atol=STATS_ATOL, equal_nan=False):
                return code("stats_mismatch", f"{where}: declared {stat} of {name!r} is {a.tolist()[:8]}, the "
                            f"data give {[round(x, 6) for x in b.tolist()[:8]]}"), {}, []
    return None, ours, missing


def _check_order(ep: EpisodeInput, where: str, options: ReadOptions) -> tuple[str | None, pa.Table, bool]:
    """Length, frame_index 0..L-1, the global index, timestamps (repaired when asked)."""
    t = ep.table
    n = t.num_rows
    if ep.length is not None and ep.length != n:
        return code("length_mismatch", f"{where}: the episode meta says {ep.length} frames, the data file "
                    f"has {n}"), t, False
    if n == 0:
        return code("empty", f"{where}: no frames"), t, False
    if "frame_index" in t.column_names:
        fi = np.asarray(t.column("frame_index").to_numpy(), dtype=np.int64)
        bad = np.flatnonzero(fi != np.arange(n))
        if bad.size:
            f = int(bad[0])
            return code("frame_index_gap", f"{where} frame {f}: frame_index is {int(fi[f])}, expected {f} "
                        f"(it must run 0..{n - 1} without gaps)"), t, False
    if "index" in t.column_names and ep.from_index is not None:
        idx = np.asarray(t.column("index").to_numpy(), dtype=np.int64)
        bad = np.flatnonzero(idx != ep.from_index + np.arange(n))
        if bad.size:
            f = int(bad[0])
            return code("index_gap", f"{where} frame {f}: global index is {int(idx[f])}, expected "
                        f"{ep.from_index + f} (the episode's range is {ep.from_index}..{ep.from_index + n})"), t, False
    repaired = False
    if ep.check_timestamps and "timestamp" in t.column_names:
        ts = np.asarray(t.column("timestamp").to_numpy(zero_copy_only=False), dtype=np.float64)
        want = np.arange(n) / ep.fps
        drift = np.abs(ts - want)
        bad = np.flatnonzero(~(drift <= options.timestamp_tolerance_s))
        if bad.size:
            f = int(bad[0])
            if not options.repair_timestamps:
                return code("timestamp_drift", f"{where} frame {f}: timestamp {ts[f]:.6f} s, frame_index/fps is "
                            f"{want[f]:.6f} s (tolerance {options.timestamp_tolerance_s:g} s; "
                            "--repair-timestamps rewrites them)"), t, False
            i = t.column_names.index("timestamp")
            typ = t.schema.field(i).type
            t = t.set_column(i, t.schema.field(i), pa.array(want.astype(typ.to_pandas_dtype()), type=typ))
            repaired = True
    return None, t, repaired


def _check_cameras(ep: EpisodeInput, where: str, videos: VideoCache) -> tuple[str | None, dict, dict]:
    """Every camera decodes, with as many frames in the episode's range as the table has rows and at
    the table's fps; ``(problem, cameras meta, attachments)``."""
    n = ep.table.num_rows
    cams: dict = {}
    attach: dict = {}
    for cam in ep.cameras:
        if cam.raw is not None:  # image arrays (HDF5): the frames are the rows, the bytes as stored
            w, h = cam.raw
            cams[cam.key] = {"width": w, "height": h, "fps": ep.fps, "frames": n, "codec": cam.codec,
                             "format": "array", "file": cam.shown}
            if cam.data is not None:
                attach[cam.key] = cam.data
            continue
        if cam.path is None:
            return code("video_missing", f"{where}: camera {cam.key!r} has no video file ({cam.shown})"), {}, {}
        got = videos(cam.path)
        if got.error and (got.error_at_s is None or cam.end_s is None or got.error_at_s < cam.end_s):
            return code("video_corrupt", f"{where}: camera {cam.key!r} video {cam.shown} {got.error}"), {}, {}
        if abs(got.fps - ep.fps) > FPS_RTOL * ep.fps:
            return code("video_fps", f"{where}: camera {cam.key!r} video {cam.shown} runs at {got.fps:g} fps, "
                        f"the data table at {ep.fps:g}"), {}, {}
        frames = got.frames_between(cam.start_s, cam.end_s)
        if frames != n:
            span = "" if cam.end_s is None else f" between {cam.start_s:g} s and {cam.end_s:g} s"
            return code("video_frames", f"{where}: camera {cam.key!r} video {cam.shown} decodes to {frames} "
                        f"frame(s){span}, the data table has {n}"), {}, {}
        cams[cam.key] = {**got.facts(), "frames": frames, "file": cam.shown, "from_s": cam.start_s,
                         "to_s": cam.end_s, "whole_file": cam.end_s is None or frames == len(got.times)}
        attach[cam.key] = FileSpan(cam.path, 0, os.path.getsize(cam.path))
    return None, cams, attach


def table_bytes(table: pa.Table) -> bytes:
    """The frame table as Arrow IPC stream bytes, zstd-compressed buffers (``pa.ipc.open_stream`` reads it)."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(compression="zstd")) as w:
        w.write_table(table)
    return sink.getvalue()


def read_table(data: bytes) -> pa.Table:
    """The frame table of an episode record's ``media``."""
    return pa.ipc.open_stream(pa.BufferReader(data)).read_all()


def success(table: pa.Table, declared: object = None) -> bool | None:
    """Whether the episode succeeded, when the data says: a success column (``next.success``,
    ``success``, ``is_success``: true on any frame, as curation reads them), else a boolean the
    episode meta declares; None when neither does."""
    for name in ("next.success", "success", "is_success"):
        if name in table.column_names:
            col, _ = leaf(table.column(name))
            if pa.types.is_boolean(col.type) or pa.types.is_integer(col.type):
                return bool(pc.any(pc.cast(col, pa.bool_())).as_py() or False)
    return declared if isinstance(declared, bool) else None


def episode_item(ep: EpisodeInput, options: ReadOptions, videos: VideoCache) -> Good | Bad:
    """Check one episode; its record, or its quarantine row (file, episode index, frame in the reason)."""
    where = f"{ep.shown} episode {ep.episode_index}"

    def bad(reason: str) -> Bad:
        return Bad(ep.source, ep.episode_index, reason, b"")

    if not (ep.fps and ep.fps > 0 and math.isfinite(ep.fps)):
        return bad(code("no_fps", f"{where}: no frame rate (info.json fps, or an fps attribute)"))
    problem, table, repaired = _check_order(ep, where, options)
    if problem:
        return bad(problem)
    ep.table = table
    problem, measured = _check_features(ep, where)
    if problem:
        return bad(problem)
    problem, stats, recomputed = _check_stats(ep, where, measured, ("timestamp",) if repaired else ())
    if problem:
        return bad(problem)
    problem, cams, attach = _check_cameras(ep, where, videos)
    if problem:
        return bad(problem)

    def width(kind: str) -> int:
        return sum(math.prod(f["shape"]) for f in measured.values() if f["role"] == kind)

    facts = {
        "format": ep.fmt, "episode_index": ep.episode_index, "length": table.num_rows, "fps": ep.fps,
        "robot_type": ep.robot_type, "tasks": ep.tasks, "action_dim": width("action"), "state_dim": width("state"),
        "features": measured, "cameras": cams, "stats": stats,
        "table": {"encoding": "arrow-ipc-stream", "compression": "zstd", "rows": table.num_rows,
                  "columns": table.column_names},
        **({"stats_recomputed": recomputed} if recomputed else {}),
        **({"repaired": ["timestamps"]} if repaired else {}),
        **ep.extra,
    }
    won = success(table, ep.extra.get("success"))
    meta = {"episode": facts, "path": ep.shown, "robot_type": ep.robot_type, "task": ep.tasks[0] if ep.tasks else None}
    if won is not None:  # for filters, like task; meta.episode.success is only ever a declared flag
        meta["success"] = won
    if ep.declared is not None:
        meta["lerobot"] = ep.declared
    record = {"id": None, "text": "\n".join(ep.tasks) or None, "modality": "episode", "meta": meta,
              "media": table_bytes(table), "attachments": attach}
    return Good(ep.source, ep.episode_index, record)
