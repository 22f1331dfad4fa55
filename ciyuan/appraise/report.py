"""An offline HTML page of an appraisal: indicators, value distribution, learning curve, price curve.

Why hand-made SVG: the page must open on an air-gapped machine and be archived with the version,
so it carries no script, font or stylesheet from a CDN; four small charts are easy to draw.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

W, H, PAD = 520, 240, 44


def _e(x) -> str:
    return html.escape(str(x), quote=True)


def _frame(title: str, body: str, xlabel: str = "", ylabel: str = "") -> str:
    return (
        f"<figure><figcaption>{_e(title)}</figcaption>"
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img" '
        f'aria-label="{_e(title)}">'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - 10}" y2="{H - PAD}" stroke="#333"/>'
        f'<line x1="{PAD}" y1="10" x2="{PAD}" y2="{H - PAD}" stroke="#333"/>'
        f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle" font-size="11">{_e(xlabel)}</text>'
        f'<text x="12" y="{H / 2}" font-size="11" transform="rotate(-90 12 {H / 2})" text-anchor="middle">'
        f"{_e(ylabel)}</text>{body}</svg></figure>"
    )


def bar_chart(title: str, items: list[tuple[str, float | None]]) -> str:
    """Horizontal bars in [0, 1]; a missing score is drawn as 'n/a'."""
    n = max(len(items), 1)
    row = (H - PAD - 10) / n
    out = []
    for i, (name, v) in enumerate(items):
        y = 10 + i * row
        width = 0 if v is None else max(0.0, min(1.0, v)) * (W - PAD - 150)
        out.append(f'<text x="{PAD + 4}" y="{y + row * 0.65}" font-size="11">{_e(name)}</text>')
        out.append(f'<rect x="{PAD + 140}" y="{y + 2}" width="{width:.1f}" height="{row - 4:.1f}" fill="#3b7dd8"/>')
        label = "n/a" if v is None else f"{v:.2f}"
        out.append(f'<text x="{PAD + 144 + width:.1f}" y="{y + row * 0.65}" font-size="10">{label}</text>')
    return _frame(title, "".join(out), "score (0-1)")


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def histogram_chart(title: str, hist: dict | None) -> str:
    if not hist or not hist.get("counts"):
        return _frame(title, f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">no labelled records</text>')
    counts, edges = hist["counts"], hist["edges"]
    top = max(counts) or 1
    bw = (W - PAD - 10) / len(counts)
    sy = _scale(0, top, H - PAD, 10)
    bars = "".join(
        f'<rect x="{PAD + i * bw:.1f}" y="{sy(c):.1f}" width="{bw - 1:.1f}" height="{H - PAD - sy(c):.1f}" '
        f'fill="{"#d8553b" if edges[i + 1] <= 0 else "#3b7dd8"}"><title>[{edges[i]:.4g}, {edges[i + 1]:.4g}): {c}'
        f"</title></rect>"
        for i, c in enumerate(counts)
    )
    ticks = (f'<text x="{PAD}" y="{H - PAD + 14}" font-size="10">{edges[0]:.3g}</text>'
             f'<text x="{W - 10}" y="{H - PAD + 14}" font-size="10" text-anchor="end">{edges[-1]:.3g}</text>'
             f'<text x="{PAD - 4}" y="14" font-size="10" text-anchor="end">{top}</text>')  # fmt: skip
    return _frame(title, bars + ticks, "KNN-Shapley value (red: harmful)", "records")


def line_chart(title: str, xs: list[float], ys: list[float], lows: list | None = None, highs: list | None = None,
               xlabel: str = "", ylabel: str = "", logx: bool = False) -> str:  # fmt: skip
    if not xs:
        return _frame(title, f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">not measured</text>')
    fx = (lambda v: math.log10(max(v, 1e-12))) if logx else (lambda v: v)
    tx = [fx(x) for x in xs]
    all_y = [y for y in ys if y is not None] + [v for v in (lows or []) + (highs or []) if v is not None]
    sx = _scale(min(tx), max(tx), PAD + 6, W - 16)
    sy = _scale(min(all_y), max(all_y), H - PAD - 6, 16)
    pts = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(tx, ys, strict=True) if y is not None)
    band = ""
    if lows and highs and all(v is not None for v in lows + highs):
        poly = [f"{sx(x):.1f},{sy(h):.1f}" for x, h in zip(tx, highs, strict=True)]
        poly += [f"{sx(x):.1f},{sy(lo):.1f}" for x, lo in reversed(list(zip(tx, lows, strict=True)))]
        band = f'<polygon points="{" ".join(poly)}" fill="#3b7dd8" fill-opacity="0.2"/>'
    dots = "".join(
        f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="#3b7dd8"><title>{xv:g}: {y:.4g}</title></circle>'
        for x, xv, y in zip(tx, xs, ys, strict=True)
        if y is not None
    )
    hi_y, lo_y = max(all_y), min(all_y)
    end = 'font-size="10" text-anchor="end"'
    ticks = (
        f'<text x="{PAD - 4}" y="{sy(hi_y) + 4:.1f}" {end}>{hi_y:.3g}</text>'
        f'<text x="{PAD - 4}" y="{sy(lo_y) + 4:.1f}" {end}>{lo_y:.3g}</text>'
        f'<text x="{PAD + 6}" y="{H - PAD + 14}" font-size="10">{xs[0]:g}</text>'
        f'<text x="{W - 16}" y="{H - PAD + 14}" {end}>{xs[-1]:g}</text>'
    )
    return _frame(title, band + f'<polyline points="{pts}" fill="none" stroke="#3b7dd8" stroke-width="2"/>' + dots
                  + ticks, xlabel, ylabel)  # fmt: skip


def _score(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def render(ap: dict) -> str:
    """The whole page as one self-contained HTML string."""
    ind = ap.get("quality", {}).get("indicators", {})
    bars = bar_chart("Quality indicators", [(k, v.get("score")) for k, v in ind.items()])
    hist = histogram_chart("Record values", (ap.get("record_values") or {}).get("histogram"))
    lab = ap.get("utility", {}).get("labelled")
    if lab:
        curve = lab["curve"]
        lc = line_chart("Learning curve (accuracy, 95 % interval)", [c["fraction"] for c in curve],
                        [c["mean"] for c in curve], [c["low"] for c in curve], [c["high"] for c in curve],
                        "share of the dataset", "accuracy")  # fmt: skip
    else:
        lc = line_chart("Learning curve", [], [])
    pc = ap.get("price", {}).get("curve", [])
    cur = ap.get("price", {}).get("currency", "")
    price = line_chart(f"Price against volume ({cur}, graduated tiers)", [p["tokens"] for p in pc],
                       [p["price_minor"] / 100 for p in pc], xlabel="tokens (log scale)", ylabel=f"total {cur}",
                       logx=True)  # fmt: skip
    rows = "".join(
        f"<tr><td>{_e(k)}</td><td>{_score(v.get('score'))}</td><td><code>{_e(v.get('evidence'))}</code></td></tr>"
        for k, v in ind.items()
    )
    p = ap.get("price", {})
    f = p.get("factors", {})
    text_u = ap.get("utility", {}).get("text") or {}
    rd = text_u.get("relative_drop") or {}
    util_line = (
        f"relative perplexity drop {rd.get('mean', 0):.3f} (95 % CI {rd.get('low')}, {rd.get('high')}) "
        f"against baseline {_e(text_u.get('baseline'))}"
        if rd
        else _e(text_u.get("why", "not measured"))
    )
    tok = ap.get("tokens", {})
    uq = ap.get("uniqueness", {})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Appraisal of {_e(ap.get("dataset"))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
figure{{display:inline-block;margin:8px}}figcaption{{font-weight:bold;font-size:13px}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}}
code{{font-size:11px;word-break:break-all}}.big{{font-size:28px;font-weight:bold}}</style></head><body>
<h1>Appraisal of {_e(ap.get("dataset"))}@{_e(str(ap.get("version", ""))[:12])}</h1>
<p>Appraised {_e(ap.get("appraised_at"))} for provider {_e(ap.get("provider"))}; format {_e(ap.get("format"))}.</p>
<p class="big">Suggested price: {_e(p.get("price_per_mtok"))} {_e(cur)} per million tokens</p>
<p>Formula {_e(p.get("formula"))}: base {_e(p.get("base_rate_minor"))} minor units × quality {f.get("quality", 0):.3f}
× uniqueness {f.get("uniqueness", 0):.3f} × utility {f.get("utility", 0):.3f} ({_e(f.get("utility_reason"))}).</p>
<p>Tokens ({_e(ap.get("tokenizer"))}): {tok.get("total", 0):,} total, {tok.get("unique", 0):,} unique after collapsing
{tok.get("near_duplicate_records", 0):,} near-duplicate records. Uniqueness against the catalog:
{uq.get("score", 0):.3f}. Quality Q = {ap.get("quality", {}).get("score", 0):.3f}. Text utility: {util_line}.</p>
{bars}{hist}{lc}{price}
<h2>Indicators and evidence</h2><table><tr><th>indicator</th><th>score</th><th>evidence</th></tr>{rows}</table>
</body></html>
"""


def write(ap: dict, out: str | Path) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(ap), encoding="utf-8")
    return path
