"""Seeded generators of PII values and a labelled PII set (Chinese and English), in one copy.

Shared by ``scripts/make_sample.py`` (the PII planted in the bundled sample) and the tests
(``tests/curate/test_pii*.py``: recall and precision per type, the figures in docs/curation.md), so the
formats the detector is measured on are the formats the sample plants. Standard library only: the
sample script imports it without the rest of ciyuan's dependencies.

``labelled_set(seed)`` gives texts with the exact span and type of every planted value, covering each
type in several written forms (the tricky ones of issue 10 included); ``clean_technical_lines(seed)``
gives technical text with no PII (versions, timestamps, hashes, order numbers that fail Luhn, code)
that the detector must leave alone.

Over 500 lines because it is data: the written forms of every PII type in two languages, each
generator beside the checksum rule it must satisfy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

# --------------------------------------------------------------------------------------------------
# checksums

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"


def cn_id_check(body17: str) -> str:
    """GB 11643 (ISO 7064 MOD 11-2) check character of the first 17 digits of a resident ID."""
    return ID_CHECK[sum(int(ch) * w for ch, w in zip(body17, ID_WEIGHTS, strict=True)) % 11]


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` pass the Luhn check."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        n = int(ch) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return str((10 - total % 10) % 10)


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    """A ``length``-digit number starting with ``prefix`` whose last digit satisfies the Luhn check."""
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    return body + luhn_check_digit(body)


def luhn_fails(prefix: str, length: int, rng: random.Random) -> str:
    """A number of the same shape whose check digit is wrong (an order number, not a card)."""
    good = luhn_complete(prefix, length, rng)
    return good[:-1] + str((int(good[-1]) + 1 + rng.randrange(9)) % 10)


# --------------------------------------------------------------------------------------------------
# the bundled sample's generators (scripts/make_sample.py; their random draws fix the sample's bytes)

SAMPLE_CN_AREAS = ["110105", "310115", "440305", "320102", "510104", "130722", "630102", "650102", "370202", "530102"]
MOBILE_PREFIXES = ["133", "135", "136", "138", "139", "150", "151", "158", "177", "180", "186", "188", "189", "199"]


def cn_resident_id(rng: random.Random, areas: list[str] = SAMPLE_CN_AREAS) -> str:
    """An 18-digit PRC resident ID of the right shape with a correct ISO 7064 MOD 11-2 check digit."""
    born = date(1965, 1, 1) + timedelta(days=rng.randrange(35 * 365))
    body = f"{rng.choice(areas)}{born:%Y%m%d}{rng.randint(0, 999):03d}"
    return body + cn_id_check(body)


def luhn_card(rng: random.Random, length: int) -> str:
    """A UnionPay-style card number (62...) whose last digit satisfies the Luhn check."""
    return luhn_complete("62", length, rng)


def cn_mobile(rng: random.Random) -> str:
    """An 11-digit mainland mobile number, plain."""
    return rng.choice(MOBILE_PREFIXES) + f"{rng.randint(0, 99999999):08d}"


# --------------------------------------------------------------------------------------------------
# the curation tests' generators (tests/curate/corpus.py)


def cn_id(rng: random.Random) -> str:
    body = (
        f"{rng.choice(['110105', '310104', '440305', '510107', '330106'])}"
        f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    )
    return body + cn_id_check(body)


def bank_card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("62", 19), ("62", 16), ("37", 15), ("6011", 16)])
    num = luhn_complete(prefix, length, rng)
    style = rng.randint(0, 2)
    if style == 1 and length == 16:
        return " ".join(num[i : i + 4] for i in range(0, 16, 4))
    if style == 2 and length == 16:
        return "-".join(num[i : i + 4] for i in range(0, 16, 4))
    return num


def cn_mobile_styled(rng: random.Random) -> str:
    num = f"1{rng.choice('3456789')}{rng.randint(0, 9)}{rng.randint(0, 99999999):08d}"
    style = rng.randint(0, 3)
    if style == 1:
        return f"+86 {num}"
    if style == 2:
        return f"{num[:3]}-{num[3:7]}-{num[7:]}"
    if style == 3:
        return f"+86-{num[:3]} {num[3:7]} {num[7:]}"
    return num


def intl_phone(rng: random.Random) -> str:
    return rng.choice(
        [
            f"+1 ({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
            f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
            f"+49 30 {rng.randint(100000, 999999)}",
            f"+81 3-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
            f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(0, 9999):04d}",
            f"010-{rng.randint(20000000, 89999999)}",
        ]
    )


def email(rng: random.Random) -> str:
    user = rng.choice(["zhang.wei", "li_na", "j.smith", "maria+news", "wang2024", "support"])
    dom = rng.choice(["example.com", "mail.example.cn", "corp.example.org", "qq.com", "163.com"])
    return f"{user}{rng.randint(1, 99)}@{dom}"


def ipv4(rng: random.Random) -> str:
    return ".".join(str(rng.randint(1, 254)) for _ in range(4))


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return ":".join(groups)
    return f"2001:db8::{groups[6]}:{groups[7]}"


# --------------------------------------------------------------------------------------------------
# the labelled set: every type in the forms people write it


def fullwidth(s: str) -> str:
    """ASCII letters, digits and punctuation as their full-width forms (U+FF01..U+FF5E)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in s)


