"""The curation report of a version: what each step did, and what the kept data looks like.

The HTML is one self-contained file (inline CSS and SVG, no executable script, no CDN; the data
rides along as JSON) so a provider can open it offline or attach it to a listing.
"""

from __future__ import annotations

import html
import json
import math
from collections import Counter

from ciyuan.errors import InvalidInput


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
    steps = cur["steps"]
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
        return f"<p><em>{html.escape(title)}: no data</em></p>"
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
        reasons = ", ".join(f"{esc(k)}: {v}" for k, v in s.get("rejected_by_rule", {}).items())
        rows.append(
            f"<tr><td>{esc(s['step'])}</td><td>{s['seen']}</td><td>{s['kept']}</td><td>{s['rejected']}</td>"
            f"<td>{s['changed']}</td><td>{s['tokens_removed']}</td><td class=r>{reasons}</td></tr>"
        )
    clusters = []
    for c in rep["duplicate_clusters"]:
        ex = "".join(f"<li><code>{esc(x['id'])}</code> {esc(x['text'][:200])}</li>" for x in c["examples"])
        clusters.append(
            f"<h3>{esc(c['cluster'])} — {c['size']} records, kept <code>{esc(c['keeper'])}</code></h3><ul>{ex}</ul>"
        )
    pii = rep["pii"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Curation report {esc(rep["dataset"])}@{esc(rep["version"][:12])}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:1000px;color:#222}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child,td.r{{text-align:left}} svg{{font-size:12px;display:block;margin:1em 0}}
code{{background:#f3f3f3;padding:0 3px}} li{{margin:.3em 0}}
</style></head><body>
<h1>Curation report</h1>
<p><b>{esc(rep["dataset"])}@{esc(rep["version"][:12])}</b> from parent <code>{esc((rep["parent"] or "-")[:12])}</code>
with recipe <b>{esc(str(rep["recipe"]))}</b> (sha256 <code>{esc(str(rep["recipe_sha256"])[:16])}…</code>).<br>
Kept {rep["kept"]} records ({rep["tokens"]} {esc(str(rep["tokenizer"]))} tokens); rejected {rep["rejected"]}
(listed by <code>ciyuan show {esc(rep["dataset"])}@{esc(rep["version"][:12])} --rejected</code>).</p>
<h2>Steps</h2>
<table><tr><th>step</th><th>seen</th><th>kept</th><th>rejected</th><th>changed</th><th>tokens removed</th>
<th>rejected by rule</th></tr>{"".join(rows)}</table>
<p><small>Tokens removed by a step that rewrites text are estimated from the share of characters removed;
the version's token totals are exact.</small></p>
<h2>Kept data</h2>
{_hist_chart(rep["token_lengths"], "tokens per record")}
{_hist_chart(rep["quality_scores"], "quality score (share of rules passed)")}
{_bars(list(rep["languages"]), list(rep["languages"].values()), "languages")}
<h2>PII redacted</h2>
{_bars(list(pii), list(pii.values()), "matches by type", "#a5563b") if pii else "<p>No PII found.</p>"}
<h2>Largest duplicate clusters</h2>
{"".join(clusters) or "<p>No near-duplicate clusters.</p>"}
<script type="application/json" id="data">{esc(json.dumps(rep, ensure_ascii=False, default=str))}</script>
</body></html>
"""
