"""The curation report of a version: what each step did, and what the kept data looks like.

The HTML is one self-contained file (inline CSS and SVG, no executable script, no CDN; the data
rides along as JSON) so a provider can open it offline or attach it to a listing.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter

from ciyuan.curate.codes import rejection_code
from ciyuan.errors import InvalidInput

# Strings of this report that the shared web table (ciyuan.web.i18n) does not carry yet; same
# placeholders in both languages. A key found there wins, so moving them over changes nothing.
_OWN_STRINGS = {
    "en": {
        "cr_not_applicable": "Not applicable",
        "cr_not_applicable_note": "Not applicable: records of a modality the step does not apply to "
        "(for example images at a text step) pass it untouched; they are neither kept nor rejected by it.",
    },
    "zh": {
        "cr_not_applicable": "不适用",
        "cr_not_applicable_note": "不适用：步骤不处理的模态的记录（例如文本步骤遇到的图像）原样通过，"
        "既不算保留也不算拒绝。",
    },
}


THUMB_PAIRS = 24  # removed near duplicates shown with thumbnails beside what they duplicate
THUMB_PX = 96


def build_report(ref: str, thumbnails: bool = True) -> dict:
    """Per-step statistics from the manifest plus distributions read from the kept records.

    With ``thumbnails``, ``thumbnails`` maps the ids of the first removed near-duplicate images and
    videos (and of what they duplicate) to small JPEG data URIs, for the HTML page only.
    """
    from ciyuan.store import resolve

    v = resolve(ref)
    cur = (v.manifest.get("extra") or {}).get("curation")
    if not cur:
        raise InvalidInput(
            f"{v.ref} was not made by curation", hint=f"run: ciyuan curate {v.ref} --recipe text-pretrain"
        )
    tok = v.tokenizers[0] if v.tokenizers else None
    token_lengths: list[int] = []
    quality: list[float] = []
    languages: Counter = Counter()
    modalities: Counter = Counter()  # kept records by modality: which sections of the page apply
    for rec in v.iter_records(columns=["modality", "meta", *([f"tokens__{tok}"] if tok else [])]):
        meta = rec.get("meta") or {}
        modalities[rec.get("modality") or "text"] += 1
        if tok:
            token_lengths.append(int((rec.get("tokens") or {}).get(tok) or 0))
        if "quality_score" in meta:
            quality.append(float(meta["quality_score"]))
        languages[meta.get("language", "unknown")] += 1
    by_lang: dict[str, dict] = {lang: {"kept": n, "rejected": 0, "by_code": Counter()} for lang, n in languages.items()}
    rejected_modalities: Counter = Counter()
    for rec in v.iter_records(columns=["modality", "meta", "step", "reason"], partition="rejected"):
        meta = rec.get("meta") or {}
        rejected_modalities[rec.get("modality") or "text"] += 1
        lang = meta.get("language", "unknown")
        cur_meta = meta.get("curation") or {}
        step = (rec.get("_rejected") or {}).get("step") or "?"
        code = cur_meta.get("rejected_code") or rejection_code(step, cur_meta.get("rejected_rule"))
        d = by_lang.setdefault(lang, {"kept": 0, "rejected": 0, "by_code": Counter()})
        d["rejected"] += 1
        d["by_code"][code] += 1
    rejections_by_language = {
        lang: {
            "records": d["kept"] + d["rejected"],
            "kept": d["kept"],
            "rejected": d["rejected"],
            "keep_rate": round(d["kept"] / (d["kept"] + d["rejected"]), 4) if d["kept"] + d["rejected"] else None,
            "rejected_by_code": dict(d["by_code"].most_common()),
        }
        for lang, d in sorted(by_lang.items(), key=lambda kv: -(kv[1]["kept"] + kv[1]["rejected"]))
    }
    steps = cur["steps"]
    for s in steps:  # versions curated before codes existed: derive them from the rules
        s.setdefault("rejected_by_code", {rejection_code(s["step"], r): n for r, n in s["rejected_by_rule"].items()})
        s.setdefault("not_applicable", 0)  # ... and before steps declared their modalities
        s.setdefault("not_applicable_by_modality", {})
    steps = cur["steps"]
    pii: Counter = Counter()
    clusters, examples = [], {}
    for s in steps:
        if s["step"] == "pii":
            pii.update(s.get("counters", {}))
        extra = s.get("extra") or {}
        clusters += extra.get("largest_clusters", [])
        examples.update(extra.get("examples", {}))
    media_dups, hash_hist = _media_duplicates(steps)
    for c in clusters:
        c["examples"] = [{"id": m, "text": examples.get(m, "")} for m in c.get("members", [])[:3]]
    made = v.manifest.get("made_by", {})
    thumbs = _thumbnails(v, media_dups["pairs"][:THUMB_PAIRS]) if thumbnails else {}
    return {
        "dataset": v.dataset,
        "version": v.id,
        "parent": v.parent,
        "recipe": made.get("recipe", {}).get("name"),
        "recipe_sha256": made.get("recipe_sha256"),
        "kept": v.records,
        "rejected": v.manifest["totals"]["rejected"],
        "tokenizer": tok,
        "tokens": v.manifest["totals"]["tokens"].get(tok, 0) if tok else 0,
        "steps": steps,
        "modalities": {"kept": dict(modalities.most_common()), "rejected": dict(rejected_modalities.most_common())},
        "sections": _sections(modalities + rejected_modalities, media_dups, hash_hist),
        "token_lengths": _histogram(token_lengths, log=True),
        "quality_scores": _histogram(quality, lo=0.0, hi=1.0, bins=10),
        "languages": dict(languages.most_common(15)),
        "rejections_by_language": rejections_by_language,
        "pii": dict(sorted(pii.items())),
        "duplicate_clusters": sorted(clusters, key=lambda c: -c["size"])[:10],
        "media_near_duplicates": media_dups,
        "hash_distance_histogram": hash_hist,
        "thumbnails": thumbs,
    }


def _thumbnails(v, pairs: list[dict]) -> dict[str, str]:
    """Small JPEG data URIs of the images and videos (their first frame) that ``pairs`` name.

    Reads the kept and the rejected partitions once each, a batch at a time, and stops as soon as
    every wanted record was seen; a record whose bytes do not decode simply gets no thumbnail.
    """
    want = {p[k] for p in pairs if p.get("modality") in ("image", "video") for k in ("removed", "kept")}
    out: dict[str, str] = {}
    for partition in ("shards", "rejected"):
        if not want - set(out):
            break
        for rec in v.iter_records(columns=["id", "modality", "media"], partition=partition):
            if rec["id"] in want and rec["id"] not in out and rec.get("media"):
                uri = _thumb(rec["modality"], rec["media"])
                if uri:
                    out[rec["id"]] = uri
                if not want - set(out):
                    break
    return out


def _thumb(modality: str, data: bytes) -> str | None:
    import base64
    import io

    from PIL import Image

    try:
        if modality == "video":
            import av

            with av.open(io.BytesIO(data)) as c:
                im = next(c.decode(video=0)).to_image()
        else:
            im = Image.open(io.BytesIO(data))
            im.draft("RGB", (THUMB_PX * 2, THUMB_PX * 2))
        im = im.convert("RGB")
        im.thumbnail((THUMB_PX, THUMB_PX))
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=70)
    except Exception:  # noqa: BLE001 - a thumbnail is decoration: no picture rather than no report
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _media_duplicates(steps: list[dict]) -> tuple[dict, dict]:
    """Removed near-duplicate media beside what they duplicate, and the hash-distance histograms,
    from the statistics of each ``media_near_dedup`` step (written by its plan)."""
    dups: dict = {"threshold": None, "removed": 0, "pairs": []}
    hist: dict = {}
    for s in steps:
        extra = s.get("extra") or {}
        nd = extra.get("near_duplicates")
        if not nd:
            continue
        dups["threshold"] = nd.get("threshold")
        dups["removed"] += int(nd.get("removed") or 0)
        dups["pairs"] += [dict(p, step=s["step"]) for p in nd.get("pairs", [])]
        for modality, h in (extra.get("distance_histogram") or {}).items():
            hist[modality] = dict(h, threshold=nd.get("threshold"), step=s["step"])
    return dups, hist


def _histogram(
    values: list[float], lo: float | None = None, hi: float | None = None, bins: int = 12, log: bool = False
) -> dict:
    if not values:
        return {"edges": [], "counts": []}
    f = (lambda x: math.log10(max(x, 1))) if log else (lambda x: x)
    a = f(min(values)) if lo is None else lo
    b = f(max(values)) if hi is None else hi
    if b <= a:
        b = a + 1
    counts = [0] * bins
    for x in values:
        i = min(bins - 1, max(0, int((f(x) - a) / (b - a) * bins)))
        counts[i] += 1
    edges = [a + (b - a) * i / bins for i in range(bins + 1)]
    edges = [round(10**e) for e in edges] if log else [round(e, 3) for e in edges]
    return {"edges": edges, "counts": counts}


def _bars(labels: list[str], values: list[float], title: str, color: str = "#3b6ea5", no_data: str = "no data",
          data_labels: bool = False) -> str:  # fmt: skip
    """A horizontal bar chart as inline SVG; ``data_labels`` marks the labels as data (codes, not words)."""
    if not values:
        return f"<p><em>{html.escape(title)}: {html.escape(no_data)}</em></p>"
    w, row, left = 560, 20, 150
    h = row * len(values) + 30
    top = max(values) or 1
    parts = [
        f'<svg width="{w}" height="{h}" role="img" aria-label="{html.escape(title)}">',
        f'<text x="0" y="14" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (lab, val) in enumerate(zip(labels, values, strict=True)):
        y = 24 + i * row
        bw = (w - left - 60) * val / top
        mark = ' translate="no"' if data_labels else ""
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end"{mark}>{html.escape(str(lab))}</text>')
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{bw:.1f}" height="{row - 5}" fill="{color}"/>')
        parts.append(f'<text x="{left + bw + 4:.1f}" y="{y + 13}">{val:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _hist_chart(h: dict, title: str, no_data: str = "no data") -> str:
    e, c = h.get("edges", []), h.get("counts", [])
    labels = [f"{e[i]}–{e[i + 1]}" for i in range(len(c))]
    return _bars(labels, c, title, "#5a9e6f", no_data)


TEXT_SECTIONS = ("by_language", "quality", "languages", "pii", "clusters")


def _sections(modalities: Counter, media_dups: dict, hash_hist: dict) -> list[str]:
    """The report's sections that apply: text ones when any record is text, media ones when any is media."""
    out = ["steps", "token_lengths"]
    if not modalities or modalities.get("text") or set(modalities) - {"image", "audio", "video"}:
        out += list(TEXT_SECTIONS)
    if set(modalities) & {"image", "audio", "video"}:
        out.append("media_kept")
    if media_dups.get("pairs") or hash_hist:
        out.append("media_duplicates")
    return out


