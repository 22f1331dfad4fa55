"""HDF5 demonstrations, robomimic style (``data/demo_N/{actions, rewards, dones, states, obs/...}``, many
demos a file) and ALOHA style (one episode a file: ``action``, ``observations/{qpos, qvel, images/<cam>}``),
read with h5py. A file, or a folder of ``.hdf5``/``.h5`` files.

Each demo is one episode record (``ciyuan.ingest.readers.episode``): its numeric datasets become the
frame table (``frame_index`` and ``timestamp = frame_index / fps`` are made, since HDF5 demos carry
none), image datasets (``uint8`` arrays of ``N x H x W x C``) are cameras whose pixels are kept as
stored (the array's bytes, C order; nothing is re-encoded); ALOHA's ``compress=True`` cameras (one JPEG
a row, zero-padded) are kept the same way, as their padded JPEG bytes (``codec: "jpeg-padded"``).
The frame rate comes from an ``fps``/``control_freq`` attribute or robomimic's ``env_args``; without
one it is robomimic's 20 Hz or ALOHA's 50 Hz, and ``fps_source`` says which.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from ciyuan.errors import InvalidInput
from ciyuan.ingest.readers import Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import Meter
from ciyuan.ingest.readers.episode import Camera, EpisodeInput, code, episode_item

SUFFIXES = (".hdf5", ".h5", ".he5")
DEFAULT_FPS = {"robomimic": 20.0, "aloha": 50.0}
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    out = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        out += [os.path.join(dirpath, f) for f in sorted(filenames) if f.lower().endswith(SUFFIXES)]
    return out


def _attr(obj, *names):
    for n in names:
        if n in obj.attrs:
            v = obj.attrs[n]
            return v.decode() if isinstance(v, bytes) else (v.item() if hasattr(v, "item") else v)
    return None


def _env_args(f) -> dict:
    raw = _attr(f["data"], "env_args") if "data" in f else None
    try:
        got = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        got = {}
    return got if isinstance(got, dict) else {}


def _fps(style: str, f, demo, env: dict) -> tuple[float, str]:
    for obj in (demo, f.get("data", f), f):
        v = _attr(obj, "fps", "control_freq", "frequency")
        if isinstance(v, int | float) and v > 0:
            return float(v), "attribute"
    freq = (env.get("env_kwargs") or {}).get("control_freq")
    if isinstance(freq, int | float) and freq > 0:
        return float(freq), "env_args.control_freq"
    return DEFAULT_FPS[style], f"default for {style}"


def _arrow(arr: np.ndarray) -> pa.Array:
    """A column from an ``N x ...`` array: scalars per row, or nested fixed-size lists."""
    flat = pa.array(arr.reshape(-1))
    for width in reversed(arr.shape[1:]):
        flat = pa.FixedSizeListArray.from_arrays(flat, int(width))
    return flat


def _walk(group, prefix: str = "") -> Iterator[tuple[str, object]]:
    import h5py

    for name in sorted(group):
        item = group[name]
        full = f"{prefix}{name}"
        if isinstance(item, h5py.Group):
            yield from _walk(item, full + "/")
        elif isinstance(item, h5py.Dataset):
            yield full, item


def _is_image(name: str, ds) -> bool:
    return ds.dtype == np.uint8 and ds.ndim == 4 and ds.shape[-1] in (1, 3, 4)


def _is_encoded_image(name: str, ds) -> bool:
    """ALOHA's ``compress=True`` cameras: one JPEG a row, zero-padded to the longest (``N x bytes``)."""
    return ds.dtype == np.uint8 and ds.ndim == 2 and "images/" in name


def _encoded_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) of the first frame of an encoded camera, or None when it is no image."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data[0].tobytes())) as im:
            return im.size
    except (UnidentifiedImageError, OSError, ValueError):
        return None