def _group(num: str, sizes: tuple[int, ...], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(num[i : i + n])
        i += n
    if i < len(num):
        out.append(num[i:])
    return sep.join(out)


CARD_RANGES: list[tuple[str, str, tuple[int, ...]]] = [
    # (scheme, prefix, lengths); prefixes from the schemes' published IIN ranges
    ("visa", "4", (16,)),
    ("mastercard", "51", (16,)),
    ("mastercard", "55", (16,)),
    ("mastercard-2", "2221", (16,)),
    ("amex", "37", (15,)),
    ("unionpay", "62", (16, 17, 18, 19)),
    ("unionpay", "6222", (19,)),
    ("maestro", "5018", (16, 19)),
    ("maestro", "5020", (16,)),
    ("maestro", "5038", (16,)),
    ("maestro", "6304", (16, 19)),
    ("maestro", "6759", (16, 19)),
    ("maestro", "6761", (16,)),
    ("boc-great-wall", "6013", (16, 19)),
    ("icbc", "9558", (19,)),
    ("jcb", "3530", (16,)),
    ("discover", "6011", (16,)),
    ("discover", "65", (16,)),
    ("mir", "2200", (16,)),
]


def card_value(rng: random.Random, fmt: str) -> str:
    scheme, prefix, lengths = rng.choice(CARD_RANGES)
    n = rng.choice(lengths)
    num = luhn_complete(prefix, n, rng)
    if fmt == "plain":
        return num
    if fmt == "spaced":
        return _group(num, (4, 6, 5) if n == 15 else (4,) * (n // 4), " ")
    if fmt == "dashed":
        return _group(num, (4, 6, 5) if n == 15 else (4,) * (n // 4), "-")
    if fmt == "fullwidth":
        return fullwidth(num)
    raise ValueError(fmt)


PROVINCE_CODES = ["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41",
                  "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65"]  # fmt: skip


def _area(rng: random.Random) -> str:
    return rng.choice(PROVINCE_CODES) + f"{rng.randint(1, 99):02d}{rng.randint(1, 99):02d}"


def cn_id_value(rng: random.Random, fmt: str) -> str:
    born = date(1940, 1, 1) + timedelta(days=rng.randrange(65 * 365))
    if fmt == "old15":
        return f"{_area(rng)}{born:%y%m%d}{rng.randint(0, 999):03d}"
    body = f"{_area(rng)}{born:%Y%m%d}{rng.randint(0, 999):03d}"
    num = body + cn_id_check(body)
    if fmt == "x_final":  # draw until the check character is X (1 in 11)
        while not num.endswith("X"):
            body = body[:14] + f"{rng.randint(0, 999):03d}"
            num = body + cn_id_check(body)
        return num
    if fmt == "plain":
        return num
    if fmt == "spaced":
        return f"{num[:6]} {num[6:14]} {num[14:]}"
    if fmt == "spaced4":
        return _group(num, (4, 4, 4, 4), " ")
    if fmt == "fullwidth":
        return fullwidth(num)
    raise ValueError(fmt)


def phone_value(rng: random.Random, fmt: str) -> str:
    m = rng.choice(MOBILE_PREFIXES) + f"{rng.randint(0, 99999999):08d}"
    forms = {
        "plain": m,
        "plus86": f"+86 {m}",
        "plus86_spaced": f"+86 {m[:3]} {m[3:7]} {m[7:]}",
        "plus86_dashed": f"+86-{m[:3]}-{m[3:7]}-{m[7:]}",
        "86_dash": f"86-{m}",
        "0086": f"0086 {m}",
        "paren86": f"(+86){m}",
        "dotted": f"{m[:3]}.{m[3:7]}.{m[7:]}",
        "dashed": f"{m[:3]}-{m[3:7]}-{m[7:]}",
        "spaced": f"{m[:3]} {m[3:7]} {m[7:]}",
        "odd_4_3_4": f"{m[:4]} {m[4:7]} {m[7:]}",
        "odd_3_8": f"{m[:3]}-{m[3:]}",
        "fullwidth": fullwidth(m),
        "fullwidth_plus86": fullwidth(f"+86 {m}"),
        "landline": f"0{rng.choice(['10', '21', '755', '571', '20'])}-{rng.randint(20000000, 89999999)}",
        "landline_paren": f"(0{rng.choice(['755', '571', '28'])}) {rng.randint(2000, 8999)} {rng.randint(1000, 9999)}",
        "intl": intl_phone(rng),
    }
    return forms[fmt]


LATIN_LOCALS = ["münchen", "josé.garcía", "françois", "søren.kierkegaard", "zoë", "jürgen.müller", "çağla"]
LATIN_DOMAINS = ["example.de", "correo.es", "bücher.example", "exämple.fr", "mail.example.org"]
CJK_LOCALS = ["用户", "张伟", "李娜", "客服", "王小明", "联系"]
CJK_DOMAINS = ["例子.中国", "公司.cn", "例子.公司", "测试.网络", "邮件.中國"]
CYR = [("пользователь", "пример.рф"), ("иван.петров", "почта.рф")]


def email_value(rng: random.Random, fmt: str) -> str:
    if fmt == "ascii":
        return email(rng)
    if fmt == "latin_unicode":
        return f"{rng.choice(LATIN_LOCALS)}@{rng.choice(LATIN_DOMAINS)}"
    if fmt == "cjk":
        return f"{rng.choice(CJK_LOCALS)}@{rng.choice(CJK_DOMAINS)}"
    if fmt == "cjk_local_ascii_domain":
        return f"{rng.choice(CJK_LOCALS)}{rng.randint(1, 99)}@example.com"
    if fmt == "cyrillic":
        local, dom = rng.choice(CYR)
        return f"{local}@{dom}"
    if fmt == "fullwidth":
        return fullwidth(email(rng))
    raise ValueError(fmt)


def passport_value(rng: random.Random, fmt: str) -> str:
    d = lambda n: "".join(str(rng.randint(0, 9)) for _ in range(n))  # noqa: E731
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    if fmt == "cn_e":
        return "E" + d(8)
    if fmt == "cn_g":
        return "G" + d(8)
    if fmt == "cn_e_letter":
        return "E" + rng.choice(letters) + d(7)
    if fmt == "us":  # needs the keyword
        return d(9)
    if fmt == "letter_digits":  # India, UK-style (needs the keyword)
        return rng.choice(letters) + d(7)
    if fmt == "fr":
        return d(2) + rng.choice(letters) + rng.choice(letters) + d(5)
    raise ValueError(fmt)


SURNAMES_GEN = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史黎贺顾毛郝龚邵万钱覃武戴孔汤庞樊兰殷施陶洪翟安颜倪严牛温芦季俞章鲁葛伍申尤毕聂柴焦向柳邢岳齐沿梅莫庄辛管祝左涂谷祁时舒耿牟卜路詹关苗凌费纪靳盛童欧甄项曲成游阳裴席卫查屈鲍位覃霍翁隋植甘景薄单包司柏宁柯阮桂闵解强柴华车冉房边"  # noqa: E501
COMPOUND_SURNAMES = ["欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "夏侯", "司徒"]
GIVEN_CHARS = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超霞平刚英华建国志红玉兰海燕文辉鹏飞宇浩然晨阳欣怡子涵雪梅俊博思琪嘉颖"
EN_FIRST = ["John", "Mary", "David", "Emily", "Michael", "Sarah", "James", "Laura", "Robert", "Anna", "Thomas",
            "Olivia"]  # fmt: skip
EN_LAST = ["Smith", "Johnson", "Brown", "Davis", "Wilson", "Taylor", "Anderson", "Clarke", "Walker", "Hughes"]


def zh_name(rng: random.Random) -> str:
    sur = rng.choice(COMPOUND_SURNAMES) if rng.random() < 0.08 else rng.choice(SURNAMES_GEN[:100])
    return sur + "".join(rng.choice(GIVEN_CHARS) for _ in range(rng.choice((1, 2, 2))))


def en_name(rng: random.Random) -> str:
    return f"{rng.choice(EN_FIRST)} {rng.choice(EN_LAST)}"


ZH_PLACES = [
    ("北京市", ["朝阳区", "海淀区", "东城区"]),
    ("上海市", ["浦东新区", "徐汇区", "静安区"]),
    ("广东省深圳市", ["南山区", "福田区"]),
    ("广东省广州市", ["天河区", "越秀区"]),
    ("浙江省杭州市", ["西湖区", "滨江区"]),
    ("江苏省南京市", ["鼓楼区", "玄武区"]),
    ("四川省成都市", ["武侯区", "锦江区"]),
    ("湖北省武汉市", ["洪山区", "江汉区"]),
    ("山东省青岛市", ["市南区", "崂山区"]),
    ("天津市", ["和平区", "南开区"]),
    ("重庆市", ["渝中区", "江北区"]),
    ("陕西省西安市", ["雁塔区", "碑林区"]),
]
ZH_ROADS = ["建国路", "中山路", "人民路", "解放大道", "文三路", "科技园路", "世纪大道", "南京东路",
            "长安街", "淮海中路", "学院路", "友谊路", "和平街", "幸福巷", "长江路"]  # fmt: skip
ZH_RURAL = [("河北省保定市", "清苑县", "东闾乡", "南王庄村"), ("河南省周口市", "淮阳县", "城关镇", "李庄村"),
            ("湖南省邵阳市", "隆回县", "桃洪镇", "新田村")]  # fmt: skip
EN_STREETS = ["Baker Street", "Main Street", "Oak Avenue", "Maple Drive", "Elm Road", "Park Lane", "Sunset Boulevard"]


def address_value(rng: random.Random, fmt: str) -> str:
    city, districts = rng.choice(ZH_PLACES)
    dist = rng.choice(districts)
    road = rng.choice(ZH_ROADS)
    num = f"{rng.randint(1, 999)}号"
    if fmt == "full":
        return f"{city}{dist}{road}{num}"
    if fmt == "with_room":
        unit = rng.choice(
            [f"{rng.randint(1, 30)}栋{rng.randint(1, 30)}0{rng.randint(1, 9)}室", f"{rng.randint(1, 12)}号楼"
             f"{rng.randint(1, 3)}单元{rng.randint(1, 30)}0{rng.randint(1, 9)}室", f"{rng.randint(100, 2999)}室"]
        )  # fmt: skip
        return f"{city}{dist}{road}{num}{unit}"
    if fmt == "district_road":
        return f"{dist}{road}{num}"
    if fmt == "rural":
        prov_city, county, town, village = rng.choice(ZH_RURAL)
        return f"{prov_city}{county}{town}{village}{rng.randint(1, 12)}组"
    if fmt == "en":
        return f"{rng.randint(1, 9999)} {rng.choice(EN_STREETS)}"
    raise ValueError(fmt)


# Frames per type: (lang, frame). Every frame holds {x} once; the prose around the value is PII-free.
FRAMES: dict[str, list[tuple[str, str]]] = {
    "email": [
        ("en", "Please send the signed form to {x} before Friday."),
        ("en", "Contact: {x}"),
        ("zh", "请将签字版发送至 {x}，谢谢。"),
        ("zh", "邮箱：{x}"),
    ],
    "phone": [
        ("en", "The on-call engineer can be reached at {x} after 18:00."),
        ("en", "Tel: {x}"),
        ("zh", "值班电话：{x}，请保持畅通。"),
        ("zh", "如有问题请拨打{x}联系我们。"),
    ],
    "cn_id": [
        ("en", "Contractor badge registered to ID {x}."),
        ("zh", "外包人员身份证号：{x}。"),
        ("zh", "居民身份证 {x} 已核验"),
    ],
    "bank_card": [
        ("en", "Travel expenses are reimbursed to card {x}."),
        ("en", "Card number: {x}"),
        ("zh", "差旅报销卡号：{x}。"),
        ("zh", "请将款项转入银行卡{x}，户名见附件。"),
    ],
    "ipv4": [
        ("en", "The SCADA gateway {x} stopped answering during the event."),
        ("en", "ssh admin@{x} -p 2222"),
        ("zh", "事件期间 SCADA 网关 {x} 无响应。"),
        ("zh", "服务器IP地址为{x}，端口 8080。"),
    ],
    "ipv6": [
        ("en", "Remote access to the controller came from {x}."),
        ("zh", "控制器远程访问来源地址 {x}。"),
    ],
    "passport": [
        ("en", "Passport No. {x}, valid until 2031."),
        ("en", "The traveller's passport number is {x}."),
        ("zh", "护照号码：{x}，有效期至2030年。"),
        ("zh", "持护照 {x} 入境。"),
    ],
    "person_name": [
        ("zh", "姓名：{x}，性别：男。"),
        ("zh", "联系人：{x}，电话另附。"),
        ("zh", "收件人{x}，请于工作日签收。"),
        ("zh", "感谢{x}先生的配合。"),
        ("zh", "{x}女士反映设备异响。"),
        ("zh", "负责人 {x} 已确认。"),
        ("zh", "今天上午{x}到现场检查了风机。"),  # no cue: rules miss it by design, jieba may not
        ("en", "Mr. {x} signed the work order."),
        ("en", "Name: {x}"),
        ("en", "Contact person: {x}, site office."),
        ("en", "Dear {x}, your request was approved."),
        ("en", "Yesterday {x} inspected the turbine."),  # no cue
    ],
    "address": [
        ("zh", "地址：{x}"),
        ("zh", "请把备件寄到{x}，收件人另附。"),
        ("zh", "会议在{x}举行。"),
        ("zh", "家住{x}。"),
        ("en", "Ship the parts to {x}, Springfield."),
        ("en", "Address: {x}"),
    ],
}
FORMATS: dict[str, list[str]] = {
    "email": ["ascii", "latin_unicode", "cjk", "cjk_local_ascii_domain", "cyrillic", "fullwidth"],
    "phone": ["plain", "plus86", "plus86_spaced", "plus86_dashed", "86_dash", "0086", "paren86", "dotted", "dashed",
              "spaced", "odd_4_3_4", "odd_3_8", "fullwidth", "fullwidth_plus86", "landline", "landline_paren", "intl"],
    "cn_id": ["plain", "x_final", "spaced", "spaced4", "old15", "fullwidth"],
    "bank_card": ["plain", "spaced", "dashed", "fullwidth"],
    "ipv4": ["plain"],
    "ipv6": ["plain"],
    "passport": ["cn_e", "cn_g", "cn_e_letter", "us", "letter_digits", "fr"],
    "person_name": ["zh", "en"],
    "address": ["full", "with_room", "district_road", "rural", "en"],
}  # fmt: skip
MAKERS = {
    "email": email_value,
    "phone": phone_value,
    "cn_id": cn_id_value,
    "bank_card": card_value,
    "ipv4": lambda rng, fmt: ipv4(rng),
    "ipv6": lambda rng, fmt: ipv6(rng),
    "passport": passport_value,
}
# Types a detector finds in any context; person names need a cue, so their frames say which have one.
NO_CUE_FRAMES = {"今天上午{x}到现场检查了风机。", "Yesterday {x} inspected the turbine."}


@dataclass
class Labelled:
    """One text and its planted PII: (start, end, type, format) spans, in text order."""

    text: str
    lang: str
    spans: list[tuple[int, int, str, str]] = field(default_factory=list)


def _zh_filler(rng: random.Random) -> str:
    return rng.choice(["设备运行正常。", "巡检记录如下。", "本次维护已完成。", "详情见工单。", ""])


def _en_filler(rng: random.Random) -> str:
    return rng.choice(["Routine inspection completed. ", "See the attached work order. ", "No fault found. ", ""])


def labelled_set(seed: int = 10, per_format: int = 24) -> list[Labelled]:
    """Texts each holding one planted value, ``per_format`` per (type, format), spread over the frames."""
    rng = random.Random(seed)
    out: list[Labelled] = []
    for kind, formats in FORMATS.items():
        for fmt in formats:
            frames = FRAMES[kind]
            if kind in ("address", "person_name"):
                frames = [f for f in frames if f[0] == ("en" if fmt == "en" else "zh")]
            count = per_format * 3 if kind == "person_name" else per_format
            for i in range(count):
                lang, frame = frames[i % len(frames)]
                if kind == "person_name":
                    value = zh_name(rng) if lang == "zh" else en_name(rng)
                    fmt_i = f"{lang}_no_cue" if frame in NO_CUE_FRAMES else f"{lang}_cue"
                elif kind == "address":
                    value, fmt_i = address_value(rng, fmt), fmt
                else:
                    value, fmt_i = MAKERS[kind](rng, fmt), fmt
                filler = _zh_filler(rng) if lang == "zh" else _en_filler(rng)
                head, tail = frame.split("{x}")
                text = filler + head + value + tail
                start = len(filler) + len(head)
                out.append(Labelled(text, lang, [(start, start + len(value), kind, fmt_i)]))
    out.extend(tricky_cases())
    return out


# The forms issue 10 lists, verbatim, each in a short frame (values are fictional; checksums valid).
TRICKY: list[tuple[str, str, str]] = [
    # (text with the value between [[ ]], type, format)
    ("Maestro card [[5018 0000 0000 0009]] on file.", "bank_card", "maestro_5018"),
    ("卡号 [[6304000000000000]]", "bank_card", "maestro_6304"),
    ("Card [[6759 6498 2643 8453]] declined.", "bank_card", "maestro_6759"),
    ("中国银行长城卡 [[6013820000000003]]", "bank_card", "boc_6013"),
    ("工行卡号：[[9558801001114978999]]", "bank_card", "icbc_9558"),
    ("银联卡 [[6222 0212 3456 7890 128]]", "bank_card", "unionpay_19_spaced"),
    ("Write to [[用户@例子.中国]] for the Chinese form.", "email", "cjk"),
    ("Kontakt: [[münchen@example.de]]", "email", "latin_unicode"),
    ("手机 [[138.1234.5678]]", "phone", "dotted"),
    ("手机 [[138-1234-5678]]", "phone", "dashed"),
    ("call [[+86 138 1234 5678]] now", "phone", "plus86_spaced"),
    ("电话 [[86-13812345678]]", "phone", "86_dash"),
    ("电话 [[1381 234 5678]]", "phone", "odd_4_3_4"),
    ("手机号码[[１３８１２３４５６７８]]", "phone", "fullwidth"),
    ("身份证号 [[110105 19491231 002X]]", "cn_id", "spaced"),
    ("身份证号 [[11010519491231002X]]", "cn_id", "x_final"),
    ("老身份证 [[110105491231002]]", "cn_id", "old15"),
    ("身份证号：[[１１０１０５１９４９１２３１００２Ｘ]]", "cn_id", "fullwidth"),
    ("护照号 [[E12345678]]", "passport", "cn_e"),
    ("passport [[G87654321]]", "passport", "cn_g"),
    ("server [[10.0.0.1]] and version 0.5.5.1", "ipv4", "plain"),
]


def tricky_cases() -> list[Labelled]:
    out = []
    for raw, kind, fmt in TRICKY:
        start = raw.index("[[")
        end = raw.index("]]") - 2
        text = raw.replace("[[", "").replace("]]", "")
        lang = "zh" if any("\u4e00" <= c <= "\u9fff" for c in text) else "en"
        out.append(Labelled(text, lang, [(start, end, kind, "tricky:" + fmt)]))
    return out


# --------------------------------------------------------------------------------------------------
# clean technical text: nothing here is PII, so every detection is a false positive


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _ver(rng: random.Random, parts: int) -> str:
    return ".".join(str(rng.randint(0, 20 if i else 9)) for i in range(parts))


def clean_technical_lines(seed: int = 11, n: int = 1000) -> list[str]:
    """``n`` lines of technical text (English and Chinese) with no PII, built from the makers below."""
    rng = random.Random(seed)
    makers = [
        lambda: f"Upgraded to version {_ver(rng, 4)} from {_ver(rng, 3)}.",
        lambda: f"pip install somepkg=={_ver(rng, 4)}",
        lambda: f"Release v{_ver(rng, 4)} fixes the memory leak.",
        lambda: f"0.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)} is the build that shipped.",
        lambda: f"Downloaded openssl-{_ver(rng, 4)}.tar.gz and libfoo_{_ver(rng, 4)}.zip",
        lambda: f"tag {_ver(rng, 4)}-rc{rng.randint(1, 5)} was cut; {_ver(rng, 4)}-beta follows",
        lambda: f"固件版本 {_ver(rng, 4)}，升级后重启。",
        lambda: f"当前版本：V{_ver(rng, 4)}，发布于2024年{rng.randint(1, 12)}月。",
        lambda: f"VERSION = '{_ver(rng, 4)}'",
        lambda: f"{2020 + rng.randint(0, 5)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T"
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999999):06d}Z "
        f"INFO worker started pid={rng.randint(100, 99999)}",
        lambda: f"ts={rng.randint(1600000000, 1800000000)} ts_ms={rng.randint(1600000000000, 1800000000000)} "
        f"ts_ns={rng.randint(1600000000000000000, 1800000000000000000)}",
        lambda: f"commit {_hex(rng, 40)}",
        lambda: f"sha256: {_hex(rng, 64)}",
        lambda: f"md5 {_hex(rng, 32).upper()}  file.bin",
        lambda: f"request id {_hex(rng, 8)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 4)}-{_hex(rng, 12)}",
        lambda: f"Order number {luhn_fails(rng.choice(['4', '62', '51', '2023', '9558', '6013']), rng.randint(16, 19), rng)} shipped.",  # noqa: E501
        lambda: f"订单号：{luhn_fails(rng.choice(['62', '2024', '5018', '6304']), rng.randint(16, 19), rng)}，已发货。",
        lambda: f"batch {2023}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 99999999):08d} passed QA",
        lambda: f"mov rax, 0x{_hex(rng, 12)}  ; addr 0x7ffd{_hex(rng, 8)}",
        lambda: f"int timeout_ms = {rng.randint(1000, 99999)}; long max_bytes = {rng.randint(10**9, 10**10)}L;",
        lambda: f"user_{rng.choice(MOBILE_PREFIXES)}{rng.randint(0, 99999999):08d} = 0x{rng.choice(MOBILE_PREFIXES)}{_hex(rng, 8)}",  # noqa: E501
        lambda: f"id={rng.choice(MOBILE_PREFIXES)}{rng.randint(0, 99999999):08d}{rng.randint(10, 99)} rows={rng.randint(1, 999)}",  # noqa: E501
        lambda: f"snmpget -v2c public 1.3.6.1.4.1.{rng.randint(1, 40000)}.{rng.randint(1, 9)}.{rng.randint(1, 9)}",
        lambda: f"MAC {':'.join(_hex(rng, 2) for _ in range(6))} on eth0",
        lambda: f"Listening on port {rng.randint(1024, 65535)}, {rng.randint(2, 64)} workers, {rng.randint(1, 512)} MB",
        lambda: f"  File \"/usr/lib/python3.{rng.randint(8, 12)}/site.py\", line {rng.randint(1, 999)}, in main",
        lambda: f"SELECT * FROM orders WHERE id IN ({rng.randint(10**6, 10**7)}, {rng.randint(10**6, 10**7)});",
        lambda: f"Coordinates {rng.uniform(-90, 90):.4f}, {rng.uniform(-180, 180):.4f}; "
        f"elevation {rng.randint(1, 4000)} m",
        lambda: f"Measured {rng.uniform(0, 100):.3f} mm/s at {rng.randint(1000, 1800)} rpm, "
        f"{rng.uniform(0, 99):.2f} °C.",
        lambda: f"G01 X{rng.uniform(0, 500):.3f} Y{rng.uniform(0, 500):.3f} F{rng.randint(100, 3000)}",
        lambda: f"error E{rng.randint(1000, 9999)}: sensor {rng.randint(1, 99)} timeout after {rng.randint(1, 60)} s",
        lambda: f"{rng.randint(1, 30)}号机组{rng.randint(1, 9)}号轴承温度{rng.randint(40, 90)}°C，"
        f"通道{rng.randint(1, 16)}号正常。",
        lambda: f"缓冲区{rng.randint(1, 9)}号通道与主路由器{rng.randint(1, 9)}号端口相连。",
        lambda: f"客户端版本{_ver(rng, 3)}，高端型号{rng.randint(100, 999)}，王牌产品线。",
        lambda: f"车间主任要求在{rng.randint(1, 12)}月前完成{rng.randint(2, 9)}号线路改造。",
        lambda: f"联系客服处理工单#{rng.randint(10**5, 10**6)}。",
        lambda: f"Name: Default Gateway   Value: {rng.randint(1, 9)}",
        lambda: f"ISBN 978-{rng.randint(0, 9)}-{rng.randint(10, 99)}-{rng.randint(100000, 999999)}-{rng.randint(0, 9)}",
        lambda: f"{rng.randint(1, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}-SNAPSHOT "
        f"built in {rng.randint(1, 99)} s",
        lambda: f"size {rng.randint(10**10, 10**11)} bytes, checksum {rng.randint(10**11, 10**12)}",
        lambda: f"颜色 #{_hex(rng, 6)}，尺寸 {rng.randint(100, 1920)}x{rng.randint(100, 1080)}，"
        f"共 {rng.randint(1, 99)} 帧。",
        lambda: f"def f(x):\n    return x * {rng.randint(2, 99)} + {rng.randint(1000000, 9999999)}",
        lambda: f"2024年{rng.randint(1, 12)}月{rng.randint(1, 28)}日{rng.randint(0, 23)}:{rng.randint(10, 59)}，"
        f"温度{rng.uniform(0, 40):.1f}℃，湿度{rng.randint(10, 99)}%。",
        lambda: f"Table {rng.randint(1, 20)}: {' '.join(str(rng.randint(0, 9)) for _ in range(16))}",
        lambda: f"range 192.168.0.0/16 reserved; mask 255.255.{rng.choice(['0', '255'])}.0",
    ]
    return [makers[i % len(makers)]() for i in range(n)]


# --------------------------------------------------------------------------------------------------
# scoring


def _covers(spans: list[tuple[int, int]], s: int, e: int) -> bool:
    return all(any(a <= i < b for a, b in spans) for i in range(s, e))


def evaluate(find, items: list[Labelled], clean: list[str]) -> dict:
    """Recall per type and per (type, format), precision per type, false positives on clean lines.

    ``find(text)`` returns (start, end, type) spans. A planted value counts as found when spans of its
    own type cover every character of it ("redacted" also accepts spans of any type). A detected span is
    a true positive when it overlaps a planted value of its type; every span on a clean line is a false
    positive. Precision pools the labelled set and the clean lines. "exact" counts values whose span is
    exactly the value (names and addresses may take a character too many or too few).
    """
    per_type: dict[str, dict[str, int]] = {}
    per_fmt: dict[tuple[str, str], list[int]] = {}

    def row(kind: str) -> dict[str, int]:
        return per_type.setdefault(kind, {"planted": 0, "found": 0, "exact": 0, "redacted": 0, "tp": 0, "fp": 0,
                                           "clean_fp": 0})

    for it in items:
        spans = find(it.text)
        for s, e, kind, fmt in it.spans:
            r = row(kind)
            r["planted"] += 1
            same = [(a, b) for a, b, k in spans if k == kind]
            hit = _covers(same, s, e)
            r["found"] += hit
            r["exact"] += (s, e) in same
            r["redacted"] += _covers([(a, b) for a, b, _ in spans], s, e)
            f = per_fmt.setdefault((kind, fmt), [0, 0])
            f[0] += 1
            f[1] += hit
        for a, b, k in spans:
            if any(k == kind and a < e and s < b for s, e, kind, _ in it.spans):
                row(k)["tp"] += 1
            else:
                row(k)["fp"] += 1
    clean_spans: list[tuple[str, str]] = []
    for line in clean:
        for a, b, k in find(line):
            row(k)["clean_fp"] += 1
            clean_spans.append((k, line[a:b]))
    out = {}
    for kind, r in sorted(per_type.items()):
        det = r["tp"] + r["fp"] + r["clean_fp"]
        out[kind] = {
            **r,
            "recall": r["found"] / r["planted"] if r["planted"] else None,
            "precision": r["tp"] / det if det else None,
            "clean_fp_per_1000_lines": 1000 * r["clean_fp"] / len(clean) if clean else 0.0,
        }
    return {
        "types": out,
        "formats": {f"{k}/{f}": (n, h) for (k, f), (n, h) in sorted(per_fmt.items())},
        "clean_lines": len(clean),
        "clean_fp_total": len(clean_spans),
        "clean_fp_examples": clean_spans[:40],
    }