def _media_html(rep: dict, t) -> str:
    """Removed near-duplicate media beside what they duplicate, then one distance histogram per modality."""
    dups = rep.get("media_near_duplicates") or {}
    hist = rep.get("hash_distance_histogram") or {}
    if not dups.get("pairs") and not hist:
        return ""
    esc = html.escape

    def mod(m: str) -> str:
        name = t("cr_modality_" + m)
        return name if name != "cr_modality_" + m else m

    thumbs = rep.get("thumbnails") or {}

    def cell(rid: str) -> str:
        img = f'<img src="{esc(thumbs[rid])}" alt="{esc(rid)}"><br>' if rid in thumbs else ""
        return f'<td translate="no">{img}<code>{esc(rid)}</code></td>'

    rows = "".join(
        f"<tr>{cell(p['removed'])}{cell(p['kept'])}<td>{esc(mod(p['modality']))}</td><td>{int(p['distance'])}</td></tr>"
        for p in dups.get("pairs", [])
    )
    parts = [f"<h2>{esc(t('cr_media_dups'))}</h2>"]
    if rows:
        parts.append(f"<p><small>{esc(t('cr_media_dups_note', threshold=dups.get('threshold')))}</small></p>")
        parts.append(
            f"<table class=dups><tr><th>{esc(t('cr_removed'))}</th><th>{esc(t('cr_duplicate_of'))}</th>"
            f"<th>{esc(t('cr_modality'))}</th><th>{esc(t('cr_distance'))}</th></tr>{rows}</table>"
        )
        more = int(dups.get("removed") or 0) - len(dups.get("pairs", []))
        if more > 0:
            parts.append(f"<p><small>{esc(t('cr_more_pairs', n=more, shown=len(dups['pairs'])))}</small></p>")
    else:
        parts.append(f"<p>{esc(t('cr_no_media_dups'))}</p>")
    for m, h in hist.items():
        title = t("cr_hash_hist", modality=mod(m))
        thr = h.get("threshold")
        labels = [f"{d}{' ≤' if thr is not None and d <= thr else ''}" for d in h.get("distances", [])]
        parts.append(_bars(labels, list(h.get("counts", [])), title, "#7a5aa5", t("cr_no_data")))
        note = t("cr_hash_hist_note", radius=len(h.get("counts", [])) - 1, threshold=thr)
        if h.get("sampled") is not None and h.get("records") and h["sampled"] < h["records"]:
            note += " " + t("cr_hash_hist_sampled", sampled=h["sampled"], records=h["records"])
        parts.append(f"<p><small>{esc(note)}</small></p>")
    return "\n".join(parts)


