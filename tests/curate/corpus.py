"""A planted test corpus, generated from a seed: prose in English and Chinese, boilerplate pages,
exact and near duplicates at measured similarity, every PII type, and a PII-free control set.

Prose is composed from small phrase tables so that no phrase repeats often enough to trip the
repetition rules, the way real prose does not.
"""

from __future__ import annotations

import random

EN_DET = ["the", "a", "our", "their", "this", "every", "one"]
EN_ADJ = [
    "careful",
    "young",
    "local",
    "senior",
    "quiet",
    "patient",
    "northern",
    "small",
    "busy",
    "modern",
    "rural",
    "experienced",
    "curious",
    "independent",
    "regional",
    "coastal",
    "friendly",
    "skilled",
    "practical",
    "ambitious",
    "veteran",
    "cautious",
    "famous",
    "thoughtful",
    "determined",
    "generous",
    "ordinary",
    "elderly",
    "municipal",
    "national",
    "private",
]
EN_NOUN = [
    "engineer",
    "farmer",
    "teacher",
    "council",
    "committee",
    "doctor",
    "student",
    "researcher",
    "nurse",
    "librarian",
    "designer",
    "manager",
    "journalist",
    "carpenter",
    "baker",
    "pilot",
    "chemist",
    "historian",
    "volunteer",
    "gardener",
    "mechanic",
    "architect",
    "painter",
    "translator",
    "surveyor",
    "captain",
    "officer",
    "merchant",
    "scientist",
    "ranger",
]
EN_VERB = [
    "reviewed",
    "described",
    "improved",
    "repaired",
    "measured",
    "planned",
    "studied",
    "questioned",
    "explained",
    "recorded",
    "organised",
    "examined",
    "delivered",
    "compared",
    "prepared",
    "published",
    "restored",
    "discussed",
    "collected",
    "tested",
    "supported",
    "presented",
    "analysed",
    "defended",
    "welcomed",
    "designed",
    "replaced",
]
EN_OBJ_ADJ = [
    "annual",
    "detailed",
    "new",
    "broken",
    "ancient",
    "careful",
    "revised",
    "public",
    "difficult",
    "useful",
    "hidden",
    "forgotten",
    "simple",
    "complex",
    "seasonal",
    "official",
    "curious",
    "narrow",
    "generous",
    "final",
]
EN_OBJ = [
    "report",
    "bridge",
    "harvest",
    "schedule",
    "budget",
    "museum",
    "garden",
    "proposal",
    "survey",
    "railway",
    "library",
    "manuscript",
    "experiment",
    "festival",
    "contract",
    "vaccine",
    "orchard",
    "telescope",
    "canal",
    "lighthouse",
    "theory",
    "warehouse",
    "archive",
    "ledger",
]
EN_PREP = ["before", "after", "during", "despite", "without", "beyond", "through", "across"]
EN_TAIL_ADJ = [
    "winter",
    "heavy",
    "long",
    "difficult",
    "busy",
    "early",
    "late",
    "sudden",
    "quiet",
    "summer",
    "stormy",
    "final",
    "uncertain",
    "second",
]
EN_TAIL = [
    "storms",
    "season",
    "negotiations",
    "weeks",
    "holidays",
    "floods",
    "elections",
    "months",
    "repairs",
    "inspections",
    "meetings",
    "rains",
    "delays",
    "celebrations",
]
EN_CONN = ["However,", "Meanwhile,", "In addition,", "Later,", "As a result,", "Surprisingly,", "", "", ""]