def _demo(path: str, shown: str, idx: int, group, style: str, f, env: dict, meter: Meter) -> EpisodeInput | Bad:
    fps, fps_source = _fps(style, f, group, env)
    cols: dict[str, pa.Array] = {}
    cams: list[Camera] = []
    length = None
    rows: dict[str, int] = {}
    for name, ds in _walk(group):
        if name.startswith("next_obs/"):
            continue  # robomimic's next observations repeat obs shifted by one frame
        if ds.ndim == 0 or ds.dtype.kind not in "biuf" or name == "compress_len":
            continue  # compress_len: ALOHA's byte lengths of its encoded frames, one row a camera
        rows[name] = int(ds.shape[0])
        if _is_encoded_image(name, ds):
            data = ds[()]
            meter(data.nbytes)
            size = _encoded_size(data)
            if size is None:
                return Bad(path, idx, code("video_corrupt", f"{shown} {group.name}: camera {name!r} frame 0 is "
                                           "not an image Pillow reads"), b"")
            cams.append(Camera(name, None, f"{shown}:{group.name.rstrip('/')}/{name}", raw=size,
                               data=data.tobytes(), codec="jpeg-padded"))
            continue
        if _is_image(name, ds):
            data = ds[()]
            meter(data.nbytes)
            cams.append(Camera(name, None, f"{shown}:{group.name.rstrip('/')}/{name}",
                               raw=(int(ds.shape[2]), int(ds.shape[1])), data=data.tobytes()))
            continue
        arr = ds[()]
        meter(arr.nbytes)
        cols[name] = _arrow(arr)
    if not cols:
        return Bad(path, idx, code("no_data", f"{shown} {group.name}: no numeric datasets"), b"")
    lengths = set(rows.values())
    if len(lengths) > 1:
        ref = next((k for k in ("actions", "action") if k in rows), max(rows, key=lambda k: rows[k]))
        odd = sorted(k for k, v in rows.items() if v != rows[ref])
        return Bad(path, idx, code("length_mismatch", f"{shown} {group.name}: {odd[0]} has {rows[odd[0]]} rows, "
                                   f"{ref} has {rows[ref]}"), b"")
    n = lengths.pop()
    declared = _attr(group, "num_samples")
    length = int(declared) if isinstance(declared, int | np.integer) else None
    frame = np.arange(n, dtype=np.int64)
    table = pa.table({"frame_index": frame, "timestamp": (frame / fps).astype(np.float32),
                      "episode_index": np.full(n, idx, dtype=np.int64), **cols})
    task = _attr(group, "task", "language_instruction", "lang") or _attr(f, "task", "language_instruction") \
        or env.get("env_name")
    robots = (env.get("env_kwargs") or {}).get("robots")
    robot = _attr(f, "robot_type") or (",".join(robots) if isinstance(robots, list) else robots) or \
        ("aloha" if style == "aloha" else None)
    return EpisodeInput(path, shown, idx, table, fps, f"hdf5-{style}", [str(task)] if task else [], robot,
                        {}, None, cams, length, None, {"fps_source": fps_source, "group": group.name},
                        check_timestamps=False)


def read_hdf5(path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
    import h5py

    root = path if os.path.isdir(path) else os.path.dirname(path)
    for file in _files(path):
        shown = os.path.relpath(file, root).replace(os.sep, "/") if os.path.isdir(path) else os.path.basename(file)
        try:
            f = h5py.File(file, "r")
        except OSError as exc:
            yield Bad(file, 0, code("unreadable", f"{shown}: not an HDF5 file h5py opens: {exc}"), b"")
            continue
        with f:
            if "data" in f:
                env = _env_args(f)
                demos = sorted((k for k in f["data"] if re.fullmatch(r"demo_\d+", k)), key=lambda k: int(k[5:]))
                total = 0
                for k in demos:
                    got = _demo(file, shown, int(k[5:]), f["data"][k], "robomimic", f, env, meter)
                    if isinstance(got, EpisodeInput):
                        total += got.table.num_rows
                        yield episode_item(got, options, lambda p: None)
                    else:
                        yield got
                said = _attr(f["data"], "total")
                if isinstance(said, int | np.integer) and int(said) != total:
                    yield Bad(file, 0, code("totals_mismatch", f"{shown}: data.attrs['total'] says {int(said)} "
                                            f"frames, the demos that read hold {total}"), b"")
            elif "action" in f or "observations" in f:
                m = re.search(r"(\d+)(?=\D*$)", os.path.splitext(os.path.basename(file))[0])
                got = _demo(file, shown, int(m.group(1)) if m else 0, f, "aloha", f, {}, meter)
                yield episode_item(got, options, lambda p: None) if isinstance(got, EpisodeInput) else got
            else:
                yield Bad(file, 0, code("no_demos", f"{shown}: neither robomimic data/demo_N groups nor ALOHA "
                                        "action/observations datasets"), b"")


class Hdf5DemosReader:
    """robomimic / ALOHA HDF5 demonstrations: a file, or a folder of them."""

    name = "hdf5-demos"
    suffixes: tuple[str, ...] = SUFFIXES
    modality = "episode"
    reads_folders = True
    carries_media = True

    def detect(self, path: str, head_bytes: bytes) -> bool:
        if os.path.isfile(path):
            return head_bytes.startswith(_HDF5_MAGIC)
        if not os.path.isdir(path) or os.path.isfile(os.path.join(path, "meta", "info.json")):
            return False
        files = _files(path)
        others = [f for _, _, names in os.walk(path) for f in names
                  if not f.startswith(".") and not f.lower().endswith((*SUFFIXES, ".md", ".json", ".txt", ".yaml"))]
        return bool(files) and not others

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        try:
            import h5py  # noqa: F401
        except ImportError as exc:
            raise InvalidInput("reading HDF5 demonstrations needs h5py", hint="pip install h5py") from exc
        return read_hdf5(path, options, meter)

    def size(self, path: str) -> int:
        return sum(os.path.getsize(f) for f in _files(path))


register(Hdf5DemosReader())
