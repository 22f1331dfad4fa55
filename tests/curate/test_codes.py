"""Every rejection has a stable code ``step.rule`` that curate, show, report and the card print and
``show --rejected --reason`` finds; the README's ``--reason`` examples return what they say."""

import json
import re
from collections import Counter
from pathlib import Path

from clihelp import cli
from test_curate import dataset  # noqa: F401  (fixture)
from typer.testing import CliRunner

from ciyuan.curate.codes import code_matches, rejection_code

runner = CliRunner()
README = Path(__file__).resolve().parents[2] / "README.md"


def printed_codes(out: dict) -> Counter:
    codes: Counter = Counter()
    for s in out["steps"]:
        codes.update(s["rejected_by_code"])
    return codes


def test_code_matching_rules() -> None:
    assert rejection_code("quality", "c4_curly_bracket") == "quality.c4_curly_bracket"
    assert code_matches("quality.c4_curly_bracket", "quality.c4_curly_bracket")
    assert code_matches("quality.c4_curly_bracket", "quality")
    assert code_matches("quality.c4_curly_bracket", "QUALITY.c4")
    assert code_matches("langid.low_score", "low_score")
    assert code_matches("langid.language_fr", "langid.language")
    assert code_matches("exact_dedup.exact_duplicate", "exact_dedup")
    assert not code_matches("exact_dedup.exact_duplicate", "exact")  # "exact" is no step
    assert not code_matches("quality.c4_curly_bracket", "qual")
    assert not code_matches("near_dedup.near_duplicate", "exact_dedup")
    assert not code_matches("quality.gopher_stop_words", "")


def test_every_code_curate_prints_is_found_by_show_report_and_summary(dataset, tmp_path):  # noqa: F811
    out = cli("curate", dataset.ref, "--recipe", "text-pretrain", "--workers", "1")
    ref = f"plant@{out['version'][:12]}"
    codes = printed_codes(out)
    steps = {c.split(".")[0] for c in codes}
    assert {"quality", "exact_dedup", "near_dedup"} <= steps, codes
    assert sum(codes.values()) == out["rejected"]
    for code, n in codes.items():
        shown = cli("show", ref, "--rejected", "--reason", code, "--limit", "100000")
        assert len(shown["items"]) == n, code
        assert {it["code"] for it in shown["items"]} == {code}
        rule = code.split(".", 1)[1]  # the rule alone, as earlier versions printed it
        assert len(cli("show", ref, "--rejected", "--reason", rule, "--limit", "100000")["items"]) >= n
    for step in steps:  # a step name is a prefix of its codes
        want = sum(n for c, n in codes.items() if c.startswith(step + "."))
        assert len(cli("show", ref, "--rejected", "--reason", step, "--limit", "100000")["items"]) == want
    # the version summary counts by code, and so does the Croissant card the API serves
    assert cli("show", ref)["rejected_by_reason"] == dict(codes)
    from ciyuan.appraise.card import build_card
    from ciyuan.store import resolve

    v = resolve(ref)
    card = json.dumps(build_card(v.to_dict(), v.manifest), ensure_ascii=False)
    assert all(f'\\"{c}\\"' in card for c in codes)  # inside rai:dataPreprocessingProtocol
    html_path = tmp_path / "r.html"
    rep = cli("report", ref, "--out", str(html_path))
    assert printed_codes(rep) == codes
    page = html_path.read_text(encoding="utf-8")
    assert all(f'<code translate="no">{c}</code>' in page for c in codes)


def test_report_shows_rejections_by_language(dataset, tmp_path):  # noqa: F811
    out = cli("curate", dataset.ref, "--recipe", "text-pretrain", "--workers", "1")
    ref = f"plant@{out['version'][:12]}"
    html_path = tmp_path / "r.html"
    rep = cli("report", ref, "--out", str(html_path))
    by_lang = rep["rejections_by_language"]
    assert {"en", "zh"} <= set(by_lang)
    assert sum(d["kept"] for d in by_lang.values()) == out["kept"]
    assert sum(d["rejected"] for d in by_lang.values()) == out["rejected"]
    for d in by_lang.values():
        assert d["records"] == d["kept"] + d["rejected"]
        assert sum(d["rejected_by_code"].values()) == d["rejected"]
    merged: Counter = Counter()
    for d in by_lang.values():
        merged.update(d["rejected_by_code"])
    assert merged == printed_codes(out)
    page = html_path.read_text(encoding="utf-8")
    assert "Rejections by language" in page and "Keep rate" in page


def test_readme_reason_examples_return_what_they_say(dataset):  # noqa: F811
    examples = re.findall(r"ciyuan show \S+ --rejected --reason (\S+)", README.read_text(encoding="utf-8"))
    assert examples, "the README shows --reason"
    out = cli("curate", dataset.ref, "--recipe", "text-pretrain", "--workers", "1")
    ref = f"plant@{out['version'][:12]}"
    for query in examples:
        items = cli("show", ref, "--rejected", "--reason", query, "--limit", "100000")["items"]
        assert items, f"README's --reason {query} matches nothing"
        assert all(code_matches(it["code"], query) for it in items), query
