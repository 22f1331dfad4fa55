"""The dataset page of a robot-episode listing: per-episode rows, state and action over time, camera frames.

Why these three: a buyer of demonstrations wants to know what was done (task), how long and how
well (length, success), what the robot's numbers look like, and what its cameras saw. The rows come
from the listing's selection index (every episode, the facts measured at import, the same columns a
quote filters on); the plot and the frames show the first episode of the listing's free sample, so
nothing outside what the provider chose to show is drawn. The plot is inline SVG
(:func:`ciyuan.web.charts.lines`); the frame strip is one WebP per camera made server-side with
PyAV (or from the stored pixels of HDF5 image cameras) and cached under
``$CIYUAN_HOME/cache/thumbs/<version>/`` like the sample thumbnails.

Route (public, like the listing page): ``GET /listings/{id}/episodes/{n}/strip/{camera}.webp``,
``n`` the sample record, ``camera`` the camera's position in the episode's sorted camera keys.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from ciyuan.config import Settings
from ciyuan.errors import CiyuanError, InvalidInput, NotFound
from ciyuan.web import charts

router = APIRouter(include_in_schema=False)

ROWS = 50  # episodes listed on the page (the total is said)
STRIP_FRAMES = 6
STRIP_SIDE = 112
ID = r"^[A-Za-z0-9_\-]{1,64}$"
_HEADERS = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}


def is_episodes(detail: dict) -> bool:
    return "episode" in (detail.get("modalities") or []) or any(
        r.get("modality") == "episode" for r in detail.get("sample") or [])


def episode_rows(s: Settings, listing_id: str, limit: int = ROWS) -> tuple[list[dict], int]:
    """The first ``limit`` episodes (index, task, length, success) and how many there are."""
    from ciyuan.db import tx
    from ciyuan.market.listings import get_listing
    from ciyuan.market.selection import META, load_index

    row = tx.run(lambda sess: get_listing(sess, listing_id), s)
    index = load_index(row.index_location)
    head = index.slice(0, limit)

    def col(key: str) -> list[Any]:
        name = META + key
        return head.column(name).to_pylist() if name in head.column_names else [None] * head.num_rows

    cols = {k: col(k) for k in ("episode.episode_index", "task", "episode.length", "episode.fps", "success",
                                "episode.success", "robot_type")}
    tokens = head.column("tokens").to_pylist()
    out = []
    for i in range(head.num_rows):
        length, fps = cols["episode.length"][i], cols["episode.fps"][i]
        won = cols["success"][i] if cols["success"][i] is not None else cols["episode.success"][i]
        out.append({"episode": cols["episode.episode_index"][i], "task": cols["task"][i], "length": length,
                    "seconds": (length / fps) if length and fps else None, "success": won,
                    "robot_type": cols["robot_type"][i], "tokens": tokens[i]})
    return out, index.num_rows


def _sample_episode(s: Settings, listing_id: str, n: int) -> tuple[Any, dict]:
    """Sample record ``n`` of the listing with its frame-table bytes, if it is an episode."""
    import json

    from ciyuan.db import tx
    from ciyuan.market.listings import get_listing
    from ciyuan.store import resolve

    row = tx.run(lambda sess: get_listing(sess, listing_id), s)
    sample = json.loads(row.sample or "[]")
    if not 0 <= n < len(sample) or sample[n].get("modality") != "episode":
        raise NotFound(f"listing {listing_id} has no sample episode {n}",
                       hint=f"its sample has {len(sample)} records")
    want = sample[n]["id"]
    for rec in resolve(f"{row.dataset}@{row.version_id}", s).iter_records(resolve_media=True):
        if rec.get("id") == want:
            return row, rec
    raise NotFound(f"sample episode {want!r} is not in the listed version", hint="republish the listing")


def _vectors(table: Any, names: list[str]) -> list[tuple[str, np.ndarray]]:
    """Each named column as per-dimension series (``action[0]`` ...), for the plot."""
    from ciyuan.ingest.readers.episode import leaf

    out = []
    n = table.num_rows
    for name in names:
        flat, _ = leaf(table.column(name))
        vals = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float64)
        if not n or vals.size % n:
            continue
        vals = vals.reshape(n, -1)
        for d in range(vals.shape[1]):
            out.append((f"{name}[{d}]" if vals.shape[1] > 1 else name, vals[:, d]))
    return out


def sample_view(s: Settings, listing_id: str, detail: dict, t: Any) -> dict | None:
    """The plot of state and action over time and the camera keys of the first sample episode."""
    from ciyuan.ingest.readers.episode import read_table, role

    sample = detail.get("sample") or []
    first = next((i for i, r in enumerate(sample) if r.get("modality") == "episode"), None)
    if first is None:
        return None
    try:
        _row, rec = _sample_episode(s, listing_id, first)
    except CiyuanError:
        return None
    ep = (rec.get("meta") or {}).get("episode") or {}
    if not rec.get("media"):
        return None
    table = read_table(rec["media"])
    fps = float(ep.get("fps") or 0) or 1.0
    x = (np.asarray(table.column("timestamp").to_numpy(zero_copy_only=False), dtype=np.float64)
         if "timestamp" in table.column_names else np.arange(table.num_rows) / fps)
    feats = ep.get("features") or {}
    by_role: dict[str, list[str]] = {"state": [], "action": []}
    for name in table.column_names:
        r = (feats.get(name) or {}).get("role") or role(name)
        if r in by_role:
            by_role[r].append(name)
    plots = []
    for kind in ("state", "action"):
        series = _vectors(table, by_role[kind])
        if series:
            title = t("ep_plot_" + kind)
            plots.append({"kind": kind, "svg": charts.lines(x, series, title, xlabel=t("ep_time_s"),
                                                            ylabel=", ".join(by_role[kind])),
                          "dims": len(series)})
    cams = sorted((ep.get("cameras") or {}).items())
    task = (rec.get("meta") or {}).get("task")
    return {"n": first, "id": rec.get("id"), "episode": ep.get("episode_index"), "task": task,
            "length": ep.get("length"), "plots": plots,
            "cameras": [(i, key, c.get("width"), c.get("height"), c.get("codec")) for i, (key, c) in enumerate(cams)]}


def page(s: Settings, listing_id: str, detail: dict, t: Any) -> dict | None:
    """Everything the listing page shows of an episode listing, or None for other listings."""
    if not is_episodes(detail):
        return None
    rows, total = episode_rows(s, listing_id)
    return {"rows": rows, "total": total, "sample": sample_view(s, listing_id, detail, t)}


def _picks(count: int, k: int = STRIP_FRAMES) -> list[int]:
    if count <= 0:
        return []
    return sorted({round(i * (count - 1) / max(k - 1, 1)) for i in range(min(k, count))})


def _video_frames(data: bytes, cam: dict) -> list[Any]:
    """Evenly spaced frames of the episode's range of a video file (a v3.0 file holds many episodes)."""
    import av

    start = float(cam.get("from_s") or 0.0)
    end = cam.get("to_s")
    fps = float(cam.get("fps") or 0) or 30.0
    want = set(_picks(int(cam.get("frames") or 0)))
    got = []
    with av.open(io.BytesIO(data)) as c:
        vs = c.streams.video[0]
        if start > 0 and vs.time_base:
            c.seek(int(start / vs.time_base), stream=vs, backward=True)
        k = 0
        for frame in c.decode(vs):
            t = float(frame.time or 0.0)
            if t < start - 0.5 / fps:
                continue
            if end is not None and t >= float(end) - 0.5 / fps:
                break
            if k in want:
                got.append(frame.to_image())
            k += 1
            if k > max(want, default=-1):
                break
    return got


