"""Thumbnails and previews of a listing's free sample: a grid page, cached server-side thumbnails.

Why server-side: a buyer deciding on an image set wants to see it, and sending full-size images
(or hour-long audio) to a catalog page is slow and leaks more than the provider chose to show. So
only the records of the listing's free sample (the provider set its size when publishing) are
shown, images and video first frames are scaled to at most :data:`THUMB_SIDE` pixels by Pillow,
and each thumbnail is made once per version and record and kept on disk under
``$CIYUAN_HOME/cache/thumbs/<version>/`` (versions never change, so neither do their thumbnails).
Audio (and short video) previews are the sample record's own bytes, up to :data:`MAX_PREVIEW_BYTES`.

Every tile shows its token count under the listing's schedule (e.g. ``qwen2-vl-image``), counted
from the record's probed facts exactly as a quote counts it.

Routes (public, like the listing page): ``GET /listings/{id}/thumbs`` (the grid),
``GET /listings/{id}/thumbs/{n}.webp`` and ``GET /listings/{id}/preview/{n}``.
"""

from __future__ import annotations

import html
import io
import json
import os
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response

from ciyuan.config import Settings, settings
from ciyuan.errors import CiyuanError, InvalidInput, NotFound

router = APIRouter(include_in_schema=False)  # pages and images, like the other web routes: not part of the JSON API

THUMB_SIDE = 256
MAX_PREVIEW_BYTES = 20 << 20
ID = r"^[A-Za-z0-9_\-]{1,40}$"
_HEADERS = {"Cache-Control": "public, max-age=86400, immutable", "X-Content-Type-Options": "nosniff"}
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp", "wav": "audio/wav",
         "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg", "opus": "audio/ogg", "m4a": "audio/mp4",
         "mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm"}  # fmt: skip


def _settings(request: Request) -> Settings:
    return getattr(request.app.state, "settings", None) or settings()


def sample_media(s: Settings, listing_id: str) -> tuple[Any, list[dict]]:
    """The listing row and its sample records with their bytes and token counts under its schedule.

    The sample is the version's first records (as stored at publishing), so reading them takes the
    first row groups only.
    """
    from ciyuan.db import tx
    from ciyuan.market.listings import get_listing
    from ciyuan.store import resolve
    from ciyuan.tokens import get_schedule

    row = tx.run(lambda sess: get_listing(sess, listing_id), s)
    sample = json.loads(row.sample or "[]")
    want = {r["id"]: i for i, r in enumerate(sample)}
    found: dict[str, dict] = {}
    if want:
        v = resolve(f"{row.dataset}@{row.version_id}", s)
        for batch in v.iter_batches(["id", "modality", "text", "media", "media_ref", "meta"], batch_size=64):
            for rec in batch.to_pylist():
                if rec["id"] in want and rec["id"] not in found:
                    rec["meta"] = json.loads(rec["meta"]) if rec.get("meta") else {}
                    found[rec["id"]] = rec
            if len(found) == len(want):
                break
    recs = [found.get(r["id"]) or {**r, "media": None} for r in sample]
    counts = get_schedule(row.schedule).count_records(recs) if recs else []
    for r, c in zip(recs, counts, strict=True):
        r["tokens"] = int(c)
    return row, recs


def _record(s: Settings, listing_id: str, n: int) -> tuple[Any, dict]:
    row, recs = sample_media(s, listing_id)
    if not 0 <= n < len(recs):
        raise NotFound(f"listing {listing_id} has no sample record {n}",
                       hint=f"its sample has {len(recs)} records (0..{max(len(recs) - 1, 0)})")
    return row, recs[n]


def _cache_path(s: Settings, version_id: str, rec: dict) -> Path:
    key = (rec.get("meta") or {}).get("sha256") or rec["id"]
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in str(key))[:120]
    return Path(s.home) / "cache" / "thumbs" / version_id / f"{safe}-{THUMB_SIDE}.webp"


def make_thumbnail(rec: dict, side: int = THUMB_SIDE) -> bytes:
    """A WebP of at most ``side`` pixels a side: the image (EXIF-turned) or a video's first frame."""
    from PIL import Image, ImageOps

    data = rec.get("media")
    if not data:
        raise NotFound(f"sample record {rec.get('id')!r} has no inline bytes to show",
                       hint="media stored by reference is not previewed")
    if rec.get("modality") == "image":
        im = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    elif rec.get("modality") == "video":
        import av

        with av.open(io.BytesIO(data)) as c:
            frame = next(c.decode(video=0), None)
            if frame is None:
                raise InvalidInput(f"video {rec.get('id')!r} has no frame to show", hint="check the file")
            im = frame.to_image()
    else:
        raise InvalidInput(f"sample record {rec.get('id')!r} is {rec.get('modality')}, which has no thumbnail",
                           hint="audio has a preview: /preview/N")
    im.draft("RGB", (side, side))  # JPEG decodes at a reduced scale straight away
    im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    im.thumbnail((side, side))
    out = io.BytesIO()
    im.save(out, format="WEBP", quality=80)
    return out.getvalue()