ZH_TIME = [
    "去年春天",
    "最近几年",
    "上个月",
    "今年夏天",
    "很多年前",
    "前不久",
    "那天早上",
    "冬天来临之前",
    "节日期间",
    "第二天",
]
ZH_ADJ = [
    "年轻的",
    "经验丰富的",
    "当地的",
    "认真的",
    "热心的",
    "退休的",
    "细心的",
    "勤劳的",
    "聪明的",
    "耐心的",
    "友善的",
    "能干的",
    "普通的",
    "著名的",
]
ZH_NOUN = [
    "工程师",
    "农民",
    "老师",
    "医生",
    "学生",
    "研究员",
    "护士",
    "图书管理员",
    "设计师",
    "记者",
    "木匠",
    "厨师",
    "司机",
    "画家",
    "志愿者",
    "园丁",
    "店主",
    "科学家",
    "邮递员",
    "村干部",
]
ZH_PLACE_MOD = [
    "河边的",
    "城市的",
    "山脚下的",
    "学校的",
    "海边的",
    "医院的",
    "新建的",
    "热闹的",
    "安静的",
    "古老的",
    "偏远的",
    "郊外的",
]
ZH_PLACE_N = ["小镇", "老街区", "村庄", "实验室", "渔港", "走廊", "图书馆", "工厂", "集市", "院子", "车站", "码头"]
ZH_PLACE_SUF = ["里", "上", "旁边", "附近", "中"]
ZH_VERB = [
    "整理了",
    "修复了",
    "检查了",
    "讨论了",
    "记录了",
    "改进了",
    "设计了",
    "发表了",
    "测量了",
    "保存了",
    "介绍了",
    "准备了",
    "完成了",
    "研究了",
    "展示了",
    "翻译了",
]
ZH_OBJ_ADJ = [
    "一份详细的",
    "一座古老的",
    "一个新的",
    "一批珍贵的",
    "一项重要的",
    "几本破旧的",
    "一套完整的",
    "一张手绘的",
    "一些零散的",
    "两份临时的",
]
ZH_OBJ = [
    "报告",
    "桥梁",
    "计划",
    "地图",
    "档案",
    "设备",
    "方案",
    "资料",
    "作品",
    "图纸",
    "账本",
    "标本",
    "课程",
    "预算",
]
ZH_TAIL_S = ["大家", "邻居们", "同事们", "孩子们", "老人们", "专家", "游客", "家人"]
ZH_TAIL_V = ["都觉得", "纷纷表示", "一致认为", "后来说", "常常提起", "没想到", "私下觉得"]
ZH_TAIL_O = ["很有意义", "十分难得", "值得推广", "非常辛苦", "比预想的好", "有些意外", "来之不易", "颇为有趣"]


def en_sentence(rng: random.Random) -> str:
    conn = rng.choice(EN_CONN)
    subj = f"{rng.choice(EN_DET)} {rng.choice(EN_ADJ)} {rng.choice(EN_NOUN)}"
    s = f"{conn} {subj}" if conn else subj[0].upper() + subj[1:]
    obj = f"the {rng.choice(EN_OBJ_ADJ)} {rng.choice(EN_OBJ)}"
    tail = f"{rng.choice(EN_PREP)} the {rng.choice(EN_TAIL_ADJ)} {rng.choice(EN_TAIL)}"
    return f"{s} {rng.choice(EN_VERB)} {obj} {tail}."


def zh_sentence(rng: random.Random) -> str:
    tail = "。"
    if rng.random() < 0.4:
        tail = f"，{rng.choice(ZH_TAIL_S)}{rng.choice(ZH_TAIL_V)}{rng.choice(ZH_TAIL_O)}。"
    place = f"在{rng.choice(ZH_PLACE_MOD)}{rng.choice(ZH_PLACE_N)}{rng.choice(ZH_PLACE_SUF)}"
    return (
        f"{rng.choice(ZH_TIME)}，{rng.choice(ZH_ADJ)}{rng.choice(ZH_NOUN)}{place}"
        f"{rng.choice(ZH_VERB)}{rng.choice(ZH_OBJ_ADJ)}{rng.choice(ZH_OBJ)}{tail}"
    )


def en_prose(rng: random.Random, paragraphs: int = 4) -> str:
    return "\n\n".join(" ".join(en_sentence(rng) for _ in range(rng.randint(4, 7))) for _ in range(paragraphs))


def zh_prose(rng: random.Random, paragraphs: int = 4) -> str:
    return "\n\n".join("".join(zh_sentence(rng) for _ in range(rng.randint(3, 6))) for _ in range(paragraphs))


