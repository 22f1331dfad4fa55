"""Inline SVG charts drawn on the server, so pages need no chart library and work offline.

Each function returns an ``<svg>`` string marked safe for Jinja2: it has ``role="img"``, an
``aria-label`` and a ``<title>``, and the page shows the same numbers in a table for screen
readers and narrow screens. Only numbers and escaped labels go into the markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup

W, H = 640, 220
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 14, 34


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


def series(points: Sequence[tuple[str, float]], label: str, *, area: bool = True) -> Markup:
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
            f'<text class="tick" x="{x:.1f}" y="{H - 12}" text-anchor="{anchor}">{escape(str(points[i][0]))}</text>'
        )
    return _frame(label, "".join(body))


def histogram(edges: Sequence[float], counts: Sequence[int], label: str) -> Markup:
    """Vertical bars between bin edges, e.g. the spread of record values."""
    if not counts or len(edges) != len(counts) + 1:
        return _frame(label, '<text class="empty" x="10" y="24">—</text>', W, 40)
    hi = max(counts) or 1
    grid, ph = _y_axis(0, hi)
    pw = W - PAD_L - PAD_R
    bw = pw / len(counts)
    body = [grid]
    for i, c in enumerate(counts):
        h = c / hi * ph
        body.append(
            f'<rect class="bar" x="{PAD_L + i * bw + 1:.1f}" y="{PAD_T + ph - h:.1f}" '
            f'width="{max(bw - 2, 1):.1f}" height="{h:.1f}"><title>{_num(edges[i])}…{_num(edges[i + 1])}: '
            f"{c}</title></rect>"
        )
    body.append(f'<text class="tick" x="{PAD_L}" y="{H - 12}" text-anchor="start">{_num(edges[0])}</text>')
    body.append(f'<text class="tick" x="{W - PAD_R}" y="{H - 12}" text-anchor="end">{_num(edges[-1])}</text>')
    return _frame(label, "".join(body))
