"""Episodes not read from LeRobot (HDF5 demonstrations, RLDS) given what a LeRobot export needs.

A LeRobot episode keeps its source's own meta (``meta.lerobot``), which the export writes back. An
HDF5 demo or an RLDS episode has none, so it is made here from what the reader measured: features
from the frame table (a name's ``/`` made ``.``: ``obs/robot0_joint_pos`` -> ``obs.robot0_joint_pos``,
since v3.0 flattens stats as ``stats/<feature>/<stat>``), the ``index`` and ``task_index`` columns
LeRobot's loader wants, our stats, the task texts, and each image-array camera declared as a video.
LeRobot keeps cameras as MP4, so such a camera (``raw`` pixels, padded JPEG/PNG rows) is encoded
once, H.264 ``yuv420p`` at the episode's frame rate, every frame (the kept ones after a trim): lossy,
and said so in the export's note. Nothing else of the record changes.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa

ENCODE_CODEC = "libx264"


def safe_name(name: str) -> str:
    return name.replace("/", ".")


def array_frames(data: bytes, cam: Mapping[str, Any], stored: int, kept: list | None) -> np.ndarray:
    """RGB frames ``(frames, H, W, C)`` of an image-array camera (``stored`` images in the blob, one per
    frame as imported); ``kept``: the original frame ranges a trim left, else all of them."""
    codec = cam.get("codec")
    h, w = int(cam["height"]), int(cam["width"])
    rows = [i for a, b in kept for i in range(int(a), int(b))] if kept else list(range(stored))
    if not stored or len(data) % stored:
        raise ValueError(f"{len(data)} bytes of camera data do not split into {stored} frames")
    if codec == "raw":
        return np.frombuffer(data, np.uint8).reshape(stored, h, w, -1)[rows]
    if codec in ("jpeg-padded", "png-padded"):
        from PIL import Image

        size = len(data) // stored
        return np.stack([np.asarray(Image.open(io.BytesIO(data[i * size:(i + 1) * size])).convert("RGB"))
                         for i in rows])
    raise ValueError(f"camera codec {codec!r} is not an image array")


def stored_frames(ep: Mapping[str, Any], cam: Mapping[str, Any]) -> int:
    """Images in an array camera's blob: one per frame as imported (a trim keeps the blob whole)."""
    return int((ep.get("trimmed") or {}).get("original_length") or cam.get("frames") or ep.get("length") or 0)


def encode(frames: np.ndarray, fps: float, path: str) -> dict:
    """``frames`` (RGB, ``N x H x W x 3``) as an H.264 MP4 at ``fps``, one frame per table row."""
    import av

    n, h, w = frames.shape[:3]
    with av.open(path, "w", format="mp4") as c:
        vs = c.add_stream(ENCODE_CODEC, rate=Fraction(fps).limit_denominator(1001), options={"bf": "0"})
        vs.width, vs.height, vs.pix_fmt = w + w % 2, h + h % 2, "yuv420p"
        for i, img in enumerate(frames):
            if img.shape[2] != 3:
                img = np.repeat(img[..., :1], 3, axis=2)
            if (w % 2) or (h % 2):  # yuv420p wants even sizes: the last row/column repeated
                img = np.pad(img, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts = i
            c.mux(vs.encode(frame))
        c.mux(vs.encode())
    return {"frames": n, "codec": "h264", "width": w + w % 2, "height": h + h % 2}


def _feature(t: pa.DataType, rows: int, col: pa.ChunkedArray) -> dict:
    if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        width = t.list_size if pa.types.is_fixed_size_list(t) else (len(col[0].as_py()) if rows else 0)
        return {"dtype": str(t.value_type.to_pandas_dtype().__name__), "shape": [width]}
    if pa.types.is_boolean(t):
        return {"dtype": "bool", "shape": [1]}
    return {"dtype": str(np.dtype(t.to_pandas_dtype())), "shape": [1]}


def table_for_lerobot(table: pa.Table) -> pa.Table:
    """The frame table with LeRobot's column names and types: ``/`` made ``.``, fixed-size lists as
    lists (as LeRobot writes them), ``index`` and ``task_index`` added when missing (the export
    renumbers them)."""
    cols, fields = [], []
    for name, col in zip(table.column_names, table.columns, strict=True):
        t = col.type
        if pa.types.is_fixed_size_list(t):
            t = pa.list_(t.value_type)
            col = col.cast(t)
        cols.append(col)
        fields.append(pa.field(safe_name(name), t))
    n = table.num_rows
    for extra in ("index", "task_index"):
        if extra not in table.column_names:
            cols.append(pa.chunked_array([pa.array(np.zeros(n, np.int64))]))
            fields.append(pa.field(extra, pa.int64()))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


def declared_for(facts: Mapping[str, Any], table: pa.Table) -> dict:
    """A ``meta.lerobot`` for an episode read from elsewhere: info (robot type, fps, features), our
    stats, its task texts (the first one the task of every frame, ``task_index`` 0)."""
    t = table_for_lerobot(table)
    feats = {name: _feature(col.type, t.num_rows, col) for name, col in zip(t.column_names, t.columns, strict=True)}
    fps = float(facts.get("fps") or 0)
    for key, cam in (facts.get("cameras") or {}).items():
        h, w = int(cam.get("height") or 0), int(cam.get("width") or 0)
        h, w = h + h % 2, w + w % 2
        feats[safe_name(key)] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"],
                                 "info": {"video.fps": fps, "video.height": h, "video.width": w,
                                          "video.channels": 3, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                                          "video.is_depth_map": False, "has_audio": False}}
    tasks = list(facts.get("tasks") or []) or [""]
    stats = {safe_name(k): v for k, v in (facts.get("stats") or {}).items()}
    return {"info": {"robot_type": facts.get("robot_type"), "fps": fps, "features": feats},
            "tasks": {0: tasks[0]}, "stats": stats, "episode": {}}


def adopted_facts(facts: Mapping[str, Any]) -> dict:
    """``meta.episode`` with camera and stats names as the export writes them."""
    out = dict(facts)
    out["cameras"] = {safe_name(k): v for k, v in (facts.get("cameras") or {}).items()}
    out["stats"] = {safe_name(k): v for k, v in (facts.get("stats") or {}).items()}
    return out