BOILERPLATE = [
    "Home | About us | Products | Services | Contact\nLogin\nSign up\nCart (0)\nHome | About us | Products | "
    "Services | Contact\n© 2024 Example Corp. All rights reserved.\nPrivacy\nTerms\nSitemap",
    ("We use cookies to improve your experience. Accept all cookies.\n" * 8) + "Click here to continue.",
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et "
    "dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris. " * 3,
    "\n".join(f"• Item {i}" for i in range(40)),
    "首页 | 关于我们 | 产品中心 | 新闻动态 | 联系我们\n登录\n注册\n购物车\n"
    "版权所有 ©2024 某某公司\n备案号：京ICP备12345678号\n"
    "首页 | 关于我们 | 产品中心 | 新闻动态 | 联系我们",
    "Download now!!! Download now!!! Download now!!!\n" * 10,
    "#tag #sale #deal #promo #free #win #now #best #cheap #buy " * 10,
    "Loading...\nPlease wait...\nLoading...\nPlease wait...\nLoading...\nPlease wait...",
]


def boilerplate_pages(rng: random.Random, n: int) -> list[str]:
    """Pages every quality rule set should reject: menus, banners, placeholders, lists, spam."""
    return [BOILERPLATE[i % len(BOILERPLATE)] + ("" if i < len(BOILERPLATE) else f"\n{i}") for i in range(n)]


# PII ------------------------------------------------------------------------------------------

# The generators are shared with scripts/make_sample.py and the labelled PII set (one copy).
from ciyuan.curate.pii_samples import (  # noqa: E402
    bank_card,
    cn_id,
    email,
    intl_phone,
    ipv4,
    ipv6,
    luhn_complete,  # noqa: F401  (re-exported for older tests)
)
from ciyuan.curate.pii_samples import cn_mobile_styled as cn_mobile  # noqa: E402

PII_MAKERS = {
    "email": email,
    "phone": lambda r: cn_mobile(r) if r.random() < 0.5 else intl_phone(r),
    "cn_id": cn_id,
    "bank_card": bank_card,
    "ipv4": ipv4,
    "ipv6": ipv6,
}
EN_FRAMES = [
    "Please contact {} if you have questions about the invoice.",
    "The customer wrote down {} on the registration form.",
    "According to the log, the request came from {} late at night.",
    "For refunds, the account {} was given to the clerk.",
]
ZH_FRAMES = [
    "请联系{}了解详情。",
    "客户在登记表上填写了{}，工作人员已经核对。",
    "日志显示请求来自{}，时间是深夜。",
    "退款账户为{}，请尽快处理。",
]


def pii_records(rng: random.Random, per_type: int = 20) -> list[tuple[str, dict[str, list[str]]]]:
    """(text, planted values by type): prose with PII embedded in English or Chinese sentences."""
    out = []
    for kind, make in PII_MAKERS.items():
        for i in range(per_type):
            value = make(rng)
            zh = i % 2 == 1
            frame = rng.choice(ZH_FRAMES if zh else EN_FRAMES)
            prose = zh_sentence(rng) if zh else en_sentence(rng)
            out.append((f"{prose} {frame.format(value)} {prose}", {kind: [value]}))
    # several types in one record
    vals = {k: [m(rng)] for k, m in PII_MAKERS.items()}
    text = " ".join(rng.choice(EN_FRAMES).format(v[0]) for v in vals.values())
    out.append((text, vals))
    return out