def _raw_frames(data: bytes, cam: dict) -> list[Any]:
    """HDF5 image cameras: the stored ``N x H x W x C`` pixels."""
    from PIL import Image

    w, h, n = int(cam["width"]), int(cam["height"]), int(cam.get("frames") or 0)
    if not n or len(data) % (n * w * h):
        raise InvalidInput("the camera's stored pixels do not divide into its frames", hint="re-import")
    arr = np.frombuffer(data, np.uint8).reshape(n, h, w, -1)
    return [Image.fromarray(arr[i] if arr.shape[3] != 1 else arr[i, :, :, 0]) for i in _picks(n)]


def _jpeg_rows(data: bytes, cam: dict) -> list[Any]:
    """ALOHA ``compress=True`` cameras: one zero-padded JPEG a row, all rows the same length."""
    from PIL import Image

    n = int(cam.get("frames") or 0)
    if not n or len(data) % n:
        raise InvalidInput("the camera's stored JPEG rows do not divide into its frames", hint="re-import")
    row = len(data) // n
    return [Image.open(io.BytesIO(data[i * row:(i + 1) * row])) for i in _picks(n)]


def make_strip(rec: dict, camera: int, s: Settings | None = None) -> bytes:
    """One WebP of up to :data:`STRIP_FRAMES` frames of a camera, side by side."""
    from PIL import Image

    from ciyuan.store.blobs import BlobStore, digest_of

    meta = rec.get("meta") or {}
    cams = sorted(((meta.get("episode") or {}).get("cameras") or {}).items())
    if not 0 <= camera < len(cams):
        raise NotFound(f"episode {rec.get('id')!r} has no camera {camera}", hint=f"it has {len(cams)} cameras")
    key, cam = cams[camera]
    ref = ((meta.get("attachments") or {}).get(key) or {}).get("media_ref")
    if not ref:
        raise NotFound(f"camera {key!r} has no stored video", hint="the episode was imported without it")
    data = BlobStore(s=s).get(digest_of(ref))
    if cam.get("format") == "array" and cam.get("codec") == "raw":
        frames = _raw_frames(data, cam)
    elif cam.get("format") == "array" and cam.get("codec") == "jpeg-padded":
        frames = _jpeg_rows(data, cam)
    elif cam.get("format") == "array":
        raise InvalidInput(f"camera {key!r} is stored as {cam.get('codec')}",
                           hint="only videos and raw pixels are shown")
    else:
        frames = _video_frames(data, cam)
    if not frames:
        raise InvalidInput(f"camera {key!r} has no frame to show", hint="check the video")
    tiles = []
    for im in frames:
        im = im.convert("RGB")
        im.thumbnail((STRIP_SIDE, STRIP_SIDE))
        tiles.append(im)
    h = max(t.height for t in tiles)
    strip = Image.new("RGB", (sum(t.width for t in tiles) + 2 * (len(tiles) - 1), h), (255, 255, 255))
    x = 0
    for im in tiles:
        strip.paste(im, (x, 0))
        x += im.width + 2
    out = io.BytesIO()
    strip.save(out, format="WEBP", quality=80)
    return out.getvalue()


def strip(s: Settings, listing_id: str, n: int, camera: int) -> bytes:
    row, rec = _sample_episode(s, listing_id, n)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(rec.get("id")))[:100]
    path = Path(s.home) / "cache" / "thumbs" / row.version_id / f"ep-{safe}-{camera}-{STRIP_SIDE}.webp"
    if path.exists():
        return path.read_bytes()
    body = make_strip(rec, camera, s)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)
    return body


@router.get("/listings/{listing_id}/episodes/{n}/strip/{camera}.webp", response_model=None)
def strip_route(request: Request, listing_id: str = PathParam(pattern=ID), n: int = PathParam(ge=0, le=10_000),
                camera: int = PathParam(ge=0, le=64)) -> Response:
    """A strip of camera frames of a sample episode, WebP, cached."""
    import json

    from ciyuan.config import settings

    s = getattr(request.app.state, "settings", None) or settings()
    try:
        return Response(strip(s, listing_id, n, camera), media_type="image/webp", headers=_HEADERS)
    except CiyuanError as exc:
        body = {"error": {"code": exc.code, "message": str(exc), "hint": getattr(exc, "hint", "")}}
        return Response(json.dumps(body), status_code=exc.status, media_type="application/json")
