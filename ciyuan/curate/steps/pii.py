"""PII redaction: typed placeholders for e-mails, phones, IDs, cards, IPs, passports, names and addresses.

Every digit pattern is validated (ID checksum, region and birth date, Luhn and issuer prefix, address
ranges, separator grouping) and bounded by non-digits, so dates, versions, prices and part numbers stay
untouched. Detection runs on a width-folded view of the text (full-width digits and letters, the
ideographic space and dash variants mapped one-to-one onto ASCII), and the span found there is
redacted in the original text: the fold keeps every offset, so no mapping is needed. Names and
addresses are found by context rules (a cue word or a title for names, a chain of administrative
units ending in a street and number for addresses); docs/curation.md gives the recall and
precision of each type on the labelled set in ``ciyuan.curate.pii_samples``.

Over 500 lines because each PII type is a pattern plus the validator that keeps false positives out
(checksums, region codes, grouping); they share the width fold and the span bookkeeping.
"""

from __future__ import annotations

import ipaddress
import re
from bisect import bisect_left
from collections.abc import Callable
from datetime import date

from ciyuan.curate.steps.base import TEXT, Param, Step, curation_meta

PLACEHOLDERS = {
    "email": "<EMAIL>",
    "phone": "<PHONE>",
    "cn_id": "<CN_ID>",
    "bank_card": "<BANK_CARD>",
    "ipv4": "<IPV4>",
    "ipv6": "<IPV6>",
    "passport": "<PASSPORT>",
    "person_name": "<NAME>",
    "address": "<ADDRESS>",
}

# --------------------------------------------------------------------------------------------------
# width folding: the part of NFKC that matters for PII, one code point to one code point

_FOLD = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}  # full-width ASCII forms
_FOLD.update({c: 0x20 for c in (0x00A0, 0x3000, 0x202F, 0x205F, *range(0x2000, 0x200B))})
_FOLD.update({c: 0x2D for c in (0x2010, 0x2011, 0x2012, 0x2013, 0x2212, 0xFE63)})
# Only these make the fold worth doing: full-width digits, letters, @ + - . and odd spaces/dashes.
# Full-width punctuation alone (，：（）), common in every Chinese text, does not change any detection.
_FOLD_HINT_RE = re.compile("[\uff0b\uff0d\uff0e\uff10-\uff19\uff20-\uff3a\uff41-\uff5a\u00a0\u3000\u202f\u205f"
                           "\u2000-\u200a\u2010-\u2013\u2212\ufe63]")  # fmt: skip


# Runs of characters the fold changes: translating only them is the same text, and it is about 4x
# faster than ``str.translate`` over a whole document, which looks every character up in a dict.
_FOLD_RUN_RE = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_FOLD)) + "]+")


def _fold_run(m: re.Match) -> str:
    return m.group().translate(_FOLD)


def fold(text: str) -> str:
    """``text`` with full-width forms, odd spaces and dashes as ASCII; same length, same offsets."""
    return _FOLD_RUN_RE.sub(_fold_run, text) if _FOLD_HINT_RE.search(text) else text


# --------------------------------------------------------------------------------------------------
# e-mail: ASCII and internationalised (Latin with diacritics, Greek, Cyrillic, CJK local parts/domains)

_LAT = "A-Za-z0-9\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f\u0370-\u03ff\u0400-\u04ff"
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
# Non-Latin top-level domains are a closed list, so a CJK TLD never swallows the Chinese that follows.
_CJK_TLDS = ("中国|中國|公司|网络|網絡|香港|台湾|台灣|新加坡|在线|商城|网店|网址|集团|移动|手机|我爱你|政务|公益|"
             "中文网|信息|游戏|企业|购物|娱乐|招聘|みんな|コム|닷컴|한국")  # fmt: skip
EMAIL_RE = re.compile(
    rf"(?<![{_LAT}_.+-])(?:[{_LAT}][{_LAT}_.%+-]*|[{_CJK}][{_CJK}0-9_.-]*)"
    rf"@(?:[{_LAT}{_CJK}](?:[{_LAT}{_CJK}-]*[{_LAT}{_CJK}])?\.)+"
    rf"(?:xn--[a-z0-9-]+|[A-Za-z]{{2,}}(?![{_LAT}])|[\u0400-\u04ff]{{2,}}|{_CJK_TLDS})"
)
_CJK_CHAR_RE = re.compile(f"[{_CJK}]")
# A CJK local part runs into the Chinese before it ("请发送至用户@..."): cut after the last cue word.
_EMAIL_CUE_RE = re.compile(r".*(?:邮箱|邮件|电邮|信箱|发送至|发至|发到|寄至|至|到|给|或|和|及|地址|为|是)[:：]?")