CONTROL_TEXTS = [
    "The meeting is on 2024-01-15 at 10:30:00, and the follow-up on 15/02/2024 at 09:45.",
    "We upgraded from version 1.2.3.4 to v2.0.1 and then to release 3.10.12 last week.",
    "The laptop costs $1,299.99 (was $1,499.00), a saving of 13.3% or about ¥9,400.",
    "Part no. 12-3456-789 and model ABC-1234-5678 ship with firmware 4.2.0-rc1.",
    "ISBN 978-3-16-148410-0 was printed in 2019; barcode 4006381333931 is on the back.",
    "Order #20231015001 contains 1234567 units; batch 2023101512345678 passed inspection.",
    "2023年10月15日，售价￥3999.00元，型号XJ-2000-15，库存 12000 件。",
    "The ratio 3.14159 and the constant 2.71828 appear in equation (4) on page 128.",
    "Coordinates 39.9042, 116.4074 mark the city centre; elevation 43.5 m.",
    "Python 3.11.4 and Node 20.10.0 were installed on 12 servers with 64 GB each.",
    "Flight CA1234 departs at 08:05 from gate 23; seat 14C; booking ref 7Q2XKD.",
    "The 2022-2023 season ended 3-1; attendance was 45,678 on 2023-05-28.",
    "Temperature rose from -5.5°C to 12.25°C between 06:00 and 14:00.",
    "Chapter 12, section 4.3.2, lists 150 examples across 1998-2004.",
    "统计显示，2021年至2023年间增长了 25.6%，共计 3,456,789 人次。",
    "The serial 1234-5678-9012 is not a card, and 000-00-0000 is a dummy.",
    "Call extension 4512 or room 305; the code is 8842.",
    "Timestamps 1700000000 and 1700000123 are seconds since the epoch.",
]


def control_records() -> list[str]:
    """Texts full of digits that are not PII: the pii step must leave each unchanged."""
    return list(CONTROL_TEXTS)


# duplicates --------------------------------------------------------------------------------------


def edit_copy(text: str, edits: int, rng: random.Random, cjk: bool) -> str:
    """Copy of ``text`` with ``edits`` substitutions of a word (or CJK character) by a novel one."""
    if cjk:
        chars = list(text)
        pos = [i for i, c in enumerate(chars) if "\u4e00" <= c <= "\u9fff"]
        for i in rng.sample(pos, min(edits, len(pos))):
            chars[i] = chr(0x4E00 + rng.randint(0x1000, 0x4000))
        return "".join(chars)
    toks = text.split(" ")
    for i in rng.sample(range(len(toks)), min(edits, len(toks))):
        toks[i] = "x" + "".join(rng.choice("qzjkvwy") for _ in range(6))
    return " ".join(toks)


def near_dup_corpus(seed: int = 7, families: int = 120) -> list[dict]:
    """Records in families: a base document and edited copies spanning Jaccard ~0.5..1 to the base."""
    rng = random.Random(seed)
    records = []
    for f in range(families):
        cjk = f % 3 == 2
        base = zh_prose(rng) if cjk else en_prose(rng)
        records.append({"id": f"f{f:03d}-0", "text": base, "meta": {}})
        for c in range(1, rng.randint(1, 5) + 1):
            edits = rng.choice([1, 2, 3, 4, 6, 8, 12, 20])
            records.append({"id": f"f{f:03d}-{c}", "text": edit_copy(base, edits, rng, cjk), "meta": {}})
    for s in range(families // 2):  # unrelated singletons
        records.append({"id": f"s{s:03d}", "text": en_prose(rng) if s % 2 else zh_prose(rng), "meta": {}})
    rng.shuffle(records)
    return records


def planted_corpus(seed: int = 1) -> list[dict]:
    """English and Chinese prose, boilerplate, 10 exact and 10 near copies, PII; shuffled."""
    rng = random.Random(seed)
    recs = []
    for i in range(40):
        recs.append({"id": f"en{i}", "text": en_prose(rng)})
        recs.append({"id": f"zh{i}", "text": zh_prose(rng)})
    for i, t in enumerate(boilerplate_pages(rng, 10)):
        recs.append({"id": f"bp{i}", "text": t})
    for i in range(10):
        recs.append({"id": f"exact{i}", "text": recs[i * 2]["text"]})
        recs.append({"id": f"near{i}", "text": edit_copy(recs[i * 2 + 1]["text"], 1, rng, cjk=True)})
    for i, (t, _) in enumerate(pii_records(rng, per_type=2)):
        recs.append({"id": f"pii{i}", "text": en_prose(rng, 3) + "\n\n" + t})
    rng.shuffle(recs)
    return recs