def render_html(rep: dict, lang: str = "en") -> str:
    """The report as one HTML page in English or Chinese (``lang``); rule codes and ids stay as they are."""
    from ciyuan.i18n import Translator

    shared = Translator(lang)
    own = _OWN_STRINGS.get(shared.lang, _OWN_STRINGS["en"])

    def t(key: str, **values: object) -> str:
        text = shared(key, **values)
        return own[key].format(**values) if text == key and key in own else text

    esc = html.escape

    def step_name(name: str) -> str:
        text = t("cr_step_" + name)
        return text if text != "cr_step_" + name else name

    rows = []
    for s in rep["steps"]:
        codes = s.get("rejected_by_code") or {rejection_code(s["step"], r): n for r, n in s["rejected_by_rule"].items()}
        reasons = ", ".join(f'<code translate="no">{esc(k)}</code>: {v}' for k, v in codes.items())
        na = s.get("not_applicable", 0)
        na_by = esc(", ".join(f"{m}: {n}" for m, n in (s.get("not_applicable_by_modality") or {}).items()))
        rows.append(
            f"<tr><td>{esc(step_name(s['step']))}</td><td>{s['seen']}</td><td>{s['kept']}</td><td>{s['rejected']}</td>"
            f'<td title="{na_by}" translate="no">{na}</td><td>{s["changed"]}</td><td>{s["tokens_removed"]}</td>'
            f"<td class=r>{reasons}</td></tr>"
        )
    lang_rows = []
    for code_lang, d in (rep.get("rejections_by_language") or {}).items():
        top = ", ".join(
            f'<code translate="no">{esc(k)}</code>: {v}' for k, v in list(d["rejected_by_code"].items())[:4]
        )
        rate = f"{d['keep_rate']:.0%}" if d["keep_rate"] is not None else "-"
        name = t("cr_lang_" + code_lang)
        name = name if name != "cr_lang_" + code_lang else code_lang
        lang_rows.append(
            f'<tr><td translate="no">{esc(name)}</td><td>{d["records"]}</td><td>{d["kept"]}</td>'
            f"<td>{d['rejected']}</td><td>{rate}</td><td class=r>{top}</td></tr>"
        )
    clusters = []
    for c in rep["duplicate_clusters"]:
        ex = "".join(
            f'<li><code translate="no">{esc(x["id"])}</code> <span translate="no">{esc(x["text"][:200])}</span></li>'
            for x in c["examples"]
        )
        head = t("cr_cluster", size=c["size"])
        clusters.append(
            f'<h3><span translate="no">{esc(c["cluster"])}</span> — {esc(head)} <code translate="no">{esc(c["keeper"])}'
            f"</code></h3><ul>{ex}</ul>"
        )
    media_html = _media_html(rep, t)
    text_part = _text_sections(rep, t, lang_rows, clusters)
    media_kept = _media_kept_html(rep, t)
    data = {k: v for k, v in rep.items() if k != "thumbnails"}  # the pictures are on the page already
    ref = f'{esc(rep["dataset"])}@{esc(rep["version"][:12])}'
    intro = t("cr_intro_kept", kept=rep["kept"], tokens=rep["tokens"], rejected=rep["rejected"])
    return f"""<!doctype html>
<html lang="{"zh-CN" if shared.lang == "zh" else "en"}"><head><meta charset="utf-8">
<title>{esc(t("cr_title"))} {ref}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child,td.r,th.r{{text-align:left}} th,td:nth-child(-n+7){{white-space:nowrap}}
svg{{font-size:12px;display:block;margin:1em 0}}
code{{background:#f3f3f3;padding:0 3px}} li{{margin:.3em 0}}
table.dups td{{text-align:center;vertical-align:bottom}} table.dups img{{max-width:96px;max-height:96px}}
</style></head><body>
<h1>{esc(t("cr_title"))}</h1>
<p><b translate="no">{ref}</b> · {esc(t("cr_parent"))} <code translate="no">{esc((rep["parent"] or "-")[:12])}</code>
· {esc(t("cr_recipe"))} <b translate="no">{esc(str(rep["recipe"]))}</b>
(<span translate="no">sha256 <code>{esc(str(rep["recipe_sha256"])[:16])}…</code></span>).<br>
{esc(intro)} <span class="small">({esc(t("counted_with"))}
<span translate="no">{esc(str(rep["tokenizer"]))}</span>)</span></p>
<h2>{esc(t("cr_steps"))}</h2>
<table><tr><th>{esc(t("cr_step"))}</th><th>{esc(t("cr_seen"))}</th><th>{esc(t("cr_kept"))}</th>
<th>{esc(t("cr_rejected"))}</th><th>{esc(t("cr_not_applicable"))}</th><th>{esc(t("cr_changed"))}</th>
<th>{esc(t("cr_tokens_removed"))}</th><th class=r>{esc(t("cr_by_rule"))}</th></tr>{"".join(rows)}</table>
<p><small>{esc(t("cr_tokens_note"))}</small></p>
<p><small>{esc(t("cr_not_applicable_note"))}</small></p>
{text_part}
{media_kept}
{media_html}
<script type="application/json" id="data">{esc(json.dumps(data, ensure_ascii=False, default=str))}</script>
</body></html>
"""


