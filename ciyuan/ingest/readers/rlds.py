"""RLDS / Open X-Embodiment folders (TFDS layout), read without TensorFlow.

A dataset is ``<dataset>/<version>/features.json`` + ``dataset_info.json`` +
``<name>-<split>.tfrecord-XXXXX-of-YYYYY``; each TFRecord record is one episode, a ``tf.train.Example``
whose step features are flattened keys (``steps/action``, ``steps/observation/state``,
``steps/is_first``, ``steps/language_instruction``, ...) holding every step's values end to end;
``features.json`` gives each one's shape and dtype. Framing checksums are verified (a bad one is a
quarantine row naming the file and the record number); ``SequenceExample`` records are taken too.

Each episode becomes the record of ``ciyuan.ingest.readers.episode``: numeric step features are the
frame table (``steps/observation/state`` -> ``observation.state``, ``steps/action`` -> ``action``,
``frame_index`` and ``timestamp`` made), image features are cameras kept as their encoded JPEG/PNG
bytes (zero-padded to the longest frame, ``codec: "jpeg-padded"``/``"png-padded"``, as HDF5 ALOHA),
``language_instruction`` is the task. RLDS declares no frame rate: ``fps`` from ``dataset_info.json``
when it has one, else the ``rlds_default_fps`` setting (``fps_source`` says which).
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from ciyuan.errors import InvalidInput
from ciyuan.ingest.readers import RAW_KEEP, Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import Meter
from ciyuan.ingest.readers.episode import Camera, EpisodeInput, code, episode_item
from ciyuan.ingest.readers.tfrecord import WireError, parse_example, records

_SHARD = re.compile(r"\.tfrecord(-\d{5}-of-\d{5})?$")
_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int64": np.int64,
           "int32": np.int32, "int16": np.int16, "int8": np.int8, "uint8": np.uint8, "uint16": np.uint16,
           "uint32": np.uint32, "bool": np.bool_}


def _shards(path: str) -> dict[str, list[str]]:
    """Folder -> its TFRecord shards, sorted; of a dataset's version folders (``1.0.0``, ``0.1.0``) the newest."""
    out: dict[str, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        got = sorted(f for f in filenames if _SHARD.search(f))
        if got:
            out[dirpath] = [os.path.join(dirpath, f) for f in got]
    newest: dict[str, tuple[tuple[int, ...], str]] = {}  # a TFDS dataset folder: only its newest version
    for folder in out:
        name = os.path.basename(folder)
        if re.fullmatch(r"\d+(\.\d+)*", name):
            version = tuple(int(x) for x in name.split("."))
            parent = os.path.dirname(folder)
            if parent not in newest or newest[parent][0] < version:
                newest[parent] = (version, folder)
    keep = {folder for _, folder in newest.values()}
    return {f: v for f, v in out.items() if f in keep or not re.fullmatch(r"\d+(\.\d+)*", os.path.basename(f))}


def _specs(node: dict, prefix: str, in_steps: bool, out: dict) -> None:
    """Flatten a TFDS ``features.json`` node into ``{"steps/observation/image": spec}``."""
    if "featuresDict" in node:
        for name, child in sorted((node["featuresDict"].get("features") or {}).items()):
            _specs(child, f"{prefix}{name}/", in_steps, out)
    elif "sequence" in node:
        _specs(node["sequence"].get("feature") or {}, prefix, True, out)
    else:
        key = prefix.rstrip("/")
        kind = "image" if "image" in node else "text" if "text" in node else "tensor"
        body = node.get(kind) or {}
        shape = [int(x) for x in (body.get("shape") or {}).get("dimensions", [])]
        out[key] = {"kind": kind, "shape": shape, "dtype": body.get("dtype", "string" if kind == "text" else None),
                    "encoding": body.get("encodingFormat"), "step": in_steps}


def _column(name: str) -> str:
    """``steps/observation/state`` -> ``observation.state`` (the names :func:`episode.role` reads)."""
    return name.removeprefix("steps/").replace("/", ".")


def _arrow(arr: np.ndarray) -> pa.Array:
    flat = pa.array(arr.reshape(-1))
    for width in reversed(arr.shape[1:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, int(width))
    return flat


def _image_size(data: bytes) -> tuple[int, int] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _episode(feats: dict, specs: dict, file: str, shown: str, rec_no: int, idx: int, fps: float,
             fps_source: str, split: str | None) -> EpisodeInput | Bad:
    where = f"{shown} record {rec_no}"

    def bad(reason: str, detail: str) -> Bad:
        return Bad(file, rec_no, code(reason, f"{where}: {detail}"), b"")

    step = {k: s for k, s in specs.items() if s["step"]}
    n = None
    for key in ("steps/is_first", "steps/is_last", "steps/reward"):
        if key in feats and key in step:
            n = len(feats[key][1])
            break
    if n is None:
        for key, s in step.items():
            if s["kind"] == "tensor" and key in feats:
                n = len(feats[key][1]) // max(1, int(np.prod(s["shape"] or [1])))
                break
    if not n:
        return bad("empty", "no steps")
    cols: dict[str, pa.Array] = {}
    cams: list[Camera] = []
    tasks: list[str] = []
    for key, s in step.items():
        if key not in feats:
            return bad("feature_missing", f"features.json declares {key!r}, the record has no such feature")
        kind, values = feats[key]
        if s["kind"] == "text":
            for v in values:
                t = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                if t and t not in tasks:
                    tasks.append(t)
            continue
        if s["kind"] == "image":
            if len(values) != n:
                return bad("video_frames", f"camera {key!r} has {len(values)} image(s), the episode {n} steps")
            size = _image_size(values[0]) if values else None
            if size is None:
                return bad("video_corrupt", f"camera {key!r} frame 0 is not an image Pillow reads")
            width = max(len(v) for v in values)
            data = b"".join(v.ljust(width, b"\0") for v in values)
            fmt = (s["encoding"] or "png").lower()
            cams.append(Camera(_column(key), None, f"{shown}#{rec_no}/{key}", raw=size, data=data,
                               codec=f"{fmt}-padded"))
            continue
        if kind == "bytes":
            continue  # encoded tensors (rare in RLDS): not numbers we can check
        width = int(np.prod(s["shape"])) if s["shape"] else 1
        if len(values) != n * width:
            return bad("shape_mismatch", f"feature {key!r} has {len(values)} values, {n} steps of shape "
                       f"{s['shape']} need {n * width}")
        arr = np.asarray(values, dtype=_DTYPES.get(str(s["dtype"]), np.float32 if kind == "float" else np.int64))
        cols[_column(key)] = _arrow(arr.reshape(n, *s["shape"]))
    meta = {}
    for key, s in specs.items():
        if not s["step"] and key in feats and len(feats[key][1]) <= 16:
            vals = [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in feats[key][1]]
            meta[key.removeprefix("episode_metadata/")] = vals[0] if len(vals) == 1 else vals
    frame = np.arange(n, dtype=np.int64)
    table = pa.table({"frame_index": frame, "timestamp": (frame / fps).astype(np.float32),
                      "episode_index": np.full(n, idx, dtype=np.int64), **cols})
    extra = {"fps_source": fps_source, "rlds": {"record": rec_no, "file": shown, "split": split,
                                                "episode_metadata": meta}}
    return EpisodeInput(file, shown, idx, table, fps, "rlds", tasks, None, {}, None, cams, None, None, extra,
                        check_timestamps=False)


def _info(folder: str) -> tuple[dict, dict]:
    """``(features.json, dataset_info.json)`` of a shard folder; an error when features.json is missing."""
    fpath = os.path.join(folder, "features.json")
    if not os.path.isfile(fpath):
        raise InvalidInput(f"{folder!r} holds TFRecord shards but no features.json",
                           hint="copy the whole TFDS version folder (features.json, dataset_info.json, shards)")
    try:
        features = json.loads(Path(fpath).read_text(encoding="utf-8"))
        ipath = os.path.join(folder, "dataset_info.json")
        info = json.loads(Path(ipath).read_text(encoding="utf-8")) if os.path.isfile(ipath) else {}
    except (ValueError, OSError) as exc:
        raise InvalidInput(f"{fpath}: not readable JSON: {exc}", hint="re-download the dataset's metadata") from None
    return features, info if isinstance(info, dict) else {}


def _fps(info: dict, default: float) -> tuple[float, str]:
    for d in (info, info.get("metadata") or {}):
        v = d.get("fps") if isinstance(d, dict) else None
        if isinstance(v, int | float) and v > 0:
            return float(v), "dataset_info.json"
    return default, "setting rlds_default_fps"


def read_rlds(path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
    from ciyuan.config import settings

    groups = {os.path.dirname(path) or ".": [path]} if os.path.isfile(path) else _shards(path)
    if not groups:
        raise InvalidInput(f"{path!r} holds no *.tfrecord-XXXXX-of-YYYYY files", hint="give an RLDS version folder")
    loaded = {folder: _info(folder) for folder in groups}  # every problem with the whole source, up front
    root = path if os.path.isdir(path) else os.path.dirname(path)
    default = settings().rlds_default_fps
    return _read(groups, loaded, root, default, options, meter)


def _read(groups: dict, loaded: dict, root: str, default: float, options: ReadOptions,
          meter: Meter) -> Iterator[Good | Bad]:
    idx = 0
    for folder, files in groups.items():
        features, info = loaded[folder]
        specs: dict = {}
        _specs(features, "", False, specs)
        fps, fps_source = _fps(info, default)
        for file in files:
            shown = os.path.relpath(file, root).replace(os.sep, "/")
            m = re.search(r"-([A-Za-z0-9_]+)\.tfrecord", os.path.basename(file))
            split = m.group(1) if m else None
            with open(file, "rb") as f:
                for rec_no, data, problem in records(f):
                    meter(len(data) + 16)
                    if problem:
                        yield Bad(file, rec_no, code("bad_crc", f"{shown} {problem}"), data[:RAW_KEEP])
                        continue
                    try:
                        feats, _ = parse_example(data)
                    except WireError as exc:
                        yield Bad(file, rec_no, code("bad_example", f"{shown} record {rec_no}: not a "
                                                     f"tf.train.Example: {exc}"), data[:RAW_KEEP])
                        continue
                    got = _episode(feats, specs, file, shown, rec_no, idx, fps, fps_source, split)
                    idx += 1
                    yield episode_item(got, options, lambda p: None) if isinstance(got, EpisodeInput) else got


class RldsReader:
    """RLDS / Open X-Embodiment TFDS folders (or one shard file beside its features.json)."""

    name = "rlds"
    suffixes: tuple[str, ...] = ()
    modality = "episode"
    reads_folders = True
    carries_media = True

    def detect(self, path: str, head_bytes: bytes) -> bool:
        if os.path.isfile(path):
            return bool(_SHARD.search(os.path.basename(path)))
        return os.path.isdir(path) and bool(_shards(path))

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        return read_rlds(path, options, meter)

    def size(self, path: str) -> int:
        if os.path.isfile(path):
            return os.path.getsize(path)
        return sum(os.path.getsize(f) for files in _shards(path).values() for f in files)


register(RldsReader())
