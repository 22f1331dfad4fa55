"""Language id must not call Chinese "Japanese": Japanese always carries kana."""

from ciyuan.curate.steps.langid import _script_fix, detect

TERSE_ZH = [
    "2024-04-12 对云南高原风电场4号机组进行例行巡检。现场观察到液压泵连续运行 18 分钟。疑似软管接头开裂。",
    "故障记录 | 2023-10-07 00:54 | 北岸示范风电场 | 27号机组 |偏航系统检查发现：近一周平均对风偏差 10°。",
    "季度检查 2023-04-01，云南高原风电场 9号机组。螺栓防松标记完好，无渗漏，无异响。停机时长 57 小时。",
]


def test_terse_chinese_is_chinese() -> None:
    for text in TERSE_ZH:
        assert detect(text)[0] == "zh", text


def test_japanese_with_kana_stays_japanese() -> None:
    assert detect("今日は風車の点検を行いました。異常はありません。")[0] == "ja"


def test_script_rule_only_moves_han_without_kana() -> None:
    assert _script_fix("风机齿轮箱", "ja") == "zh"
    assert _script_fix("風車の点検", "ja") == "ja"
    assert _script_fix("plain english words", "it") == "it"
