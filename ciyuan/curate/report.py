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

# Every string the HTML report shows, in one place (so it can be translated as a whole).
STRINGS: dict[str, str] = {
    "title": "Curation report",
    "from_parent": "from parent",
    "with_recipe": "with recipe",
    "kept_records": "Kept {kept} records ({tokens} {tokenizer} tokens); rejected {rejected}",
    "listed_by": "listed by",
    "steps": "Steps",
    "step": "step",
    "seen": "seen",
    "kept": "kept",
    "rejected": "rejected",
    "changed": "changed",
    "tokens_removed": "tokens removed",
    "rejected_by_code": "rejected by code",
    "tokens_note": "Tokens removed by a step that rewrites text are estimated from the share of characters "
    "removed; the version's token totals are exact.",
    "by_language": "Rejections by language",
    "language": "language",
    "records": "records",
    "keep_rate": "keep rate",
    "top_codes": "top rejection codes",
    "by_language_note": "Language as the langid step detected it (unknown: no langid step ran). A rule that "
    "rejects one language far more often than another is a rule to check.",
    "kept_data": "Kept data",
    "tokens_per_record": "tokens per record",
    "quality_chart": "quality score (share of rules passed)",
    "languages": "languages",
    "pii": "PII redacted",
    "pii_chart": "matches by type",
    "no_pii": "No PII found.",
    "clusters": "Largest duplicate clusters",
    "cluster_head": "{cluster} — {size} records, kept",
    "no_clusters": "No near-duplicate clusters.",
    "no_data": "no data",
}


def t(key: str, **kw: object) -> str:
    """A report string, formatted."""
    return STRINGS[key].format(**kw) if kw else STRINGS[key]


def build_report(ref: str) -> dict:
    """Per-step statistics from the manifest plus distributions read from the kept records."""
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
    for rec in v.iter_records(columns=["meta", *([f"tokens__{tok}"] if tok else [])]):
        meta = rec.get("meta") or {}
        if tok:
            token_lengths.append(int((rec.get("tokens") or {}).get(tok) or 0))
        if "quality_score" in meta:
            quality.append(float(meta["quality_score"]))
        languages[meta.get("language", "unknown")] += 1
    by_lang: dict[str, dict] = {lang: {"kept": n, "rejected": 0, "by_code": Counter()} for lang, n in languages.items()}
    for rec in v.iter_records(columns=["meta", "step", "reason"], partition="rejected"):
        meta = rec.get("meta") or {}
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
    pii: Counter = Counter()
    clusters, examples = [], {}
    for s in steps:
        if s["step"] == "pii":
            pii.update(s.get("counters", {}))
        extra = s.get("extra") or {}
        clusters += extra.get("largest_clusters", [])
        examples.update(extra.get("examples", {}))
    for c in clusters:
        c["examples"] = [{"id": m, "text": examples.get(m, "")} for m in c.get("members", [])[:3]]
    made = v.manifest.get("made_by", {})
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
        "token_lengths": _histogram(token_lengths, log=True),
        "quality_scores": _histogram(quality, lo=0.0, hi=1.0, bins=10),
        "languages": dict(languages.most_common(15)),
        "rejections_by_language": rejections_by_language,
        "pii": dict(sorted(pii.items())),
        "duplicate_clusters": sorted(clusters, key=lambda c: -c["size"])[:10],
    }


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


