"""Training windows of robot episodes, decoded on the buyer's side (LeRobot's ``delta_timestamps``).

``windows = {key: [offsets in seconds]}``: for each (sampled) frame at time ``t`` of an episode,
``key`` at times ``t + d``. A key is a column of the episode's frame table (``observation.state``,
``action``, ...) or a camera (``meta.episode.cameras``), whose video blob
(``meta.attachments[cam].media_ref``) is fetched through the entitlement's signed media URLs and
decoded with PyAV over the episode's own range of the file (``from_s`` .. ``to_s``: a LeRobot v3.0
file holds many episodes). Like LeRobot, a time outside the episode takes the nearest frame (the
first or last) and is flagged in ``{key}_is_pad``. An item is ``{key: array (len(offsets), ...),
key_is_pad: bool array, id, episode_index, frame_index, timestamp}`` (torch tensors with torch).

Cameras that are no video file are decoded too: HDF5 image arrays (``codec: "raw"``, the
``N x H x W x C`` bytes as stored) and JPEG/PNG frames zero-padded to one row each (ALOHA's
compressed cameras, RLDS images: ``jpeg-padded``/``png-padded``). After an idle trim the blob is
still the original: an array camera keeps the rows of ``frames_kept``, a video the frames inside its
``segments`` (the ``n``-th kept frame is row ``n`` of the table, docs/curation.md).

A camera is decoded once per episode (every frame of its range, kept while the episode's windows
are made): simple and fast for the episodes LeRobot datasets hold, but an hour-long episode at
full resolution needs the memory of its frames.
"""

from __future__ import annotations

import io
import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np

PAD_TOL_S = 1e-4  # LeRobot's tolerance: a query this close to the episode's edge is not padding


def check_windows(windows: Mapping[str, Any] | None) -> dict[str, list[float]] | None:
    """``{key: [offsets]}`` as floats, or None; refuses empty keys or offsets."""
    if not windows:
        return None
    out: dict[str, list[float]] = {}
    for k, v in windows.items():
        offs = [float(x) for x in v]
        if not isinstance(k, str) or not k or not offs:
            raise ValueError(f"windows[{k!r}] must be a non-empty list of offsets in seconds")
        out[k] = offs
    return out


def _meta(rec: Mapping[str, Any]) -> dict:
    m = rec.get("meta") or {}
    return json.loads(m) if isinstance(m, str) else dict(m)


def attachment_refs(records: list[dict], windows: Mapping[str, list[float]]) -> list[str]:
    """The camera blobs the windows of these records need."""
    refs: list[str] = []
    for r in records:
        att = _meta(r).get("attachments") or {}
        refs += [att[k]["media_ref"] for k in windows if isinstance(att.get(k), dict) and att[k].get("media_ref")]
    return list(dict.fromkeys(refs))


class BlobCache:
    """The last few camera blobs of this process (v3.0 episodes share one video file)."""

    def __init__(self, fetch: Callable[[list[str]], dict[str, bytes]], keep: int = 4):
        self.fetch, self.keep = fetch, keep
        self._blobs: OrderedDict[str, bytes] = OrderedDict()

    def want(self, refs: list[str]) -> None:
        need = [r for r in refs if r not in self._blobs]
        if need:
            self._blobs.update(self.fetch(need))
        for r in refs:
            self._blobs.move_to_end(r)
        while len(self._blobs) > max(self.keep, len(refs)):
            self._blobs.popitem(last=False)

    def get(self, ref: str) -> bytes:
        if ref not in self._blobs:
            self.want([ref])
        return self._blobs[ref]


def decode_camera(data: bytes, from_s: float, to_s: float | None, fps: float, frames: int) -> np.ndarray:
    """RGB frames ``(frames, H, W, 3)`` of the video range ``[from_s, to_s)``, frame ``i`` at ``from_s + i / fps``."""
    import av

    out: list[np.ndarray | None] = [None] * frames
    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        if from_s > 0 and s.time_base:
            c.seek(int(from_s / s.time_base), stream=s, backward=True, any_frame=False)
        for fr in c.decode(s):
            t = float(fr.pts * s.time_base) if fr.pts is not None else 0.0
            i = int(round((t - from_s) * fps))
            if i < 0:
                continue
            if i >= frames or (to_s is not None and t >= to_s - 0.5 / fps):
                break
            out[i] = fr.to_ndarray(format="rgb24")
    last = None
    for i, f in enumerate(out):  # a frame the file lacks takes the one before (never seen in checked episodes)
        last = f if f is not None else last
        out[i] = last
    first = next((f for f in out if f is not None), None)
    if first is None:
        raise ValueError(f"no video frame between {from_s} s and {to_s} s")
    return np.stack([f if f is not None else first for f in out])