def _text_sections(rep: dict, t, lang_rows: list[str], clusters: list[str]) -> str:
    """Languages, text quality, PII and text duplicate clusters: only for versions with text records."""
    esc = html.escape
    pii = rep["pii"]
    nd = t("cr_no_data")
    sections = rep.get("sections")
    if sections is not None and "by_language" not in sections:
        return f"<h2>{esc(t('cr_kept_data'))}</h2>\n{_hist_chart(rep['token_lengths'], t('cr_tokens_per_record'), nd)}"
    return f"""<h2>{esc(t("cr_by_language"))}</h2>
<table><tr><th>{esc(t("cr_language"))}</th><th>{esc(t("cr_records"))}</th><th>{esc(t("cr_kept"))}</th>
<th>{esc(t("cr_rejected"))}</th><th>{esc(t("cr_keep_rate"))}</th><th class=r>{esc(t("cr_top_codes"))}</th></tr>
{"".join(lang_rows)}</table>
<p><small>{esc(t("cr_by_language_note"))}</small></p>
<h2>{esc(t("cr_kept_data"))}</h2>
{_hist_chart(rep["token_lengths"], t("cr_tokens_per_record"), nd)}
{_hist_chart(rep["quality_scores"], t("cr_quality_hist"), nd)}
{_bars(list(rep["languages"]), list(rep["languages"].values()), t("cr_languages"), no_data=nd, data_labels=True)}
<h2>{esc(t("cr_pii"))}</h2>
{_bars([t("cr_pii_" + k) if t("cr_pii_" + k) != "cr_pii_" + k else k for k in pii], list(pii.values()),
       t("cr_pii_by_type"), "#a5563b", nd) if pii else f"<p>{esc(t('cr_no_pii'))}</p>"}
<h2>{esc(t("cr_clusters"))}</h2>
{"".join(clusters) or f"<p>{esc(t('cr_no_clusters'))}</p>"}"""


def _media_kept_html(rep: dict, t) -> str:
    """Kept and rejected records by modality, for a version with media."""
    if "media_kept" not in (rep.get("sections") or []):
        return ""
    esc = html.escape
    mods = rep.get("modalities") or {}
    kept, rej = mods.get("kept") or {}, mods.get("rejected") or {}
    rows = "".join(f"<tr><td>{esc(t('cr_modality_' + m) if t('cr_modality_' + m) != 'cr_modality_' + m else m)}"
                   f"</td><td>{kept.get(m, 0)}</td><td>{rej.get(m, 0)}</td></tr>" for m in dict.fromkeys([*kept, *rej]))
    note = "" if "by_language" in rep["sections"] else f"<p><small>{esc(t('cr_media_only'))}</small></p>"
    return (f"<h2>{esc(t('cr_media_kept'))}</h2>{note}<table><tr><th>{esc(t('cr_modality'))}</th>"
            f"<th>{esc(t('cr_kept'))}</th><th>{esc(t('cr_rejected'))}</th></tr>{rows}</table>")