def thumbnail(s: Settings, listing_id: str, n: int) -> bytes:
    """The cached thumbnail of sample record ``n``, made on first request."""
    row, rec = _record(s, listing_id, n)
    path = _cache_path(s, row.version_id, rec)
    if path.exists():
        return path.read_bytes()
    body = make_thumbnail(rec)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(body)
    os.replace(tmp, path)  # readers see the whole file or none
    return body


def _error(exc: CiyuanError) -> Response:
    body = {"error": {"code": exc.code, "message": str(exc), "hint": getattr(exc, "hint", "")}}
    return Response(json.dumps(body), status_code=exc.status, media_type="application/json")


@router.get("/listings/{listing_id}/thumbs/{n}.webp", response_model=None)
def thumb_route(request: Request, listing_id: str = PathParam(pattern=ID), n: int = PathParam(ge=0, le=10_000)
                ) -> Response:  # fmt: skip
    """A sample record's thumbnail (image, or a video's first frame), WebP, cached."""
    try:
        return Response(thumbnail(_settings(request), listing_id, n), media_type="image/webp", headers=_HEADERS)
    except CiyuanError as exc:
        return _error(exc)


@router.get("/listings/{listing_id}/preview/{n}", response_model=None)
def preview_route(request: Request, listing_id: str = PathParam(pattern=ID), n: int = PathParam(ge=0, le=10_000)
                  ) -> Response:  # fmt: skip
    """A sample record's own bytes (for the page's audio and video players), with its media type."""
    try:
        _row, rec = _record(_settings(request), listing_id, n)
        data = rec.get("media")
        if rec.get("modality") not in ("image", "audio", "video") or not data:
            raise NotFound(f"sample record {n} has no inline media", hint="text records have no preview")
        if len(data) > MAX_PREVIEW_BYTES:
            raise InvalidInput(f"sample record {n} is {len(data):,} bytes, above the preview limit",
                               hint=f"previews are at most {MAX_PREVIEW_BYTES:,} bytes")
        fmt = str(((rec.get("meta") or {}).get(rec["modality"]) or {}).get("format") or "")
        mime = _MIME.get(fmt, "application/octet-stream")
        return Response(data, media_type=mime, headers=_HEADERS)
    except CiyuanError as exc:
        return _error(exc)


def grid_html(listing: Any, recs: list[dict], lang: str) -> str:
    """The grid page: one tile per sample record, its thumbnail or player, id and token count."""
    from ciyuan.i18n import Translator

    t = Translator(lang)
    e = html.escape
    base = f"/listings/{e(listing.id)}"
    tiles = []
    for i, r in enumerate(recs):
        mod = r.get("modality") or "text"
        facts = (r.get("meta") or {}).get(mod) or {}
        if not r.get("media"):
            body = f'<div class="ph">{e((r.get("text") or "")[:120]) or e(mod)}</div>'
        elif mod == "image":
            body = f'<img src="{base}/thumbs/{i}.webp" alt="{e(str(r["id"]))}" loading="lazy">'
        elif mod == "video":
            body = (f'<video controls preload="none" poster="{base}/thumbs/{i}.webp" '
                    f'src="{base}/preview/{i}"></video>')
        elif mod == "audio":
            body = f'<audio controls preload="none" src="{base}/preview/{i}"></audio>'
        else:
            body = f'<div class="ph">{e((r.get("text") or "")[:120])}</div>'
        size = (f"{facts['width']}×{facts['height']}" if facts.get("width") else
                f"{facts['duration_s']:.1f} s" if isinstance(facts.get("duration_s"), int | float) else "")
        tiles.append(f'<figure class="tile" data-testid="tile">{body}<figcaption><span translate="no">'
                     f'{e(str(r["id"]))}</span> · {e(size)}<br><b data-testid="tile-tokens">{r["tokens"]:,}</b> '
                     f'{e(t("tokens"))} ({e(listing.schedule)})</figcaption></figure>')
    title = f"{t('sample')} · {listing.dataset}"
    return (f'<!doctype html><html lang="{"zh-CN" if t.lang == "zh" else "en"}"><head><meta charset="utf-8">'
            f"<title>{e(title)}</title><style>body{{font-family:sans-serif;margin:1.5em}}"
            f".grid{{display:flex;flex-wrap:wrap;gap:12px}}.tile{{width:{THUMB_SIDE}px;margin:0}}"
            f".tile img,.tile video{{max-width:{THUMB_SIDE}px;max-height:{THUMB_SIDE}px}}.tile audio{{width:100%}}"
            f".ph{{height:96px;background:#f3f3f3;font-size:12px;padding:6px;overflow:hidden}}"
            f"figcaption{{font-size:12px}}</style></head><body><h1>{e(title)}</h1>"
            f'<p><a href="{base}">{e(t("back"))}</a></p><div class="grid">{"".join(tiles)}</div></body></html>')


@router.get("/listings/{listing_id}/thumbs", response_class=HTMLResponse)
def grid_route(request: Request, listing_id: str = PathParam(pattern=ID)) -> Response:
    """The thumbnail grid of a listing's free sample, with each record's token count."""
    from ciyuan.web.routes import pick_lang

    try:
        row, recs = sample_media(_settings(request), listing_id)
    except CiyuanError as exc:
        return _error(exc)
    return HTMLResponse(grid_html(row, recs, pick_lang(request)))
