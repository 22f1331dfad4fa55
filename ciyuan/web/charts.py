"""Inline SVG charts drawn on the server, so pages need no chart library and work offline.

Each function returns an ``<svg>`` string marked safe for Jinja2: it has ``role="img"``, an
``aria-label`` and a ``<title>``, and the page shows the same numbers in a table for screen
readers and narrow screens. Only numbers and escaped labels go into the markup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

W, H = 640, 220
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 26, 42


def _num(v: float) -> str:
    """Compact axis labels: 1.2k, 3.4M; small numbers keep two decimals."""
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.1f}G"
    if a >= 1e6:
        return f"{v / 1e6:.1f}M"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    if a >= 100 or float(v).is_integer():
        return f"{v:.0f}"
    if a < 0.01:
        return f"{v:.1e}"
    return f"{v:.2f}"


def _frame(label: str, body: str, width: int = W, height: int = H) -> Markup:
    lab = escape(label)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{lab}" '
        f'preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{lab}</title>{body}</svg>"
    )


def _y_axis(lo: float, hi: float, height: int = H) -> tuple[str, float]:
    """Grid lines and labels at 0, 1/4 ... of the range; returns (markup, plot height)."""
    ph = height - PAD_T - PAD_B
    parts = []
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        y = PAD_T + ph - ph * i / 4
        parts.append(
            f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_num(v)}</text>'
        )
    return "".join(parts), ph


def bars(items: Sequence[tuple[str, float]], label: str, *, vmax: float | None = None) -> Markup:
    """Horizontal bars, one per (name, value); ``vmax`` fixes the scale (1.0 for scores)."""
    if not items:
        return _frame(label, '<text class="empty" x="10" y="24">—</text>', W, 40)
    row = 26
    height = PAD_T + row * len(items) + 8
    top = vmax if vmax else max((v for _, v in items), default=1.0) or 1.0
    left = 190
    span = W - left - 70
    parts = []
    for i, (name, value) in enumerate(items):
        y = PAD_T + i * row
        wbar = max(0.0, min(1.0, value / top)) * span
        parts.append(
            f'<text class="lab" x="{left - 8}" y="{y + 15}" text-anchor="end">{escape(str(name))[:32]}</text>'
            f'<rect class="track" x="{left}" y="{y + 3}" width="{span}" height="16" rx="3"/>'
            f'<rect class="bar" x="{left}" y="{y + 3}" width="{wbar:.1f}" height="16" rx="3"/>'
            f'<text class="val" x="{left + span + 6}" y="{y + 15}">{_num(value)}</text>'
        )
    return _frame(label, "".join(parts), W, height)


def series(points: Sequence[tuple[str, float]], label: str, *, area: bool = True, xlabel: str = "",
           ylabel: str = "") -> Markup:
    """A line (filled below) over labelled x positions, e.g. cumulative tokens per day."""
    if not points:
        return _frame(label, '<text class="empty" x="10" y="24">—</text>', W, 40)
    vals = [float(v) for _, v in points]
    hi = max(vals) or 1.0
    lo = min(0.0, min(vals))
    grid, ph = _y_axis(lo, hi)
    pw = W - PAD_L - PAD_R
    n = len(points)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = PAD_L + (pw * i / (n - 1) if n > 1 else pw / 2)
        y = PAD_T + ph - (v - lo) / (hi - lo or 1.0) * ph
        return x, y

    coords = [xy(i, v) for i, v in enumerate(vals)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    body = [grid]
    base = PAD_T + ph
    if area:
        body.append(
            f'<polygon class="area" points="{coords[0][0]:.1f},{base:.1f} {line} {coords[-1][0]:.1f},{base:.1f}"/>'
        )
    body.append(f'<polyline class="line" points="{line}"/>')
    for x, y in coords:
        body.append(f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3"/>')
    # at most 6 x labels, always the first and the last
    step = max(1, (n - 1) // 5) if n > 1 else 1
    shown = sorted(set(range(0, n, step)) | {n - 1})
    for i in shown:
        x, _ = coords[i]
        anchor = "start" if i == 0 and n > 1 else ("end" if i == n - 1 and n > 1 else "middle")
        body.append(
            f'<text class="tick" x="{x:.1f}" y="{H - 18}" text-anchor="{anchor}">{escape(str(points[i][0]))}</text>'
        )
    body.append(_axis_titles(xlabel, ylabel))
    return _frame(label, "".join(body))


def scale_exponent(values: Sequence[float]) -> int:
    """A power of ten (a multiple of 3) that brings the largest magnitude to 1...999: 0.0021 -> -3."""
    top = max((abs(float(v)) for v in values), default=0.0)
    if top == 0 or 1 <= top < 1000:
        return 0
    return int(math.floor(math.log10(top) / 3) * 3)


def histogram(edges: Sequence[float], counts: Sequence[int], label: str, *, exp: int = 0,
              xlabel: str = "", ylabel: str = "") -> Markup:  # fmt: skip
    """Vertical bars between bin edges, e.g. the spread of record values; ``exp`` shows edges in units of 10^exp."""
    if not counts or len(edges) != len(counts) + 1:
        return _frame(label, '<text class="empty" x="10" y="24">—</text>', W, 40)
    hi = max(counts) or 1
    grid, ph = _y_axis(0, hi)
    pw = W - PAD_L - PAD_R
    bw = pw / len(counts)
    unit = 10.0**exp
    body = [grid]
    for i, c in enumerate(counts):
        h = c / hi * ph
        body.append(
            f'<rect class="bar{" neg" if edges[i + 1] <= 0 else ""}" x="{PAD_L + i * bw + 1:.1f}" '
            f'y="{PAD_T + ph - h:.1f}" width="{max(bw - 2, 1):.1f}" height="{h:.1f}"><title>'
            f"{_num(edges[i] / unit)}…{_num(edges[i + 1] / unit)}: {c}</title></rect>"
        )
    # ticks at the ends and at zero when zero is inside the range
    ticks = [(0, edges[0]), (len(counts), edges[-1])]
    if edges[0] < 0 < edges[-1]:
        ticks.append(((0 - edges[0]) / (edges[-1] - edges[0]) * len(counts), 0.0))
    for pos, v in ticks:
        x = PAD_L + pos * bw
        anchor = "start" if pos == 0 else ("end" if pos == len(counts) else "middle")
        body.append(f'<text class="tick" x="{x:.1f}" y="{H - 18}" text-anchor="{anchor}">{_num(v / unit)}</text>')
    body.append(_axis_titles(xlabel, ylabel))
    return _frame(label, "".join(body))


def _axis_titles(xlabel: str, ylabel: str, height: int = H) -> str:
    out = ""
    if xlabel:
        out += f'<text class="axis" x="{PAD_L + (W - PAD_L - PAD_R) / 2:.0f}" y="{height - 2}" ' \
               f'text-anchor="middle">{escape(xlabel)}</text>'
    if ylabel:
        out += f'<text class="axis" x="4" y="11" text-anchor="start">{escape(ylabel)}</text>'
    return out


def _decades(lo: float, hi: float) -> list[float]:
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return [10.0**e for e in range(a, b + 1)]


def xy(points: Sequence[tuple[float, float]], label: str, *, xlabel: str = "", ylabel: str = "",
       log_note: str = "log scale") -> Markup:  # fmt: skip
    """A line over numeric x; an axis whose data span 100x or more is logarithmic and says so in its title.

    On log-log axes a price that grows linearly with volume is a straight line, as it should look.
    """
    pts = [(float(x), float(y)) for x, y in points if x is not None and y is not None]
    if not pts:
        return _frame(label, '<text class="empty" x="10" y="24">—</text>', W, 40)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    logx = min(xs) > 0 and max(xs) / min(xs) >= 100
    logy = min(ys) > 0 and max(ys) / min(ys) >= 100
    fx = math.log10 if logx else (lambda v: v)
    fy = math.log10 if logy else (lambda v: v)
    xlo, xhi = (fx(min(xs)), fx(max(xs)))
    ylo, yhi = (fy(min(ys)), fy(max(ys))) if logy else (min(0.0, min(ys)), max(ys) or 1.0)
    if logy:
        ylo, yhi = math.floor(ylo), math.ceil(yhi)
    ph = H - PAD_T - PAD_B
    pw = W - PAD_L - PAD_R

    def px(v: float) -> float:
        return PAD_L + (fx(v) - xlo) / ((xhi - xlo) or 1.0) * pw if len(set(xs)) > 1 else PAD_L + pw / 2

    def py(v: float) -> float:
        return PAD_T + ph - (fy(v) - ylo) / ((yhi - ylo) or 1.0) * ph

    body = []
    yt = [10.0**e for e in range(int(ylo), int(yhi) + 1)] if logy else [ylo + (yhi - ylo) * i / 4 for i in range(5)]
    for v in yt:
        y = py(v)
        body.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}"/>'
                    f'<text class="tick" x="{PAD_L - 6}" y="{y + 4:.1f}" text-anchor="end">{_num(v)}</text>')
    if logx:
        xt = [v for v in _decades(min(xs), max(xs)) if min(xs) <= v <= max(xs)] + [min(xs), max(xs)]
    else:
        xt = sorted(set(xs)) if len(set(xs)) <= 8 else [min(xs) + (max(xs) - min(xs)) * i / 4 for i in range(5)]
    placed: list[float] = []
    for v in sorted(set(xt), key=lambda v: (v not in (min(xs), max(xs)), v)):
        x = px(v)
        if any(abs(x - p) < 48 for p in placed):  # never two labels on top of each other
            continue
        placed.append(x)
        body.append(f'<line class="grid" x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T}" y2="{PAD_T + ph}"/>'
                    f'<text class="tick" x="{x:.1f}" y="{H - 18}" text-anchor="middle">{_num(v)}</text>')  # fmt: skip
    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
    body.append(f'<polyline class="line" points="{line}"/>')
    for x, y in pts:
        body.append(f'<circle class="dot" cx="{px(x):.1f}" cy="{py(y):.1f}" r="3"><title>{_num(x)}: {_num(y)}'
                    f"</title></circle>")  # fmt: skip
    note = f" ({log_note})"
    body.append(_axis_titles(xlabel + (note if logx and xlabel else ""), ylabel + (note if logy and ylabel else "")))
    return _frame(label, "".join(body))


def _time_label(t: datetime, span_s: float) -> str:
    if span_s <= 120:
        return t.strftime("%H:%M:%S")
    if span_s <= 2 * 86400:
        return t.strftime("%H:%M")
    if span_s <= 200 * 86400:
        return t.strftime("%m-%d")
    return t.strftime("%Y-%m")


def timeline(points: Sequence[tuple[datetime, float]], label: str, *, ylabel: str = "", utc: str = "UTC") -> Markup:
    """A cumulative line over real time: x by timestamp, at most six labels that never overlap."""
    pts = [(t, float(v)) for t, v in points if isinstance(t, datetime)]
    if not pts:
        return _frame(label, '<text class="empty" x="10" y="24">—</text>', W, 40)
    t0, t1 = pts[0][0], pts[-1][0]
    span = (t1 - t0).total_seconds()
    vals = [v for _, v in pts]
    hi = max(vals) or 1.0
    lo = min(0.0, min(vals))
    grid, ph = _y_axis(lo, hi)
    pw = W - PAD_L - PAD_R

    def xy_(t: datetime, v: float) -> tuple[float, float]:
        x = PAD_L + ((t - t0).total_seconds() / span * pw if span > 0 else pw / 2)
        return x, PAD_T + ph - (v - lo) / (hi - lo or 1.0) * ph

    coords = [xy_(t, v) for t, v in pts]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    base = PAD_T + ph
    area = f"{coords[0][0]:.1f},{base:.1f} {line} {coords[-1][0]:.1f},{base:.1f}"
    body = [grid, f'<polygon class="area" points="{area}"/>', f'<polyline class="line" points="{line}"/>']
    body += [f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="3"/>' for x, y in coords[-200:]]
    n_ticks = 1 if span <= 0 else 6
    labels: list[tuple[float, str]] = []
    for i in range(n_ticks):
        t = t0 + (t1 - t0) * (i / (n_ticks - 1) if n_ticks > 1 else 0)
        text = _time_label(t, span)
        x = xy_(t, 0)[0]
        width = 7.0 * len(text) + 12
        if labels and (x - labels[-1][0] < width or text == labels[-1][1]):
            continue
        labels.append((x, text))
    for x, text in labels:
        anchor = "start" if x <= PAD_L + 1 and span > 0 else ("end" if x >= W - PAD_R - 1 else "middle")
        body.append(f'<text class="tick" x="{x:.1f}" y="{H - 18}" text-anchor="{anchor}">{escape(text)}</text>')
    day = t0.strftime("%Y-%m-%d") if span <= 2 * 86400 else ""
    body.append(_axis_titles(f"{day} {utc}".strip() if day else utc, ylabel))
    return _frame(label, "".join(body))


PALETTE = ("#0b6e4f", "#c0392b", "#2e86c1", "#d68910", "#7d3c98", "#17a589", "#5d6d7e", "#a04000")


def lines(x: Sequence[float], named: Sequence[tuple[str, Sequence[float]]], label: str, *, xlabel: str = "",
          ylabel: str = "", max_points: int = 400) -> Markup:
    """Several lines over one numeric x (a state or action vector over time), with a legend.

    Long series are thinned to ``max_points`` evenly spaced samples so the markup stays small."""
    n = len(x)
    if not n or not named:
        return _frame(label, '<text class="empty" x="10" y="24">—</text>', W, 40)
    keep = sorted({round(i * (n - 1) / (max_points - 1)) for i in range(max_points)}) if n > max_points else range(n)
    xs = [float(x[i]) for i in keep]
    vals = [[float(v[i]) for i in keep] for _, v in named]
    finite = [v for row in vals for v in row if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if hi == lo:
        lo, hi = lo - 1.0, hi + 1.0
    legend_rows = (len(named) + 5) // 6
    height = H + 16 * legend_rows
    grid, ph = _y_axis(lo, hi, H)
    pw = W - PAD_L - PAD_R
    x0, x1 = xs[0], xs[-1] if xs[-1] != xs[0] else xs[0] + 1.0
    body = [grid]
    for k, row in enumerate(vals):
        pts = " ".join(
            f"{PAD_L + (xv - x0) / (x1 - x0) * pw:.1f},{PAD_T + ph - (v - lo) / (hi - lo) * ph:.1f}"
            for xv, v in zip(xs, row, strict=True) if math.isfinite(v)
        )
        colour = PALETTE[k % len(PALETTE)]
        body.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="1.6" points="{pts}">'
                    f"<title>{escape(named[k][0])}</title></polyline>")
    for v in (xs[0], xs[-1]):
        px = PAD_L + (v - x0) / (x1 - x0) * pw
        anchor = "start" if v == xs[0] else "end"
        body.append(f'<text class="tick" x="{px:.1f}" y="{H - 18}" text-anchor="{anchor}">{_num(v)}</text>')
    for k, (name, _) in enumerate(named):
        lx, ly = PAD_L + (k % 6) * (pw / 6), H + 4 + 16 * (k // 6)
        colour = PALETTE[k % len(PALETTE)]
        body.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>'
                    f'<text class="lab" x="{lx + 14:.1f}" y="{ly}">{escape(name)}</text>')
    body.append(_axis_titles(xlabel, ylabel, H))
    return _frame(label, "".join(body), W, height)
