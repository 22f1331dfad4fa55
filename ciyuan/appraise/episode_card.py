"""What a Croissant card says of robot episodes: the per-frame table's fields and the camera videos.

Why a card needs more than the ``records`` RecordSet for episodes: a record's ``media`` is a whole
episode (its frame table as Arrow IPC stream bytes), so a loader that reads the card should learn
the frame structure without opening one: which columns, with which dtype and shape (``state`` 6
floats a frame...). So the card gets

* a ``frames`` RecordSet, one field per frame-table column, typed (``sc:Float``, ``sc:Integer``,
  ``sc:Boolean``, ``sc:Text``) with Croissant's ``isArray``/``arrayShape`` for vectors, read from
  the ``episode-frame-tables`` FileSet (the Arrow IPC tables held in the shards' media column,
  ``application/vnd.apache.arrow.stream``);
* one ``cr:FileSet`` per camera (``encodingFormat`` ``video/mp4`` for video files, or
  ``application/octet-stream`` for HDF5 image arrays kept as stored) and one ``cr:FileObject`` per
  distinct camera file with its sha256 (a LeRobot v3.0 file shared by many episodes once), named
  where a buyer finds it: beside a local store, by its path in the blob store; a listing's public
  card names no camera file (the blobs are delivered with the data), only the FileSets.

Every fact is what the import measured (``meta.episode``), never the declared ``info.json``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

ARROW_STREAM = "application/vnd.apache.arrow.stream"
VIDEO_MIME = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm", "mkv": "video/x-matroska"}


def _dtype(dtype: str) -> str:
    d = str(dtype).lower()
    if d.startswith("float") or d in ("double", "half"):
        return "sc:Float"
    if d.startswith(("int", "uint")):
        return "sc:Integer"
    if d in ("bool", "boolean"):
        return "sc:Boolean"
    return "sc:Text"


def _mime(cam: dict) -> str:
    if cam.get("format") == "array":
        return "application/octet-stream"
    return VIDEO_MIME.get(str(cam.get("format") or "mp4"), "video/mp4")


def summary(version: Any, s: Any = None) -> dict | None:
    """Episodes, frames, the union of the features and cameras, and each distinct camera file."""
    from ciyuan.store.blobs import BlobStore

    n = frames = 0
    features: dict[str, dict] = {}
    cameras: dict[str, dict] = {}
    robots: Counter[str] = Counter()
    videos: dict[str, dict] = {}
    for batch in version.iter_batches(["modality", "meta"]):
        for mod, raw in zip(batch.column("modality").to_pylist(), batch.column("meta").to_pylist(), strict=True):
            if mod != "episode":
                continue
            try:
                meta = json.loads(raw) if raw else {}
            except ValueError:
                continue
            ep = meta.get("episode") or {}
            n += 1
            frames += int(ep.get("length") or 0)
            if ep.get("robot_type"):
                robots[str(ep["robot_type"])] += 1
            for name, f in (ep.get("features") or {}).items():
                features.setdefault(name, {k: f.get(k) for k in ("dtype", "shape", "role")})
            for key, c in (ep.get("cameras") or {}).items():
                cameras.setdefault(key, {k: c.get(k) for k in ("codec", "format", "width", "height", "fps")})
                ref = ((meta.get("attachments") or {}).get(key) or {}).get("media_ref") or ""
                if ref.startswith("sha256:"):
                    videos.setdefault(ref[7:], {"camera": key, "bytes": (meta["attachments"][key] or {}).get("bytes"),
                                                "encoding": _mime(c)})
    if not n:
        return None
    store = BlobStore(s=s)
    where = str(version.location).removeprefix("file://")
    local = "://" not in str(version.location)
    for digest, vid in videos.items():
        path = store.path(digest)
        vid["path"] = path
        vid["relative"] = os.path.relpath(path, where) if local and "://" not in path else None
    return {"episodes": n, "frames": frames, "features": features, "cameras": cameras,
            "robot_types": dict(robots), "videos": videos}


def media_field(rs: str, field: Any, source: dict | None) -> dict:
    """The ``media`` column of an episode record, described as what it holds."""
    return field(rs, "media", "sc:Text", "The episode's per-frame table as Arrow IPC stream bytes (zstd buffers; "
                 "pyarrow.ipc.open_stream reads it): the frames RecordSet describes its columns. Facts measured at "
                 "import are in meta.episode; camera videos are separate files (meta.attachments).", source)


def files(episodes: dict | None, mode: str) -> list[dict]:
    """FileSets (frame tables, one per camera) and, unless ``mode`` is ``public``, a FileObject per
    camera file. ``mode``: ``relative`` (the card beside the shards), ``absolute`` or ``public``."""
    if not episodes:
        return []
    out = [{
        "@type": "cr:FileSet", "@id": "episode-frame-tables", "name": "episode-frame-tables",
        "description": f"{episodes['episodes']} per-episode frame tables ({episodes['frames']} frames in all), "
        "Arrow IPC streams held in the media column of the shards.",
        "containedIn": {"@id": "shards"}, "encodingFormat": ARROW_STREAM, "includes": "*.arrows",
    }]  # fmt: skip
    for i, (key, cam) in enumerate(sorted(episodes["cameras"].items())):
        size = f"{cam.get('width')}x{cam.get('height')}" if cam.get("width") else "unknown size"
        out.append({
            "@type": "cr:FileSet", "@id": f"camera-{i}", "name": f"camera-{i}",
            "description": f"Camera {key}: {cam.get('codec')} {size} at {cam.get('fps')} fps, the original files "
            "(never re-encoded), content addressed by sha256; meta.attachments of each record names its file.",
            "encodingFormat": _mime(cam), "includes": "blobs/sha256/*/*",
        })  # fmt: skip
    if mode == "public":
        return out
    for digest, vid in sorted(episodes["videos"].items()):
        url = vid["relative"] if mode == "relative" and vid.get("relative") else vid["path"]
        out.append({
            "@type": "cr:FileObject", "@id": f"video-{digest[:16]}", "name": f"video-{digest[:16]}",
            "description": f"A file of camera {vid['camera']}.", "contentUrl": url,
            "encodingFormat": vid["encoding"], "sha256": digest,
            **({"contentSize": f"{vid['bytes']} B"} if vid.get("bytes") is not None else {}),
        })  # fmt: skip
    return out


def frames_record_set(episodes: dict | None) -> list[dict]:
    """The ``frames`` RecordSet: one field per frame-table column with its dtype and shape."""
    if not episodes:
        return []
    fields = []
    for name, f in sorted(episodes["features"].items()):
        shape = [int(x) for x in (f.get("shape") or []) if isinstance(x, int)]
        array = len(shape) > 1 or (len(shape) == 1 and shape[0] != 1)
        fields.append({
            "@type": "cr:Field", "@id": f"frames/{name}", "name": name,
            "description": f"{f.get('role') or 'other'}: dtype {f.get('dtype')}, shape {shape or [1]} per frame.",
            "dataType": _dtype(str(f.get("dtype"))),
            **({"isArray": True, "arrayShape": ",".join(map(str, shape))} if array else {}),
            "source": {"fileSet": {"@id": "episode-frame-tables"}, "extract": {"column": name}},
        })  # fmt: skip
    return [{
        "@type": "cr:RecordSet", "@id": "frames", "name": "frames",
        "description": "One row per frame of an episode (the frame table in each episode record's media); "
        f"robot types {json.dumps(episodes['robot_types'], ensure_ascii=False)}.",
        "field": fields,
    }]  # fmt: skip