def decode_segments(data: bytes, segments: list, fps: float, frames: int) -> np.ndarray:
    """RGB frames of a trimmed camera: those whose time falls in one of ``segments`` (file time,
    half a frame of slack as ``store.video_cut`` cuts them), in order, ``frames`` of them."""
    parts = [decode_camera(data, float(a), float(b), fps, max(1, int(round((float(b) - float(a)) * fps))))
             for a, b in segments]
    out = np.concatenate(parts) if parts else np.zeros((0, 0, 0, 3), np.uint8)
    if len(out) != frames:
        raise ValueError(f"{len(out)} frames in the camera's kept segments, the episode has {frames}")
    return out


def camera_frames(data: bytes, cam: Mapping[str, Any], ep: Mapping[str, Any], fps: float, n: int) -> np.ndarray:
    """Every frame of one episode's camera, row ``i`` for frame ``i`` of the table."""
    cfps = float(cam.get("fps") or fps)
    frames = int(cam.get("frames") or n)
    if cam.get("format") == "array":
        from ciyuan.store.lerobot_adopt import array_frames, stored_frames

        return array_frames(data, cam, stored_frames(ep, cam), cam.get("frames_kept"))
    if cam.get("segments"):
        return decode_segments(data, cam["segments"], cfps, frames)
    return decode_camera(data, float(cam.get("from_s") or 0.0), cam.get("to_s"), cfps, frames)


def _column(table: Any, key: str) -> np.ndarray:
    """A frame-table column as ``(frames, ...)``: list columns (state, action vectors) stacked."""
    import pyarrow as pa

    col = table.column(key).combine_chunks()
    if pa.types.is_list(col.type) or pa.types.is_large_list(col.type) or pa.types.is_fixed_size_list(col.type):
        return np.stack([np.asarray(v) for v in col.to_pylist()]) if len(col) else np.zeros((0, 0))
    return col.to_numpy(zero_copy_only=False)


def episode_windows(rec: Mapping[str, Any], windows: Mapping[str, list[float]], blobs: BlobCache, *,
                    start: int = 0, step: int = 1, as_torch: bool = False) -> Iterator[tuple[int, dict]]:
    """(frame index, window item) of frames ``start, start + step, ...`` of one episode record."""
    from ciyuan.ingest.readers.episode import read_table

    meta = _meta(rec)
    ep = meta.get("episode") or {}
    table = read_table(rec["media"])
    n = table.num_rows
    fps = float(ep.get("fps") or 0) or 1.0
    ts = table.column("timestamp").to_numpy().astype(np.float64) if "timestamp" in table.column_names \
        else np.arange(n) / fps
    cams = ep.get("cameras") or {}
    data: dict[str, np.ndarray] = {}
    for key in windows:
        if key in cams:
            cam = cams[key]
            ref = (meta.get("attachments") or {}).get(key, {}).get("media_ref")
            if not ref:
                raise ValueError(f"record {rec.get('id')}: camera {key} has no video blob")
            data[key] = camera_frames(blobs.get(ref), cam, ep, fps, n)
        elif key in table.column_names:
            data[key] = _column(table, key)
        else:
            raise ValueError(f"record {rec.get('id')}: {key!r} is neither a column {table.column_names} "
                             f"nor a camera {sorted(cams)}")
    t0, t1 = ts[0], ts[-1]
    frames = np.arange(start, n, step)
    at: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # key -> (source rows, pad) of every frame, at once
    for key, offs in windows.items():
        q = ts[frames][:, None] + np.asarray(offs)[None, :]
        pad = (q < t0 - PAD_TOL_S) | (q > t1 + PAD_TOL_S)
        idx = np.clip(np.rint((np.clip(q, t0, t1) - t0) * fps).astype(np.int64), 0, len(data[key]) - 1)
        at[key] = idx, pad
    if as_torch:
        import torch
    for j, i in enumerate(frames.tolist()):
        item: dict[str, Any] = {"id": rec.get("id") or "", "episode_index": int(ep.get("episode_index", 0)),
                                "frame_index": i, "timestamp": float(ts[i])}
        for key, (idx, pad) in at.items():
            val = data[key][idx[j]]
            if as_torch:
                item[key] = torch.from_numpy(np.ascontiguousarray(val))
                item[f"{key}_is_pad"] = torch.from_numpy(pad[j].copy())
            else:
                item[key], item[f"{key}_is_pad"] = val, pad[j].copy()
        yield i, item