def _bars(labels: list[str], values: list[float], title: str, color: str = "#3b6ea5") -> str:
    """A horizontal bar chart as inline SVG."""
    if not values:
        return f"<p><em>{html.escape(title)}: {t('no_data')}</em></p>"
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
        parts.append(f'<text x="{left - 6}" y="{y + 13}" text-anchor="end">{html.escape(str(lab))}</text>')
        parts.append(f'<rect x="{left}" y="{y + 2}" width="{bw:.1f}" height="{row - 5}" fill="{color}"/>')
        parts.append(f'<text x="{left + bw + 4:.1f}" y="{y + 13}">{val:g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _hist_chart(h: dict, title: str) -> str:
    e, c = h.get("edges", []), h.get("counts", [])
    labels = [f"{e[i]}–{e[i + 1]}" for i in range(len(c))]
    return _bars(labels, c, title, "#5a9e6f")


def render_html(rep: dict) -> str:
    esc = html.escape
    rows = []
    for s in rep["steps"]:
        codes = s.get("rejected_by_code") or {rejection_code(s["step"], r): n for r, n in s["rejected_by_rule"].items()}
        reasons = ", ".join(f"<code>{esc(k)}</code>: {v}" for k, v in codes.items())
        rows.append(
            f"<tr><td>{esc(s['step'])}</td><td>{s['seen']}</td><td>{s['kept']}</td><td>{s['rejected']}</td>"
            f"<td>{s['changed']}</td><td>{s['tokens_removed']}</td><td class=r>{reasons}</td></tr>"
        )
    lang_rows = []
    for lang, d in (rep.get("rejections_by_language") or {}).items():
        top = ", ".join(f"<code>{esc(k)}</code>: {v}" for k, v in list(d["rejected_by_code"].items())[:4])
        rate = f"{d['keep_rate']:.0%}" if d["keep_rate"] is not None else "-"
        lang_rows.append(
            f"<tr><td>{esc(lang)}</td><td>{d['records']}</td><td>{d['kept']}</td><td>{d['rejected']}</td>"
            f"<td>{rate}</td><td class=r>{top}</td></tr>"
        )
    clusters = []
    for c in rep["duplicate_clusters"]:
        ex = "".join(f"<li><code>{esc(x['id'])}</code> {esc(x['text'][:200])}</li>" for x in c["examples"])
        head = esc(t("cluster_head", cluster=c["cluster"], size=c["size"]))
        clusters.append(f"<h3>{head} <code>{esc(c['keeper'])}</code></h3><ul>{ex}</ul>")
    pii = rep["pii"]
    ref = f"{esc(rep['dataset'])}@{esc(rep['version'][:12])}"
    sha = esc(str(rep["recipe_sha256"])[:16])
    kept_line = esc(
        t("kept_records", kept=rep["kept"], tokens=rep["tokens"], tokenizer=rep["tokenizer"], rejected=rep["rejected"])
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(t("title"))} {ref}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child,td.r,th.r{{text-align:left}} svg{{font-size:12px;display:block;margin:1em 0}}
code{{background:#f3f3f3;padding:0 3px}} li{{margin:.3em 0}}
</style></head><body>
<h1>{esc(t("title"))}</h1>
<p><b>{ref}</b> {esc(t("from_parent"))} <code>{esc((rep["parent"] or "-")[:12])}</code>
{esc(t("with_recipe"))} <b>{esc(str(rep["recipe"]))}</b> (sha256 <code>{sha}…</code>).<br>
{kept_line} ({esc(t("listed_by"))} <code>ciyuan show {ref} --rejected --reason CODE</code>).</p>
<h2>{esc(t("steps"))}</h2>
<table><tr><th>{esc(t("step"))}</th><th>{esc(t("seen"))}</th><th>{esc(t("kept"))}</th><th>{esc(t("rejected"))}</th>
<th>{esc(t("changed"))}</th><th>{esc(t("tokens_removed"))}</th><th class=r>{esc(t("rejected_by_code"))}</th></tr>
{"".join(rows)}</table>
<p><small>{esc(t("tokens_note"))}</small></p>
<h2>{esc(t("by_language"))}</h2>
<table><tr><th>{esc(t("language"))}</th><th>{esc(t("records"))}</th><th>{esc(t("kept"))}</th><th>{esc(t("rejected"))}</th>
<th>{esc(t("keep_rate"))}</th><th class=r>{esc(t("top_codes"))}</th></tr>{"".join(lang_rows)}</table>
<p><small>{esc(t("by_language_note"))}</small></p>
<h2>{esc(t("kept_data"))}</h2>
{_hist_chart(rep["token_lengths"], t("tokens_per_record"))}
{_hist_chart(rep["quality_scores"], t("quality_chart"))}
{_bars(list(rep["languages"]), list(rep["languages"].values()), t("languages"))}
<h2>{esc(t("pii"))}</h2>
{_bars(list(pii), list(pii.values()), t("pii_chart"), "#a5563b") if pii else f"<p>{esc(t('no_pii'))}</p>"}
<h2>{esc(t("clusters"))}</h2>
{"".join(clusters) or f"<p>{esc(t('no_clusters'))}</p>"}
<script type="application/json" id="data">{esc(json.dumps(rep, ensure_ascii=False, default=str))}</script>
</body></html>
"""
