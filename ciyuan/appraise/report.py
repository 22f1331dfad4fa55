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


def bar_chart(title: str, items: list[tuple[str, float | None]], xlabel: str = "score (0-1)", na: str = "n/a") -> str:
    """Horizontal bars in [0, 1]; a missing score is drawn as 'n/a'."""
    n = max(len(items), 1)
    row = (H - PAD - 10) / n
    out = []
    for i, (name, v) in enumerate(items):
        y = 10 + i * row
        width = 0 if v is None else max(0.0, min(1.0, v)) * (W - PAD - 150)
        out.append(f'<text x="{PAD + 4}" y="{y + row * 0.65}" font-size="11">{_e(name)}</text>')
        out.append(f'<rect x="{PAD + 140}" y="{y + 2}" width="{width:.1f}" height="{row - 4:.1f}" fill="#3b7dd8"/>')
        label = na if v is None else f"{v:.2f}"
        out.append(f'<text x="{PAD + 144 + width:.1f}" y="{y + row * 0.65}" font-size="10">{label}</text>')
    return _frame(title, "".join(out), xlabel)


def _nice(v: float) -> str:
    """An axis label people read at a glance: 1,000,000 not 1e+06; 0.0019 not 1.9e-03."""
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g}G"
    if a >= 1e6:
        return f"{v / 1e6:.3g}M"
    if a >= 1e4:
        return f"{v / 1e3:.3g}k"
    if a >= 1 or a == 0:
        return f"{v:.4g}"
    return f"{v:.2g}"


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def histogram_chart(title: str, hist: dict | None, empty: str = "no labelled records",
                    xlabel: str = "KNN-Shapley value (red: harmful)", ylabel: str = "records") -> str:  # fmt: skip
    if not hist or not hist.get("counts"):
        return _frame(title, f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">{_e(empty)}</text>')
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
    ticks = (f'<text x="{PAD}" y="{H - PAD + 14}" font-size="10">{_nice(edges[0])}</text>'
             f'<text x="{W - 10}" y="{H - PAD + 14}" font-size="10" text-anchor="end">{_nice(edges[-1])}</text>'
             f'<text x="{PAD - 4}" y="14" font-size="10" text-anchor="end">{top}</text>')  # fmt: skip
    return _frame(title, bars + ticks, xlabel, ylabel)


def line_chart(title: str, xs: list[float], ys: list[float], lows: list | None = None, highs: list | None = None,
               xlabel: str = "", ylabel: str = "", logx: bool = False, logy: bool = False,
               empty: str = "not measured", ref: float | None = None) -> str:  # fmt: skip
    """One series with an optional interval band; ``ref`` draws a dashed horizontal line (a baseline)."""
    if not xs:
        return _frame(title, f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle">{_e(empty)}</text>')
    fx = (lambda v: math.log10(max(v, 1e-12))) if logx else (lambda v: v)
    fy = (lambda v: math.log10(max(v, 1e-12))) if logy else (lambda v: v)
    tx = [fx(x) for x in xs]
    all_y = [y for y in ys if y is not None] + [v for v in (lows or []) + (highs or []) if v is not None]
    all_y += [] if ref is None else [ref]
    sx = _scale(min(tx), max(tx), PAD + 6, W - 16)
    sy0 = _scale(fy(min(all_y)), fy(max(all_y)), H - PAD - 6, 16)

    def sy(v: float) -> float:
        return sy0(fy(v))

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
    if ref is not None:
        dots += (f'<line x1="{PAD}" y1="{sy(ref):.1f}" x2="{W - 10}" y2="{sy(ref):.1f}" stroke="#d8553b" '
                 f'stroke-dasharray="5,4"><title>{ref:.4g}</title></line>')
    hi_y, lo_y = max(all_y), min(all_y)
    end = 'font-size="10" text-anchor="end"'
    ticks = (
        f'<text x="{PAD - 4}" y="{sy(hi_y) + 4:.1f}" {end}>{_nice(hi_y)}</text>'
        f'<text x="{PAD - 4}" y="{sy(lo_y) + 4:.1f}" {end}>{_nice(lo_y)}</text>'
        f'<text x="{PAD + 6}" y="{H - PAD + 14}" font-size="10">{_nice(xs[0])}</text>'
        f'<text x="{W - 16}" y="{H - PAD + 14}" {end}>{_nice(xs[-1])}</text>'
    )
    return _frame(title, band + f'<polyline points="{pts}" fill="none" stroke="#3b7dd8" stroke-width="2"/>' + dots
                  + ticks, xlabel, ylabel)  # fmt: skip


def _score(v: float | None, na: str = "n/a") -> str:
    return na if v is None else f"{v:.3f}"


def media_section(media: dict | None, t, na: str) -> str:
    """The media part of the report: resolution and duration histograms, the four rates with their
    counts, formats and the commonest resolutions; empty for a version without media."""
    if not media or not media.get("media_records"):
        return ""
    mods = media.get("by_modality") or {}
    kinds = ", ".join(f"{t('am_mod_' + m)} {n:,}" for m, n in mods.items())
    charts = []
    res = media.get("resolution") or {}
    if (res.get("long_side_px") or {}).get("n"):
        charts.append(histogram_chart(t("am_long_side"), res["long_side_px"], t("am_no_values"), "px", t("records")))
        charts.append(histogram_chart(t("am_megapixels"), res["megapixels"], t("am_no_values"), "MP", t("records")))
    for m, hist in (media.get("duration_s") or {}).items():
        charts.append(histogram_chart(t("am_duration", modality=t("am_mod_" + m)), hist, t("am_no_values"), "s",
                                      t("records")))  # fmt: skip
    rows = []
    for key in ("corrupt", "mismatch", "duplicates", "captions"):
        r = media.get(key) or {}
        rows.append(f"<tr><td>{_e(t('am_' + key))}</td><td>{_score(r.get('rate'), na)}</td>"
                    f"<td>{r.get('count', 0):,} / {r.get('of', 0):,}</td></tr>")
    fmts = "; ".join(f"{t('am_mod_' + m)}: " + ", ".join(f"{f} {n:,}" for f, n in c.items())
                     for m, c in (media.get("formats") or {}).items())
    top = ", ".join(f"{k} ({n:,})" for k, n in (res.get("top") or {}).items())
    n = f"{media['media_records']:,}"
    return (f"<h2>{_e(t('am_title'))}</h2><p>{_e(t('am_records', n=n, kinds=kinds))} "
            f"{_e(t('am_formats'))}: <span translate=\"no\">{_e(fmts)}</span>."
            + (f" {_e(t('am_top_resolutions'))}: {_e(top)}." if top else "") + "</p>"
            + "".join(charts)
            + f"<table><tr><th>{_e(t('am_measure'))}</th><th>{_e(t('am_rate'))}</th><th>{_e(t('am_count'))}</th>"
            f"</tr>{''.join(rows)}</table>")


def media_uniqueness_section(uq: dict, t) -> str:
    """The perceptual-hash part of uniqueness: how many media records copy listed media, and the pairs."""
    mu = (uq.get("evidence") or {}).get("media")
    if not mu:
        return ""
    line = t("am_uniqueness_line", dup=f"{mu['records_near_duplicated']:,}", n=f"{mu['records']:,}",
             tokens=f"{mu['tokens_near_duplicated']:,}", total=f"{mu['tokens']:,}", score=f"{mu['score']:.3f}")
    rows = "".join(f'<tr><td translate="no">{_e(p["record"])}</td><td translate="no">{_e(p["listing"])} '
                   f'({_e(p["provider"])})</td><td translate="no">{_e(p["listed_record"])}</td>'
                   f"<td>{int(p['distance'])}</td></tr>" for p in mu.get("pairs") or [])  # fmt: skip
    table = (f"<table><tr><th>{_e(t('am_pair_record'))}</th><th>{_e(t('am_pair_listing'))}</th>"
             f"<th>{_e(t('am_pair_listed'))}</th><th>{_e(t('am_pair_distance'))}</th></tr>{rows}</table>"
             if rows else "")  # fmt: skip
    return f"<h2>{_e(t('am_uniqueness'))}</h2><p>{_e(line)}</p>{table}"


def episode_only(ap: dict) -> bool:
    """Whether every record of the appraised version is a robot episode."""
    n = ap.get("episode_records") or 0
    return bool(n) and n == (ap.get("tokens") or {}).get("records")


def _pct(v: float | None, na: str) -> str:
    return na if v is None else f"{v:.1%}"


def _episode_rows(rows: list[dict], t) -> str:
    body = "".join(f'<tr><td translate="no">{_e(r["id"])}</td><td>{_e(r.get("task") or "")}</td>'
                   f'<td>{_e("" if r.get("episode_index") is None else r["episode_index"])}</td>'
                   f'<td>{int(r.get("length") or 0)}</td><td>{r["value"]:.4g}</td></tr>' for r in rows)  # fmt: skip
    head = "".join(f"<th>{_e(t('ae_col_' + c))}</th>" for c in ("episode", "task", "index", "length", "value"))
    return f"<table><tr>{head}</tr>{body}</table>"


def retrieval_section(ap: dict, t, na: str) -> str:
    """A knowledge base's recall@k by mode (BM25 alone, vectors alone, hybrid); empty when not measured."""
    u = (ap.get("utility") or {}).get("retrieval")
    if not u:
        return ""
    ks = sorted({k for r in u["recall"].values() for k in r}, key=lambda k: int(k.split("@")[1]))
    head = "".join(f"<th>{_e(t('kb_recall_at', k=k.split('@')[1]))}</th>" for k in ks)
    rows = "".join(
        f"<tr><td>{_e(t('kb_mode_' + mode))}</td>" + "".join(f"<td>{_score(r.get(k), na)}</td>" for k in ks) + "</tr>"
        for mode, r in u["recall"].items()
    )
    note = "" if u.get("note") is None else f"<p>{_e(t('kb_use_bm25_only'))}</p>"
    line = t("kb_use_line", questions=u["questions"], indexed=f"{u['records_indexed']:,}",
             records=f"{u['records']:,}", chunks=f"{u['chunks']:,}")
    return (f"<h2>{_e(t('kb_use_title'))}</h2><p>{_e(line)}</p>{note}"
            f'<table data-testid="retrieval-recall"><tr><th>{_e(t("kb_use_mode"))}</th>{head}</tr>{rows}</table>')


def episode_section(ap: dict, t, na: str) -> str:
    """The policy part of the report: the behaviour-cloning learning curve against the mean-action
    baseline, the episode value histogram and the top and bottom episodes; empty without episodes."""
    u = (ap.get("utility") or {}).get("episode")
    if not u:
        return ""
    out = [f"<h2>{_e(t('ae_title'))}</h2>"]
    if not u.get("curve"):
        return out[0] + f"<p>{_e(t('ae_not_measured', why=u.get('why', '')))}</p>"
    curve, rd = u["curve"], u.get("relative_drop") or {}
    out.append("<p>" + _e(t("ae_line", train=u["train_episodes"], n=u["episodes"], frames=f"{u['frames']:,}",
                             ds=u["state_dim"], da=u["action_dim"], mse=f"{curve[-1]['mean']:.4g}",
                             zero=f"{u['baseline_zero_action']['mean']:.4g}",
                             mean=f"{u['baseline_mean_action']['mean']:.4g}", drop=f"{rd.get('mean', 0):.1%}",
                             low=_pct(rd.get("low"), na), high=_pct(rd.get("high"), na),
                             seeds=len(u.get("seeds") or []))) + "</p>")  # fmt: skip
    charts = line_chart(t("ae_curve"), [c["fraction"] * 100 for c in curve], [c["mean"] for c in curve],
                        [c["low"] for c in curve], [c["high"] for c in curve], t("ae_share"), t("ae_mse"),
                        ref=u["baseline_mean_action"]["mean"])  # fmt: skip
    ev = ap.get("episode_values")
    if ev:
        charts += histogram_chart(t("ae_values"), ev.get("histogram"), na, t("ae_value_axis"), t("ae_episodes"))
        out.append(charts)
        out.append(f"<p>{_e(t('ae_negative', neg=ev['negative'], n=ev['episodes']))}</p>")
        out.append(f"<h3>{_e(t('ae_top'))}</h3>{_episode_rows(ev.get('top') or [], t)}")
        out.append(f"<h3>{_e(t('ae_bottom'))}</h3>{_episode_rows(ev.get('bottom') or [], t)}")
    else:
        out.append(charts)
    return "".join(out)


def gbt_table(gbt: dict, t, na: str) -> str:
    """The six GB/T 36344 indicators with their scores and what measures each (both languages)."""
    rows = "".join(
        f"<tr><td>{_e(zh)}</td><td>{_e(t('gbt_' + v['en']))}</td><td>{_score(v.get('score'), na)}</td>"
        f"<td>{_e(t('gbt_how_' + v['en']))}{(' ' + _e(v['note'])) if v.get('note') else ''}</td></tr>"
        for zh, v in gbt.items())
    head = "".join(f"<th>{_e(t(k))}</th>" for k in ("ag_col_standard", "ag_col_indicator", "ar_score", "ag_col_how"))
    return f"<table><tr>{head}</tr>{rows}</table>"


def graph_section(ap: dict, t, na: str) -> str:
    """The graph part of the report: GB/T 36344 mapping and the link-prediction learning curve
    against the no-model baselines; empty for a version without graph records."""
    g = ap.get("graph")
    if not g:
        return ""
    q, lp = g["quality"], g["link_prediction"]
    out = [f"<h2>{_e(t('ag_title'))}</h2>",
           "<p>" + _e(t("ag_facts", triples=f"{q['triples']:,}", subjects=f"{q['subjects']:,}",
                         dups=q["duplicate_triples"], dangling=q["dangling_iris"], bad=q["literals_invalid"],
                         checked=q["literals_checked"], blank=f"{q['blank_node_ratio']:.1%}")) + "</p>",
           f"<h3>{_e(t('ag_gbt'))}</h3>", gbt_table(g["gbt_36344"], t, na)]
    if not lp.get("curve"):
        out.append(f"<p>{_e(t('ag_lp_not', why=lp.get('why', '')))}</p>")
        return "".join(out)
    curve, base = lp["curve"], lp["baselines"]
    lift = lp.get("lift") or {}
    out.append(f"<h3>{_e(t('ag_lp'))}</h3><p>" + _e(t(
        "ag_lp_line", train=lp["train_triples"], test=lp["test_triples"], entities=lp["entities"],
        mrr=f"{curve[-1]['mrr']:.3f}", hits=f"{curve[-1]['hits_at_10']:.3f}",
        freq=f"{base['predicate_frequency']['mrr']:.3f}", fhits=f"{base['predicate_frequency']['hits_at_10']:.3f}",
        rand=f"{base['random']['mrr']:.4f}", lift=_pct(lift.get("mean"), na), low=_pct(lift.get("low"), na),
        high=_pct(lift.get("high"), na))) + "</p>")
    out.append(line_chart(t("ag_curve"), [c["fraction"] * 100 for c in curve], [c["mrr"] for c in curve],
                          xlabel=t("ag_share"), ylabel="MRR", ref=base["predicate_frequency"]["mrr"]))
    out.append(line_chart(t("ag_curve_hits"), [c["fraction"] * 100 for c in curve], [c["hits_at_10"] for c in curve],
                          xlabel=t("ag_share"), ylabel="Hits@10", ref=base["predicate_frequency"]["hits_at_10"]))
    out.append(f"<p>{_e(t('ag_ref_line'))}</p>")
    return "".join(out)


def media_only(ap: dict) -> bool:
    """Whether every record of the appraised version is an image, audio clip or video."""
    m = ap.get("media") or {}
    return bool(m.get("media_records")) and m["media_records"] == (ap.get("tokens") or {}).get("records")


def render(ap: dict, lang: str = "en") -> str:
    """The whole page as one self-contained HTML string, in English or Chinese (``lang``)."""
    import json

    from ciyuan.i18n import Translator

    t = Translator(lang)
    na = t("ar_na")

    def ind_name(k: str) -> str:
        name = t("ind_" + k)
        return k if name == "ind_" + k else name

    # an indicator that does not apply (text measures on a media-only version) is left out, not drawn n/a
    ind = {k: v for k, v in ap.get("quality", {}).get("indicators", {}).items() if v.get("applies", True)}
    only_media = media_only(ap)
    bars = bar_chart(t("quality"), [(ind_name(k), v.get("score")) for k, v in ind.items()], t("ar_score_axis"), na)
    hist = histogram_chart(t("record_values"), (ap.get("record_values") or {}).get("histogram"),
                           t("ar_no_labels"), t("ar_value_axis"), t("records"))  # fmt: skip
    lab = ap.get("utility", {}).get("labelled")
    if lab:
        curve = lab["curve"]
        lc = line_chart(t("ar_learning_curve"), [c["fraction"] * 100 for c in curve],
                        [c["mean"] for c in curve], [c["low"] for c in curve], [c["high"] for c in curve],
                        t("share_trained"), t("accuracy"), empty=t("util_not_measured"))  # fmt: skip
    else:
        lc = line_chart(t("ar_learning_curve"), [], [], empty=t("util_not_measured"))
    pc = ap.get("price", {}).get("curve", [])
    cur = ap.get("price", {}).get("currency", "")
    price = line_chart(t("price_vs_volume"), [p["tokens"] for p in pc], [p["price_minor"] / 100 for p in pc],
                       xlabel=f"{t('tokens')} ({t('log_scale')})",
                       ylabel=f"{t('total_price', cur=cur)} ({t('log_scale')})", logx=True, logy=True,
                       empty=t("util_not_measured"))  # fmt: skip
    rows = "".join(
        f"<tr><td>{_e(ind_name(k))}</td><td>{_score(v.get('score'), na)}</td><td><details><summary>{_e(t('ar_show'))}"
        f'</summary><pre translate="no">{_e(json.dumps(v.get("evidence"), ensure_ascii=False, indent=1, default=str))}'
        f"</pre></details></td></tr>"
        for k, v in ind.items()
    )
    p = ap.get("price", {})
    f = p.get("factors", {})
    text_u = ap.get("utility", {}).get("text") or {}
    rd = text_u.get("relative_drop") or {}
    util_line = (
        t("ar_util_measured", mean=f"{rd.get('mean', 0):.3f}", low=_score(rd.get("low"), na),
          high=_score(rd.get("high"), na))  # fmt: skip
        if rd
        else t("util_not_measured")
    )
    tok = ap.get("tokens", {})
    uq = ap.get("uniqueness", {})
    when = str(ap.get("appraised_at") or "")[:16].replace("T", " ")
    dataset = f'<span translate="no">{_e(ap.get("dataset"))}@{_e(str(ap.get("version", ""))[:12])}</span>'
    text_charts = hist + lc
    only_episodes = episode_only(ap)
    if (only_media or only_episodes) and not ap.get("record_values") and not lab:  # both read labelled text
        text_charts = ""
    util_sentence = "" if only_media and not text_u else f" {_e(t('util_text'))}: {_e(util_line)}."
    if only_episodes and not text_u:
        util_sentence = f" {_e(t('util_text'))}: {_e(t('ae_text_na'))}."
    media_note = f"<p>{_e(t('am_media_only'))}</p>" if only_media else ""
    media_note += f"<p>{_e(t('ae_only'))}</p>" if only_episodes else ""
    facts = t("ar_tokens", total=f"{tok.get('total', 0):,}", unique=f"{tok.get('unique', 0):,}",
              near=f"{tok.get('near_duplicate_records', 0):,}")  # fmt: skip
    return f"""<!doctype html>
<html lang="{"zh-CN" if t.lang == "zh" else "en"}"><head><meta charset="utf-8">
<title>{_e(t("ar_title"))} · {_e(ap.get("dataset"))}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}}
figure{{display:inline-block;margin:8px}}figcaption{{font-weight:bold;font-size:13px}}
table{{border-collapse:collapse;font-size:12px}}td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}}
pre{{font-size:11px;white-space:pre-wrap;margin:0}}.big{{font-size:28px;font-weight:bold}}</style></head><body>
<h1>{_e(t("ar_title"))} · {dataset}</h1>
<p>{_e(t("ar_appraised", when=when))} · {_e(t("provider"))}: <span translate="no">{_e(ap.get("provider"))}</span></p>
<p class="big">{_e(t("suggested_price"))}: {_e(p.get("price_per_mtok"))} {_e(cur)} {_e(t("per_mtok"))}</p>
<p>{_e(t("ar_formula", base=p.get("base_rate_minor"), q=f"{f.get('quality', 0):.3f}",
         u=f"{f.get('uniqueness', 0):.3f}", util=f"{f.get('utility', 0):.3f}"))}</p>
<p>{_e(facts)} {_e(t("uniqueness"))}: {uq.get("score", 0):.3f}. {_e(t("quality_score"))}:
{ap.get("quality", {}).get("score", 0):.3f}.{util_sentence}</p>{media_note}
{bars}{text_charts}{price}
{episode_section(ap, t, na)}
{retrieval_section(ap, t, na)}
{graph_section(ap, t, na)}
{media_section(ap.get("media"), t, na)}
{media_uniqueness_section(uq, t)}
<h2>{_e(t("ar_evidence"))}</h2><table><tr><th>{_e(t("ar_indicator"))}</th><th>{_e(t("ar_score"))}</th>
<th>{_e(t("ar_evidence_col"))}</th></tr>{rows}</table>
</body></html>
"""


def write(ap: dict, out: str | Path, lang: str = "en") -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(ap, lang), encoding="utf-8")
    return path
