"""Fast checks of the web layer's pieces that need no browser: strings, charts, forms, redirects."""

from __future__ import annotations

import pytest

from ciyuan import i18n
from ciyuan.errors import InvalidInput
from ciyuan.web import charts, dashboards, views
from ciyuan.web.routes import _local_path


def test_every_english_string_has_a_chinese_one_with_the_same_placeholders() -> None:
    import string

    def fields(text: str) -> set[str]:
        return {f for _, f, _, _ in string.Formatter().parse(text) if f}

    assert set(i18n.EN) == set(i18n.ZH)
    for key, en in i18n.EN.items():
        assert fields(en) == fields(i18n.ZH[key]), key


def test_charts_escape_labels_and_survive_empty_data() -> None:
    svg = charts.bars([("<script>x</script>", 0.5)], 'a "label"', vmax=1.0)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert 'aria-label="a &quot;label&quot;"' in svg
    for empty in (charts.bars([], "e"), charts.series([], "e"), charts.histogram([], [], "e")):
        assert empty.startswith("<svg") and 'role="img"' in empty
    line = charts.series([("a", 0), ("b", 5), ("c", 7)], "s")
    assert line.count("<circle") == 3 and "<polyline" in line


def test_quote_form_becomes_the_quote_apis_selection() -> None:
    sel = views.selection_from_form(
        {"language": "zh", "domain": "wind_power", "numeric_field": "meta.severity", "numeric_min": "2.5",
         "numeric_max": "4", "token_budget": "10,000"}
    )  # fmt: skip
    assert sel == {
        "filter": {"and": [
            {"field": "meta.language", "op": "eq", "value": "zh"},
            {"field": "meta.domain", "op": "eq", "value": "wind_power"},
            {"field": "meta.severity", "op": "ge", "value": 2.5},
            {"field": "meta.severity", "op": "le", "value": 4},
        ]},
        "token_budget": 10_000,
    }  # fmt: skip
    from ciyuan.market.selection import Selection

    assert Selection.parse(sel).filter is not None  # the quote API's own parser takes what the form sends
    assert views.selection_from_form({}) is None
    raw = views.selection_from_form({"filter_json": '{"field": "modality", "op": "eq", "value": "text"}'})
    assert raw == {"filter": {"field": "modality", "op": "eq", "value": "text"}, "token_budget": None}
    with pytest.raises(InvalidInput):
        views.selection_from_form({"filter_json": "{not json"})
    with pytest.raises(InvalidInput):
        views.selection_from_form({"token_budget": "lots"})


def test_sign_in_redirects_only_to_paths_on_this_site() -> None:
    assert _local_path("/buyer") and _local_path("/listings/lst_1?quote=q_2")
    for bad in ("https://evil.example/", "//evil.example/", "/\\evil.example", "buyer", "/a\r\nSet-Cookie: x"):
        assert not _local_path(bad), bad


def test_cumulative_starts_at_zero_and_keeps_time_order() -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    pts = dashboards.cumulative([(t0 + timedelta(seconds=30), 5), (t0, 2), (t0 + timedelta(seconds=30), 1)])
    assert pts[0] == (t0, 0.0) and [v for _, v in pts] == [0.0, 2, 8]
    assert [t for t, _ in pts] == sorted(t for t, _ in pts)


def _ticks(svg: str) -> list[tuple[float, str, str]]:
    import re

    return [(float(x), anchor, text) for x, y, anchor, text in
            re.findall(r'<text class="tick" x="([\d.]+)" y="(\d+)" text-anchor="(\w+)">([^<]+)</text>', svg)
            if int(y) > 150]  # fmt: skip


