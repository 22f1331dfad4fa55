"""Curation is fair to every language: the same page in Chinese, Japanese, Korean and English is
kept (or rejected) alike, and the strict web rules stay available as the ``web`` recipe."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from ciyuan.curate.pipeline import run_steps
from ciyuan.curate.recipes import build_steps, load_recipe
from ciyuan.curate.steps import make_step
from ciyuan.curate.steps.quality import STOP_WORDS, _count_zh_stops, _width

HERE = Path(__file__).resolve().parent
# One man page (a made-up turbinectl(8), with a configuration example in braces) in four languages.
PAGES = json.loads((HERE / "data" / "manpages.json").read_text(encoding="utf-8"))


def curated(recipe: str) -> dict[str, dict]:
    recs = [{"id": lang, "text": text, "meta": {}} for lang, text in PAGES.items()]
    return {r["id"]: r for r in run_steps(recs, build_steps(load_recipe(recipe)))}


def test_text_pretrain_keeps_the_same_page_in_every_language():
    out = curated("text-pretrain")
    for lang, rec in out.items():
        assert "_rejected" not in rec, (lang, rec["_rejected"])
        assert rec["meta"]["language"] == lang
        assert rec["meta"]["language_score"] >= 0.8, lang  # before: 0.49 for the English page


def test_web_recipe_keeps_the_strict_c4_rule():
    out = curated("web")
    for lang, rec in out.items():
        assert rec["_rejected"]["code"] == "quality.c4_curly_bracket", lang


def test_chinese_stop_words_are_words_not_characters():
    stops = STOP_WORDS["zh"]
    assert _count_zh_stops("这是我的书，也是你的书。", stops, 10) >= 4
    # 的 in 目的, 是 in 但是, 在 in 现在, 有 in 所有: characters, but not the stop words
    assert _count_zh_stops("目的地现在但是所有", stops, 10) == 0


def test_a_hangul_character_is_as_wide_as_a_han_character():
    assert _width("비밀번호") == _width("密码密码") == 8


def test_korean_option_lines_are_not_short_lines():
    step = make_step("quality", {"score_only": True})
    out = run_steps([{"id": "ko", "text": PAGES["ko"], "meta": {"language": "ko"}}], [step])
    assert "fineweb_short_lines" not in out[0]["meta"].get("quality_failed", [])


def _bench():
    spec = importlib.util.spec_from_file_location("bench_fairness", HERE.parents[1] / "bench" / "bench_fairness.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_parallel_man_pages_of_this_machine(tmp_path):
    """The benchmark's figure: at least half kept in every language, CJK at least 0.8x English."""
    bench = _bench()
    if shutil.which("groff") is None:
        pytest.skip(f"groff is not installed; to run: {bench.HOW}")
    records = bench.load_corpus(tmp_path / "pages")
    langs = {r["meta"]["source_language"] for r in records}
    if "en" not in langs or not langs & {"zh", "ja", "ko"}:
        pytest.skip(f"no translated man pages with English originals here; to get them: {bench.HOW}")
    res = bench.run(records, "text-pretrain", repeat=1)
    for lang, d in res["by_language"].items():
        assert d["keep_rate"] >= 0.5, (lang, d)
    assert res["cjk_over_en"] >= 0.8, res


def test_two_script_text_counts_the_stop_words_of_both():
    # a Chinese page whose option names and licence are English: either list's stop words count
    text = "\n".join(
        ["dirname - 去除文件名的最后一个组成部分。", "将每个名称的最后一个组成部分移除并输出。"]
        + [f"--option-{i} value-{i} enable mode-{i} print output-{i} line-{i}" for i in range(12)]
    )
    step = make_step("quality", {"score_only": True})
    for lang in ("en", "zh"):
        out = run_steps([{"id": lang, "text": text, "meta": {"language": lang}}], [step])
        assert "gopher_stop_words" not in out[0]["meta"].get("quality_failed", []), lang


def test_urls_and_paths_do_not_outweigh_chinese():
    from ciyuan.curate.steps.langid import detect

    text = (
        "GNU coreutils 的在线帮助：<https://www.gnu.org/software/coreutils/dirname>\n"
        "请向 <https://translationproject.org/team/zh_CN.html> 报告翻译错误。"
    )
    assert detect(text)[0] == "zh"


def test_length_can_count_a_cjk_character_as_two():
    zh = "风机齿轮箱油温偏高，已更换滤芯并复测。" * 6  # 114 characters: as much as ~250 Latin letters
    plain = make_step("length", {"min_chars": 200})
    fair = make_step("length", {"min_chars": 200, "cjk_char_weight": 2})
    assert "_rejected" in run_steps([{"id": "a", "text": zh}], [plain])[0]
    assert "_rejected" not in run_steps([{"id": "a", "text": zh}], [fair])[0]
    en = "x" * 150
    assert "_rejected" in run_steps([{"id": "b", "text": en}], [fair])[0]  # Latin text is counted as before
