"""Fast checks of the web layer's pieces that need no browser: strings, charts, forms, redirects."""

from __future__ import annotations

import pytest

from ciyuan.errors import InvalidInput
from ciyuan.web import charts, i18n, views
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
            {"field": "meta.severity", "op": "gte", "value": 2.5},
            {"field": "meta.severity", "op": "lte", "value": 4},
        ]},
        "token_budget": 10_000,
    }  # fmt: skip
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
    pts = views.cumulative([(t0 + timedelta(seconds=30), 5), (t0, 2), (t0 + timedelta(seconds=30), 1)])
    assert pts[0] == ("", 0.0) and [v for _, v in pts] == [0.0, 2, 8]