def _email_span(m: re.Match, text: str) -> tuple[int, int] | None:
    s, e = m.span()
    if _CJK_CHAR_RE.match(text, s):
        local = text[s : text.index("@", s)]
        cue = _EMAIL_CUE_RE.match(local)
        if cue and cue.end() < len(local):
            s += cue.end()
    return s, e


# --------------------------------------------------------------------------------------------------
# Chinese resident ID: 18 characters (GB 11643 checksum) or the 15-digit pre-1999 form, both with a
# valid province code and birth date

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_PROVINCES = frozenset(
    ["11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36", "37", "41", "42", "43", "44",
     "45", "46", "50", "51", "52", "53", "54", "61", "62", "63", "64", "65", "71", "81", "82", "83"]
)  # fmt: skip
CN_ID_RE = re.compile(r"(?<![A-Za-z0-9_-])[1-8]\d(?:[ -]?\d){15}[ -]?[\dXx](?![A-Za-z0-9_]|-\d)")
CN_ID15_RE = re.compile(r"(?<![A-Za-z0-9_.-])[1-8]\d{14}(?![A-Za-z0-9_]|[.-]\d)")


def cn_id_valid(s: str) -> bool:
    """GB 11643 checksum of an 18-character resident identity number."""
    if len(s) != 18 or not s[:17].isdigit():
        return False
    total = sum(int(d) * w for d, w in zip(s[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == s[17].upper()


def _date_ok(y: int, m: int, d: int) -> bool:
    try:
        date(y, m, d)
    except ValueError:
        return False
    return 1900 <= y <= 2100


def _groups_ok(raw: str, min_group: int, max_seps: int) -> bool:
    """One kind of separator, at most ``max_seps`` of them, every group but the last ``min_group`` long."""
    seps = {c for c in raw if not c.isdigit() and c not in "Xx"}
    if not seps:
        return True
    if len(seps) > 1:
        return False
    groups = raw.split(seps.pop())
    return len(groups) - 1 <= max_seps and all(len(g) >= min_group for g in groups[:-1])


def _cn_id_span(m: re.Match, text: str) -> tuple[int, int] | None:
    raw = m.group()
    s = raw.replace(" ", "").replace("-", "")
    if s[:2] not in _PROVINCES or not _groups_ok(raw, 2, 4):
        return None
    if not _date_ok(int(s[6:10]), int(s[10:12]), int(s[12:14])) or not cn_id_valid(s):
        return None
    return m.span()


def _cn_id15_span(m: re.Match, text: str) -> tuple[int, int] | None:
    s = m.group()
    if s[:2] not in _PROVINCES or not _date_ok(1900 + int(s[6:8]), int(s[8:10]), int(s[10:12])):
        return None
    return m.span()


# --------------------------------------------------------------------------------------------------
# bank cards: 14-19 digits, Luhn, issuer prefix and length of a real scheme

CARD_RE = re.compile(r"(?<![A-Za-z0-9_.,-])(?:\d[ -]?){12,18}\d(?![A-Za-z0-9_]|[.,-]\d)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _issuer_ok(digits: str) -> bool:
    """Length and issuer prefix of real card schemes (published IIN ranges); EAN-13 barcodes never fit."""
    n, d = len(digits), digits
    if n < 14:
        return False  # 13: only pre-2000 Visa; 12-13-digit Maestro is left out: too like other numbers
    if d[0] == "4":  # Visa
        return n in (16, 19)
    if d[:2] in ("34", "37"):  # American Express
        return n == 15
    if d[:2] in ("36", "38", "39") or "300" <= d[:3] <= "305" or d[:4] == "3095":  # Diners
        return 14 <= n <= 19
    if "51" <= d[:2] <= "55" or "2221" <= d[:4] <= "2720" or "2200" <= d[:4] <= "2204":  # Mastercard, Mir
        return n == 16
    if "3528" <= d[:4] <= "3589":  # JCB
        return 16 <= n <= 19
    if d[:2] in ("62", "81") or d[:4] == "6011" or d[:2] == "65" or "644" <= d[:3] <= "649":  # UnionPay, Discover
        return 16 <= n <= 19
    if d[:2] == "50" or "56" <= d[:2] <= "69":  # Maestro (5018, 5020, 5038, 6304, 6759, 676x), 60xx bank BINs (6013)
        return 16 <= n <= 19
    if d[:3] == "955":  # Chinese banks' own pre-UnionPay BINs (9558 ICBC, 9559 ABC)
        return 16 <= n <= 19
    return False


def _card_span(m: re.Match, text: str) -> tuple[int, int] | None:
    raw = m.group()
    digits = raw.replace(" ", "").replace("-", "")
    if not _issuer_ok(digits) or not _groups_ok(raw, 4, 5) or not luhn_valid(digits):
        return None
    return m.span()


# --------------------------------------------------------------------------------------------------
# phones

_VERSION_CTX_RE = re.compile(
    r"(?:\bv|\bver\.?|version|release|build|rev\.?|revision|firmware|\bfw|kernel|patch|update|版本号?|版|固件|补丁|内核)"
    r"[\s:=\"'(]*$",
    re.IGNORECASE,
)
_CN_PREFIX_RE = re.compile(r"^(?:(?:\+|00)86|\(\+?86\)|86)[ .-]?")
MOBILE_RE = re.compile(
    r"(?<![A-Za-z0-9_+.-])(?:(?:(?:\+|00)86|\(\+?86\)|86)[ .-]?)?1[3-9]\d(?:[ .-]?\d){8}(?![A-Za-z0-9_]|[.-]\d)"
)
# A bare 11-digit number in code or beside a unit is a quantity, not a phone.
_CODE_BEFORE_RE = re.compile(
    r"(?:[=<>*/%^&|+]|\b(?:size|bytes|len|length|count|offset|timeout|ts|total|sum|max|min|seed|pid|hash|crc|"
    r"checksum|nbytes|limit)\s*[:=]?)\s*$",
    re.IGNORECASE,
)
_PHONE_WORD_RE = re.compile(r"(?i:phone|mobile|cell|tel|contact|whatsapp|wechat)|手机|电话|联系|微信|号码")
_UNIT_AFTER_RE = re.compile(
    r"\s*(?:bytes?\b|B\b|[KMGT]i?B\b|ms\b|us\b|ns\b|rows\b|records\b|tokens\b|字节|毫秒|次|条|行)"
)
_PHONE_PATTERNS = [
    # mainland China landline with area code: 010-12345678, (0755) 1234 5678
    r"\(?0\d{2,3}\)?[ -]\d{3,4}[ -]?\d{4}",
    # international with a leading + and 7-15 digits in groups
    r"\+[1-9]\d{0,2}[ -]?(?:\(\d{1,4}\)[ -]?)?\d{1,4}(?:[ -]?\d{2,4}){1,4}",
    # North American 3-3-4
    r"\(\d{3}\)[ -]?\d{3}[-. ]\d{4}|\d{3}[-.]\d{3}[-.]\d{4}",
]
PHONE_RE = re.compile(r"(?<![A-Za-z0-9_+.-])(?:" + "|".join(_PHONE_PATTERNS) + r")(?![A-Za-z0-9_]|[.-]\d)")


def _version_before(text: str, start: int) -> bool:
    return _VERSION_CTX_RE.search(text[max(0, start - 14) : start]) is not None


def _mobile_span(m: re.Match, text: str) -> tuple[int, int] | None:
    """A mainland mobile: optional +86/0086/86 prefix, then 11 digits in groups of 3+ with one separator kind."""
    raw = m.group()
    pre = _CN_PREFIX_RE.match(raw)
    body = raw[pre.end() :] if pre else raw
    if sum(c.isdigit() for c in body) != 11 or not body[:1].isdigit():
        return None
    seps = {c for c in body if not c.isdigit()}
    if seps:
        sep = seps.pop()
        groups = body.split(sep)
        if seps or len(groups) > 4 or min(len(g) for g in groups) < 3:
            return None
        if sep == "." and [len(g) for g in groups] != [3, 4, 4]:  # dotted any other way: a version or an address
            return None
    elif not pre:
        s, e = m.span()
        before = text[max(0, s - 16) : s]
        quantity = _CODE_BEFORE_RE.search(before[-12:]) or _UNIT_AFTER_RE.match(text, e)
        if quantity and not _PHONE_WORD_RE.search(before):  # phone=13812345678 is still a phone
            return None
    if _version_before(text, m.start()):
        return None
    return m.span()


def _phone_span(m: re.Match, text: str) -> tuple[int, int] | None:
    digits = sum(c.isdigit() for c in m.group())
    if not 7 <= digits <= 15 or _version_before(text, m.start()):
        return None
    return m.span()


# --------------------------------------------------------------------------------------------------
# IP addresses

IPV4_RE = re.compile(
    r"(?<![A-Za-z0-9_.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![A-Za-z0-9_]|\.\d)"
)
_PKG_BEFORE_RE = re.compile(r"(?:==|>=|<=|~=|!=|\^|~|[A-Za-z][A-Za-z0-9]*[-_])$")
# "since dpkg 1.15.5.4", "until glibc 2.3.4.1", "as of gcc 4.8.1.2": a program name and its version
_SINCE_BEFORE_RE = re.compile(r"\b(?:since|until|as of|prior to|introduced in|removed in|自)\s+[A-Za-z][\w+.-]*\s+$",
                              re.IGNORECASE)  # fmt: skip
_VERSION_AFTER_RE = re.compile(r"(?:[-+~]?(?:alpha|beta|rc|dev|post|pre|snapshot|final)|[-+~][A-Za-z]|\.[A-Za-z])",
                               re.IGNORECASE)  # fmt: skip
_CIDR_RE = re.compile(r"/(?:3[0-2]|[12]?\d)(?!\d)")
_CIDR6_RE = re.compile(r"/(?:12[0-8]|1[01]\d|[1-9]?\d)(?!\d)")
IPV6_RE = re.compile(r"(?<![A-Za-z0-9_:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?:%[A-Za-z0-9]+)?(?![A-Za-z0-9_:])")


def _ipv4_span(m: re.Match, text: str) -> tuple[int, int] | None:
    """A host address, not a version: the rule is in docs/curation.md (PII section)."""
    s, e = m.span()
    first = int(m.group().split(".", 1)[0])
    if first in (0, 255):  # "this network" (0.5.5.1 is a version) and netmasks (255.255.255.0)
        return None
    cidr = _CIDR_RE.match(text, e)
    if cidr:  # a network written as CIDR (192.168.0.0/16) is not a host; 10.0.0.5/24 is
        try:
            ipaddress.IPv4Network(m.group() + cidr.group(), strict=True)
            return None
        except ValueError:
            pass
    before = text[max(0, s - 40) : s]
    if _version_before(text, s) or _PKG_BEFORE_RE.search(before[-24:]) or _SINCE_BEFORE_RE.search(before):
        return None
    if _VERSION_AFTER_RE.match(text, e):  # 1.2.3.4-rc1, 1.2.3.4.tar.gz
        return None
    return s, e


def _ipv6_span(m: re.Match, text: str) -> tuple[int, int] | None:
    s = m.group().split("%")[0]
    if s.count(":") < 2 or (s.count(":") < 7 and "::" not in s) or s == "::":
        return None
    if sum(c in "0123456789abcdefABCDEF" for c in s) < 3 or not any(c.isdigit() for c in s):
        return None  # no decimal digit: Perl's B::CC, C++'s A::BC, not an address
    try:
        ipaddress.IPv6Address(s)
    except ValueError:
        return None
    cidr = _CIDR6_RE.match(text, m.end())
    if cidr:  # a prefix written as CIDR (2001:db8::/48) is a network, not a host
        try:
            ipaddress.IPv6Network(s + cidr.group(), strict=True)
            return None
        except ValueError:
            pass
    return m.span()


# --------------------------------------------------------------------------------------------------
# passports: the Chinese format anywhere; other countries' only after a "passport"/"护照" keyword

PASSPORT_CN_RE = re.compile(r"(?<![A-Za-z0-9_-])[EG](?:\d{8}|[A-HJ-NP-Z]\d{7})(?![A-Za-z0-9_])")
# The keywords in the case forms people write (a case-insensitive group would defeat re's prefix scan).
_PASSPORT_KW = (r"(?:[Pp]assport|PASSPORT|[Pp]asaporte|PASAPORTE|[Pp]asseport|PASSEPORT|[Rr]eisepass|REISEPASS|"
                r"[Pp]assaporto|PASSAPORTO)")
PASSPORT_KW_RE = re.compile(
    rf"(?:{_PASSPORT_KW}(?i:\s*(?:no\.?|number|num\.?|nr\.?|#|n°|id))?"
    r"(?i:\s+is)?\s*[:：=]?\s*|护照(?:号码|号|编号)?\s*(?:是|为)?\s*[:：]?\s*)"
    r"(?P<v>[A-Z0-9]{6,9})(?![A-Za-z0-9_])"
)


def _passport_kw_span(m: re.Match, text: str) -> tuple[int, int] | None:
    v = m.group("v")
    if sum(c.isdigit() for c in v) < 5:
        return None
    return m.span("v")


# --------------------------------------------------------------------------------------------------
# Chinese and English personal names: only with a cue word before or a title after

_SURNAMES_1 = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏"
    "魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫阎段雷侯龙史黎贺顾毛郝龚"
    "邵万钱覃武戴孔汤庞樊兰殷施陶洪翟安颜倪严牛温芦季俞章鲁葛伍申尤毕聂柴焦向柳邢岳齐梅莫庄辛管"
    "祝左涂谷祁时舒耿牟卜路詹关苗凌费纪靳盛童欧甄项曲成游阳裴席卫查屈鲍位霍翁隋植甘景薄单包司柏"
    "宁柯阮桂闵解强华车冉房边滕练"
)  # fmt: skip
_SURNAMES_2 = ("欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "夏侯", "司徒", "长孙",
               "宇文", "端木", "西门", "南宫", "独孤")  # fmt: skip
_SUR = "(?:" + "|".join(_SURNAMES_2) + f"|[{_SURNAMES_1}])"
_NAME_CUES = (
    "紧急联系人|联系人姓名|客户姓名|法定代表人|法人代表|姓名|联系人|联络人|收件人|"
    "收货人|负责人|申请人|经办人|报告人|签收人|投诉人|持卡人|开户人|开户名|户名|"
    "户主|患者|病人|乘客|旅客|委托人|代理人|监护人|值班人|检修人|操作人|审核人|"
    "批准人|记录人|填表人|业主|租户|学员|寄件人"
)  # fmt: skip
_NAME_END = r"(?=[^\u4e00-\u9fff]|$|先生|女士|小姐|同志|电话|手机|联系|身份证|性别|邮箱|地址|请|已|于|在|的|和|等|签)"
ZH_NAME_CUE_RE = re.compile(rf"(?:{_NAME_CUES})\s*[:：]?\s*(?P<v>{_SUR}[\u4e00-\u9fff]{{1,2}}){_NAME_END}")
# A title is the anchor; the name before it is read backwards (a surname-first regex would try every
# common character that is also a surname, 高, 方, 成, 金 ..., across the whole text).
ZH_TITLE_RE = re.compile(r"(?<=[\u4e00-\u9fff])(?:先生|女士|小姐)")
# A word ending in a surname character before a name ("感谢张伟先生"): the name starts one later.
_NAME_LEAD = frozenset("谢向和于与同给由对把被叫让请将经找跟")
_EN_TITLE = r"\b(?:Mr|Mrs|Ms|Miss|Dr|Prof)\.?\s+"
_EN_CUE = (r"\b(?:Name|Full name|Contact person|Contact|Attn|Attention|Dear|Patient|Customer|Recipient|Passenger)"
           r"\s*[:,]?\s+")
EN_NAME_RE = re.compile(rf"(?:{_EN_TITLE}|{_EN_CUE})(?P<v>[A-Z][a-z]+(?:[ -][A-Z][a-z]+){{0,2}})")
# Capitalised words after "Name:" that are interface labels, not names.
_EN_NOT_NAME = frozenset(
    ["Default", "Gateway", "Primary", "Secondary", "Server", "Client", "Value", "Type", "Field", "String", "Key",
     "Error", "Index", "Table", "Column", "Row", "File", "Folder", "Service", "Network", "Device", "Interface", "Host",
     "Port", "User", "Admin", "Guest", "Root", "System", "Local", "Remote", "New", "Old", "Main", "Test", "Sample",
     "Example", "None", "Null", "True", "False", "Unknown", "Name", "Description", "Status", "State", "Mode", "Level",
     "Version", "Support", "Team", "Sales", "Center", "Centre", "Desk", "Information", "Details", "Form", "Page",
     "Help", "Valued", "Customer", "Customers", "Sir", "Madam", "All", "Colleagues", "Friends", "Us", "Person",
     "Office", "Department", "Manager", "Owner", "Group", "Account", "Number", "Address", "Email", "Phone"]
)  # fmt: skip
# No leading \b in a hint: re skips ahead by the first character of a literal alternation only.
# Each hint is one flat alternation of literals (or starts with a class): mixing them in one pattern, or
# a group first, makes re try every branch at every position (25 instead of 450 MB/s on prose).
_NAME_HINT_ZH_RE = re.compile(rf"{_NAME_CUES}|先生|女士|小姐")
_NAME_HINT_EN_RE = re.compile(
    r"Mr|Ms|Miss|Dr|Prof|Name|Full name|Contact|Attn|Attention|Dear|Patient|Customer|Recipient|Passenger"
)


def _zh_name_span(m: re.Match, text: str) -> tuple[int, int] | None:
    s, e = m.span("v")
    v = m.group("v")
    if len(v) == 3 and v[0] in _NAME_LEAD and v[1] in _SURNAMES_1:
        s += 1
    return s, e


def _zh_title_span(m: re.Match, text: str) -> tuple[int, int] | None:
    """Surname + 1-2 given characters right before 先生/女士/小姐, longest first; a bare surname is left."""
    i = m.start()
    for n_sur, n_given in ((2, 2), (2, 1), (1, 2), (1, 1)):
        s = i - n_sur - n_given
        if s < 0 or not all(_is_cjk(c) for c in text[s:i]):
            continue
        sur = text[s : s + n_sur]
        if (n_sur == 2 and sur in _SURNAMES_2) or (n_sur == 1 and sur in _SURNAMES_1):
            if n_sur == 1 and n_given == 2 and sur in _NAME_LEAD and text[s + 1] in _SURNAMES_1:
                s += 1
            return s, i
    return None


def _en_name_span(m: re.Match, text: str) -> tuple[int, int] | None:
    words = re.split(r"[ -]", m.group("v"))
    if any(w in _EN_NOT_NAME for w in words):
        return None
    cue = m.group()[: m.start("v") - m.start()].strip().rstrip(":,").strip()
    if cue not in ("Mr", "Mrs", "Ms", "Miss", "Dr", "Prof", "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.") and len(words) < 2:
        return None  # after a cue word, a first name alone is too often something else
    return m.span("v")


# --------------------------------------------------------------------------------------------------
# addresses: Chinese (administrative units ... street + number [+ building/room], or ... county, town,
# village + group) and English (number + capitalised words + street type)

ZH_ADDR_ANCHOR_RE = re.compile(
    r"(?:路|街|大道|大街|巷|弄|胡同)(?:[东西南北中]段|[一二三四五六七八九十\d]{1,2}段)?"
    r"(?P<num>(?:\d{1,5}|[一二三四五六七八九十百零]{1,4})[号號](?:院|大院)?"
    r"(?:(?:\d{1,4}|[A-Z一二三四五六七八九十])(?:号楼|栋|幢|座|单元|层|楼|室|号|-))*(?:\d{1,5}(?:室|房))?)"
    r"|(?P<village>村)(?:\d{1,3}组|\d{1,4}号)"
)
_UNIT_SUFFIXES = ("特别行政区", "自治区", "自治州", "自治县", "新区", "街道",
                  "省", "市", "区", "县", "旗", "盟", "镇", "乡")  # fmt: skip
_PROVINCE_NAMES = [
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽",
    "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西",
    "甘肃", "青海", "台湾", "内蒙古", "广西", "西藏", "宁夏", "新疆", "香港", "澳门",
]  # fmt: skip
_CITY_NAMES = [
    "广州", "深圳", "珠海", "汕头", "佛山", "东莞", "中山", "惠州", "杭州", "宁波", "温州", "绍兴",
    "嘉兴", "湖州", "金华", "台州", "南京", "苏州", "无锡", "常州", "南通", "徐州", "扬州", "镇江",
    "成都", "绵阳", "武汉", "宜昌", "襄阳", "长沙", "株洲", "岳阳", "邵阳", "衡阳", "济南", "青岛",
    "烟台", "潍坊", "临沂", "淄博", "郑州", "洛阳", "开封", "周口", "南阳", "石家庄", "保定", "唐山",
    "邯郸", "廊坊", "太原", "大同", "沈阳", "大连", "长春", "吉林", "哈尔滨", "大庆", "合肥", "芜湖",
    "福州", "厦门", "泉州", "南昌", "赣州", "南宁", "桂林", "柳州", "海口", "三亚", "贵阳", "遵义",
    "昆明", "大理", "西安", "咸阳", "宝鸡", "兰州", "西宁", "银川", "乌鲁木齐", "拉萨", "呼和浩特", "包头",
]  # fmt: skip
_KNOWN_PLACES = sorted(set(_PROVINCE_NAMES + _CITY_NAMES), key=len, reverse=True)
# Characters that end a backward scan of a place name: prepositions and verbs that introduce an address.
# Strong ones end any name; weak ones also occur in place names (和平, 隆回, 石家庄, 于都) and end a name
# only once it has two characters.
_ADDR_STOP = frozenset("在到至往从是为的了把将给住寄送发请址")
_ADDR_STOP_WEAK = frozenset("于和与及或向回去来家自由位经")
_ADDR_CUE_RE = re.compile(r"(?:地址|住址|家住|住在|居住在|居住于|寄到|寄往|寄至|送到|送至|发往|位于|住所)\s*[:：]?\s*$")
EN_ADDR_RE = re.compile(
    r"\b\d{1,5}[A-Z]?\s+(?:[A-Z][a-z]+\s+){1,3}"
    r"(?:Street|St|Road|Rd|Avenue|Ave|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|Square|Sq)\b\.?"
    r"(?:,?\s*(?:Apt|Apartment|Suite|Unit|Flat|Floor)\.?\s*#?\w+)?"
)
_EN_ADDR_HINT_RE = re.compile(r"(?:Street|St|Road|Rd|Avenue|Ave|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
                              r"Terrace|Square|Sq)\b")  # fmt: skip


def _is_cjk(c: str) -> bool:
    return "\u4e00" <= c <= "\u9fff"


def _unit_ending_at(text: str, i: int) -> str:
    for suf in _UNIT_SUFFIXES:
        if text.endswith(suf, 0, i):
            return suf
    return ""


def _place_name_start(text: str, i: int, lo: int, limit: int) -> int:
    """Start of the place name that ends at ``i``: a known province/city, else up to ``limit`` CJK characters."""
    for name in _KNOWN_PLACES:
        if text.endswith(name, lo, i):
            return i - len(name)
    j = i
    while j > lo and i - j < limit and _is_cjk(text[j - 1]):
        c = text[j - 1]
        if c in _ADDR_STOP or (i - j >= 2 and c in _ADDR_STOP_WEAK):  # 和平街 keeps 和
            break
        if j < i and _unit_ending_at(text, j):
            break
        j -= 1
    return j


def _zh_addr_span(m: re.Match, text: str) -> tuple[int, int] | None:
    """Extend a street+number (or village+group) anchor backwards over street name and administrative units."""
    a = m.start()
    lo = max(0, a - 48)
    start = _place_name_start(text, a, lo, 6)  # street or village name
    if start == a:
        return None
    units = 0
    while True:
        suf = _unit_ending_at(text, start)
        if not suf:
            break
        k = _place_name_start(text, start - len(suf), lo, 4)
        if k == start - len(suf):  # a unit character with no name before it is part of the next name (市南区)
            start = k
            break
        units, start = units + 1, k
    if m.group("village") is not None:
        ok = units >= 2
    else:
        ok = units >= 1 or _ADDR_CUE_RE.search(text[max(0, start - 8) : start]) is not None
    return (start, m.end()) if ok else None


def _en_addr_span(m: re.Match, text: str) -> tuple[int, int] | None:
    return m.span()


# --------------------------------------------------------------------------------------------------

Validator = Callable[[re.Match, str], "tuple[int, int] | None"]
# (type, pattern, validator) in priority order: an earlier entry wins an overlap.
Detector = tuple[str, re.Pattern, Validator]
DETECTORS: list[Detector] = [
    ("email", EMAIL_RE, _email_span),
    ("ipv6", IPV6_RE, _ipv6_span),
    ("cn_id", CN_ID_RE, _cn_id_span),
    ("bank_card", CARD_RE, _card_span),
    ("cn_id", CN_ID15_RE, _cn_id15_span),
    ("ipv4", IPV4_RE, _ipv4_span),
    ("phone", MOBILE_RE, _mobile_span),
    ("phone", PHONE_RE, _phone_span),
    ("passport", PASSPORT_CN_RE, lambda m, t: m.span()),
    ("passport", PASSPORT_KW_RE, _passport_kw_span),
    ("address", ZH_ADDR_ANCHOR_RE, _zh_addr_span),
    ("address", EN_ADDR_RE, _en_addr_span),
    ("person_name", ZH_NAME_CUE_RE, _zh_name_span),
    ("person_name", ZH_TITLE_RE, _zh_title_span),
    ("person_name", EN_NAME_RE, _en_name_span),
]


# Cheap necessary conditions, one C-level scan each: every e-mail has an '@', every IPv6 match two
# colons at most four hex digits apart, every phone, ID, card or IPv4 match a run of at least seven
# characters of digits and separators that starts and ends with a digit, every passport a
# letter-digit run or a keyword, every name a cue or title, every address 号/村 or a street type.
# Text without them (most prose) skips the detectors and their validators.
_VILLAGE_HINT_RE = re.compile(r"村\d")  # 村庄 in prose is not an anchor; 村3组 is
_DIGIT_HINT_RE = re.compile(r"\d[\d .()-]{5,}\d")
_IPV6_HINT_RE = re.compile(r":[0-9A-Fa-f]{0,4}:")
_PASSPORT_HINT_RE = re.compile(r"[EG][A-Z0-9]\d{7}")
# Substrings of every keyword form in _PASSPORT_KW: ``in`` runs at memory speed, an alternation does not.
_PASSPORT_KW_PARTS = ("assport", "ASSPORT", "asaporte", "ASAPORTE", "asseport", "ASSEPORT", "eisepass", "EISEPASS",
                      "assaporto", "ASSAPORTO", "护照")  # fmt: skip
_LONG_DIGITS_HINT_RE = re.compile(r"\d[\d -]{13,}[\dXx]")  # IDs (15/18) and cards (14-19)
_DOTTED_QUAD_HINT_RE = re.compile(r"\d\.\d{1,3}\.\d{1,3}\.\d")


def _candidate_kinds(text: str) -> set[str]:
    """Which detectors can match ``text`` (already folded)."""
    kinds = set()
    if "@" in text:
        kinds.add("email")
    if _IPV6_HINT_RE.search(text):
        kinds.add("ipv6")
    if _DIGIT_HINT_RE.search(text):
        kinds.add("phone")  # mobiles, landlines, international and North American numbers
        if _LONG_DIGITS_HINT_RE.search(text):
            kinds |= {"cn_id", "bank_card"}
        if _DOTTED_QUAD_HINT_RE.search(text):
            kinds.add("ipv4")
    if _PASSPORT_HINT_RE.search(text) or any(k in text for k in _PASSPORT_KW_PARTS):
        kinds.add("passport")
    zh_addr = "号" in text or "號" in text or ("村" in text and _VILLAGE_HINT_RE.search(text) is not None)
    if zh_addr or _EN_ADDR_HINT_RE.search(text):
        kinds.add("address")
    if _NAME_HINT_ZH_RE.search(text) or _NAME_HINT_EN_RE.search(text):
        kinds.add("person_name")
    return kinds


def find_pii(text: str, types: set[str] | None = None) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, type) spans in ``text``, validated, in text order.

    Detection runs on ``fold(text)``, which has the same length, so the spans index ``text`` itself.
    """
    view = fold(text)
    spans: list[tuple[int, int, str]] = []
    kinds = _candidate_kinds(view)
    if types is not None:
        kinds &= types
    if not kinds:
        return spans
    # spans taken so far, disjoint and sorted by start (so their ends are sorted too): a new span
    # overlaps one iff the last taken span starting before its end ends after its start
    starts: list[int] = []
    ends: list[int] = []
    for kind, pattern, ok in DETECTORS:
        if kind not in kinds:
            continue
        for m in pattern.finditer(view):
            span = ok(m, view)
            if span is None:
                continue
            s, e = span
            if s >= e:
                continue
            k = bisect_left(starts, e)
            if k and ends[k - 1] > s:
                continue
            spans.append((s, e, kind))
            starts.insert(k, s)
            ends.insert(k, e)
    spans.sort()
    return spans


def redact(text: str, types: set[str] | None = None, placeholders: dict | None = None) -> tuple[str, dict]:
    """``text`` with PII replaced by placeholders, and how many of each type were replaced."""
    ph = placeholders or PLACEHOLDERS
    spans = find_pii(text, types)
    if not spans:
        return text, {}
    out, pos, counts = [], 0, {}
    for s, e, kind in spans:
        out.append(text[pos:s])
        out.append(ph[kind])
        counts[kind] = counts.get(kind, 0) + 1
        pos = e
    out.append(text[pos:])
    return "".join(out), counts


class Pii(Step):
    name = "pii"
    modalities = TEXT
    kind = "mapper"
    description = (
        "Redact e-mail, phone, Chinese ID, bank card (Luhn), IPv4/IPv6, passport, personal name and address "
        "with typed placeholders."
    )
    params = (
        Param("types", "list[str]", list(PLACEHOLDERS), "PII types to redact: " + ", ".join(PLACEHOLDERS) + "."),
        Param("reject_over", "int", 0, "Reject a record with more PII matches than this (0 = never reject)."),
    )

    def setup(self) -> None:
        bad = sorted(set(self.types) - set(PLACEHOLDERS))
        if bad:
            from ciyuan.errors import InvalidInput

            raise InvalidInput(f"{self.name}: unknown type(s) {', '.join(bad)}", hint=f"use {', '.join(PLACEHOLDERS)}")
        self._types = set(self.types)

    def process(self, record: dict) -> None:
        text = record.get("text")
        if not text:
            return
        new, counts = redact(text, self._types)
        if not counts:
            return
        record["text"] = new
        self.account(record, counts, text)

    def account(self, record: dict, counts: dict, old_text: str) -> None:
        """Count what was redacted in the step and the record, and reject past ``reject_over``."""
        self.stats.counters.update(counts)
        cur = curation_meta(record)
        pii = cur.setdefault("pii", {})
        for k, v in counts.items():
            pii[k] = pii.get(k, 0) + v
        self.mark_changed(record, old_text)
        total = sum(counts.values())
        if self.reject_over and total > self.reject_over:
            self.reject(record, "too_much_pii", f"{self.name}: {total} matches > {self.reject_over}")