def test_time_axis_labels_never_overlap() -> None:
    """Labels are placed by time and thinned so that no two overlap, whatever the spacing of the events."""
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 3, 1, 9, tzinfo=UTC)
    for gaps in ([1] * 300, [1, 1, 1, 3600 * 5], [86400 * 3] * 40, [0.2] * 50):
        events, t = [], t0
        for g in gaps:
            t += timedelta(seconds=g)
            events.append((t, 10))
        svg = charts.timeline(dashboards.cumulative(events), "tokens")
        ticks = _ticks(svg)
        assert 1 <= len(ticks) <= 6
        spans = []
        for x, anchor, text in ticks:
            w = 6.5 * len(text)  # 12 px sans-serif digits are at most ~6.5 px wide
            left = x if anchor == "start" else (x - w if anchor == "end" else x - w / 2)
            spans.append((left, left + w))
        spans.sort()
        for (_, a1), (b0, _) in zip(spans, spans[1:], strict=False):
            assert a1 <= b0, f"labels overlap for gaps {gaps[:3]}: {ticks}"
        assert len({text for _, _, text in ticks}) == len(ticks)


def test_xy_goes_logarithmic_only_when_the_data_spans_decades() -> None:
    wide = charts.xy([(1e3, 0.02), (1e4, 0.2), (1e5, 2.0), (1e6, 20.0)], "p", xlabel="tokens", ylabel="CNY",
                     log_note="log")  # fmt: skip
    assert "tokens (log)" in wide and "CNY (log)" in wide
    xs = {text: x for x, _, text in _ticks(wide)}
    assert abs((xs["10k"] - xs["1000"]) - (xs["1.0M"] - xs["100k"])) < 0.5
    narrow = charts.xy([(10, 0.1), (25, 0.3), (50, 0.5), (100, 0.7)], "c", xlabel="share", ylabel="acc",
                       log_note="log")
    assert "(log)" not in narrow


def test_sample_meta_rows_hide_pipeline_fields_and_keep_full_values() -> None:
    long = "Zhangbei Hills Wind Farm, north slope, turbine row C " * 4
    meta = {"curation": {"pii": {"email": 1}}, "source": "/home/p/logs.jsonl", "line": 7, "site": long,
            "language_score": 0.55551, "tags": ["a", "b"], "gear": {"stage": 2}}  # fmt: skip
    rows = views.flat_meta(meta)
    assert dict(rows) == {"site": long, "language_score": "0.5555", "tags": "a, b", "gear.stage": "2"}
    assert not views.public_field("meta.curation.pii.email") and not views.public_field("meta.source")
    assert views.public_field("meta.severity") and views.public_field("modality")
    assert views.field_label("meta.language_score") == ("field_language_score", True)
    assert views.field_label("meta.severity") == ("severity", False)


def test_histogram_shows_small_values_in_readable_units() -> None:
    edges = [-0.0019, 0.0, 0.0046, 0.0092]
    assert charts.scale_exponent(edges) == -3
    svg = charts.histogram(edges, [3, 9, 4], "v", exp=-3)
    labels = [text for _, _, text in _ticks(svg)]
    assert "-1.90" in labels and "9.20" in labels and not any("e-" in t for t in labels)


def test_no_chinese_string_is_english_left_in_place() -> None:
    """A Chinese entry copied from English (or an English one from Chinese) is caught at the table, too."""
    import re
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from langcheck import CJK, TERMS

    for key, zh in i18n.ZH.items():
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z-]*[A-Za-z]", re.sub(r"\{\w+\}", "", zh))
                 if w not in TERMS and not all(p in TERMS for p in w.split("-"))]  # fmt: skip
        assert not words or key in ("switch_lang",), f"ZH[{key!r}] = {zh!r} has English words {words}"
        assert not CJK.search(i18n.EN[key]) or key == "switch_lang", f"EN[{key!r}] has Chinese"


def test_every_pii_type_and_curation_step_has_a_name_in_both_languages() -> None:
    """A new PII type or step must not reach a report as a raw code in Chinese (or English) mode."""
    from ciyuan.curate.steps import registry
    from ciyuan.curate.steps.pii import PLACEHOLDERS

    for kind in PLACEHOLDERS:
        assert f"cr_pii_{kind}" in i18n.EN and f"cr_pii_{kind}" in i18n.ZH, kind
    for step in registry():
        assert f"cr_step_{step}" in i18n.EN and f"cr_step_{step}" in i18n.ZH, step
