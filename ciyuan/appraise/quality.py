"""Quality indicators of a version, each a score in [0, 1] with the evidence behind it.

Why these nine: they are the characteristics ISO/IEC 25012, ISO/IEC 5259-2 and GB/T 36344 share
that can be measured from the data alone (completeness, conformance, uniqueness, accuracy as PII
residue, consistency, currentness, diversity) plus the two a buyer needs to use data lawfully and
correctly (licence clarity, documentation). Each indicator says how it was measured and on how
many records, so a buyer can check it; an indicator that does not apply (no dates) is ``None``
and left out of the aggregate rather than guessed.

One streaming pass (:class:`QualityAccumulator`) keeps memory flat for millions of records: exact
duplicates are 8-byte hashes, and the expensive probes (PII regexes, language id, n-gram
diversity) run on a deterministic sample of at most ``sample`` records.
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime

import numpy as np

from ciyuan.ingest.declared import CARD_FIELDS

MODALITIES = {"text", "image", "audio", "video", "tabular", "binary", "episode"}
# records judged by their bytes, not their text (an episode's text is its task, shared by many demonstrations)
MEDIA_MODALITIES = frozenset({"image", "audio", "video", "episode"})
TEXT_ONLY = ("language_consistency", "diversity")  # indicators that read text: not applicable to media-only
DATE_FIELDS = ("date", "created_at", "created", "published", "published_at", "timestamp", "time",
               "updated_at", "year", "发布时间", "日期")  # fmt: skip
DOMAIN_FIELDS = ("domain", "source", "category", "topic", "industry")
HALF_LIFE_YEARS = 3.0

# Common SPDX licence identifiers (a subset of https://spdx.org/licenses/, lower-cased for lookup).
SPDX_IDS = {
    s.lower(): s
    for s in [
        "Apache-2.0",
        "MIT",
        "BSD-2-Clause",
        "BSD-3-Clause",
        "ISC",
        "MPL-2.0",
        "LGPL-2.1-only",
        "LGPL-2.1-or-later",
        "LGPL-3.0-only",
        "LGPL-3.0-or-later",
        "GPL-2.0-only",
        "GPL-2.0-or-later",
        "GPL-3.0-only",
        "GPL-3.0-or-later",
        "AGPL-3.0-only",
        "AGPL-3.0-or-later",
        "CC0-1.0",
        "CC-BY-4.0",
        "CC-BY-SA-4.0",
        "CC-BY-NC-4.0",
        "CC-BY-NC-SA-4.0",
        "CC-BY-ND-4.0",
        "CC-BY-NC-ND-4.0",
        "CC-BY-3.0",
        "CC-BY-SA-3.0",
        "ODC-By-1.0",
        "ODbL-1.0",
        "PDDL-1.0",
        "CDLA-Permissive-2.0",
        "CDLA-Sharing-1.0",
        "Unlicense",
        "EPL-2.0",
        "Zlib",
        "BSL-1.0",
        "OpenRAIL",
        "Artistic-2.0",
        "OFL-1.1",
        "WTFPL",
        "MulanPSL-2.0",
    ]
}

# Card fields counted for documentation completeness (Croissant core + RAI).

# Weights of the aggregate quality score Q (indicators that are None are left out, weights renormalised).
WEIGHTS = {
    "completeness": 1.0, "schema_conformance": 1.0, "duplication": 1.5, "pii_residue": 1.5,
    "language_consistency": 0.5, "timeliness": 0.5, "diversity": 1.0, "licence_clarity": 1.0,
    "documentation": 0.5,
}  # fmt: skip


def _pii_finder():
    """The curation layer's validated PII detector (the layer below), and its name for the report."""
    from ciyuan.curate.steps.pii import find_pii

    return find_pii, "ciyuan.curate.steps.pii.find_pii"


def _langid():
    from ciyuan.curate.steps.langid import detect

    return detect


def _norm_hash(text: str) -> int:
    """8-byte hash of text with case and whitespace folded (exact-duplicate detection)."""
    norm = " ".join(text.lower().split())
    return int.from_bytes(hashlib.blake2b(norm.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def _parse_date(value) -> datetime | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
        if 1000 <= v <= 3000:  # a year
            return datetime(int(v), 7, 1, tzinfo=UTC)
        if 1e8 < v < 1e11:  # unix seconds
            return datetime.fromtimestamp(v, UTC)
        if 1e11 <= v < 1e14:  # unix milliseconds
            return datetime.fromtimestamp(v / 1000, UTC)
        return None
    s = str(value).strip()
    m = re.match(r"^(\d{4})(?:[-/.年](\d{1,2})(?:[-/.月](\d{1,2}))?)?", s)
    if not m:
        return None
    try:
        y, mo, d = int(m[1]), int(m[2] or 7), int(m[3] or 1)
        return datetime(y, mo, d, tzinfo=UTC) if 1000 <= y <= 3000 else None
    except ValueError:
        return None


def _entropy(counts: Counter) -> tuple[float, float]:
    """(entropy in bits, normalised entropy in [0, 1])."""
    total = sum(counts.values())
    if total == 0 or len(counts) < 2:
        return 0.0, 0.0
    ps = np.array(list(counts.values()), dtype=float) / total
    h = float(-(ps * np.log2(ps)).sum())
    return h, h / math.log2(len(counts))


def licence_clarity(licence: str | None) -> dict:
    """1 for a known SPDX id (or an SPDX expression of known ids), 0.5 for other text, 0 if missing."""
    if not licence or not str(licence).strip():
        return {"score": 0.0, "evidence": {"licence": None, "why": "no licence declared"}}
    s = str(licence).strip()
    s = re.sub(r"^https?://spdx\.org/licenses/([^/]+?)(?:\.html)?$", r"\1", s)
    parts = [p for p in re.split(r"\s+(?:AND|OR|WITH)\s+|[()]", s) if p.strip()]
    if parts and all(p.strip().lower() in SPDX_IDS for p in parts):
        return {"score": 1.0, "evidence": {"licence": s, "spdx": True}}
    return {"score": 0.5, "evidence": {"licence": s, "spdx": False, "why": "not an SPDX identifier"}}


def documentation(card: dict) -> dict:
    """Share of the Croissant and RAI card fields that are filled."""
    filled = [f for f in CARD_FIELDS if card.get(f) not in (None, "", [], {})]
    missing = [f for f in CARD_FIELDS if f not in filled]
    return {"score": len(filled) / len(CARD_FIELDS), "evidence": {"filled": filled, "missing": missing}}


class QualityAccumulator:
    """Streams records once and returns every indicator with its evidence."""

    def __init__(
        self,
        expected_records: int | None = None,
        sample: int = 20_000,
        required_meta: Iterable[str] = (),
        now: datetime | None = None,
    ):
        self.sample_every = max(1, math.ceil((expected_records or 0) / sample)) if expected_records else 1
        self.sample_cap = sample
        self.required_meta = tuple(required_meta)
        self.now = now or datetime.now(UTC)
        self.n = 0
        self.missing = Counter()
        self.complete = 0
        self.violations = Counter()
        self.violation_examples: list[str] = []
        self.conforming = 0
        self.hashes: list[np.ndarray] = []
        self._hbuf: list[int] = []
        self.texts = 0
        self.media = 0  # image, audio and video records: judged by their media, their captions by PII only
        self.text_sampled = 0
        self.sampled = 0
        self.pii_records = 0
        self.pii_kinds = Counter()
        self.langs = Counter()
        self.domains = Counter()
        self.domain_field: str | None = None
        self.dated = 0
        self.ages: list[float] = []
        self.bigrams_total = 0
        self.bigrams: set[int] = set()
        self._find_pii, self.pii_source = _pii_finder()
        self._detect = None

    # -- per record ------------------------------------------------------------------------

    def add(self, rec: dict) -> None:
        i = self.n
        self.n += 1
        text = rec.get("text")
        meta = rec.get("meta")
        self._conformance(rec, meta)
        self._completeness(rec, text, meta)
        is_media = rec.get("modality") in MEDIA_MODALITIES
        self.media += is_media
        if isinstance(text, str) and text and not is_media:  # a caption repeated on two pictures is no copy
            self.texts += 1
            self._hbuf.append(_norm_hash(text))
            if len(self._hbuf) >= 65536:
                self.hashes.append(np.array(self._hbuf, dtype=np.uint64))
                self._hbuf = []
        if isinstance(meta, dict):
            self._dates(meta)
            self._domain(meta)
        picked = (
            self.sample_every <= 1
            or zlib.crc32(str(rec.get("id", i)).encode("utf-8", "surrogatepass")) % (self.sample_every) == 0
        )
        if picked and self.sampled < self.sample_cap and isinstance(text, str) and text:
            self.sampled += 1
            self._probe(text, meta if isinstance(meta, dict) else {}, pii_only=is_media)

    def add_many(self, records: Iterable[dict]) -> None:
        for r in records:
            self.add(r)

    def _conformance(self, rec: dict, meta) -> None:
        bad = []
        if not isinstance(rec.get("id"), str) or not rec.get("id"):
            bad.append("id_not_string")
        if rec.get("modality", "text") not in MODALITIES:
            bad.append("unknown_modality")
        if rec.get("text") is not None and not isinstance(rec.get("text"), str):
            bad.append("text_not_string")
        if meta is not None and not isinstance(meta, dict):
            bad.append("meta_not_object")
        toks = rec.get("tokens")
        if toks is not None and (
            not isinstance(toks, dict) or any(not isinstance(v, int) or v < 0 for v in toks.values())
        ):
            bad.append("tokens_not_counts")
        if bad:
            self.violations.update(bad)
            if len(self.violation_examples) < 5:
                self.violation_examples.append(str(rec.get("id")))
        else:
            self.conforming += 1

    def _completeness(self, rec: dict, text, meta) -> None:
        ok = True
        modality = rec.get("modality") or "text"
        if modality == "text":
            if not isinstance(text, str) or not text.strip():
                self.missing["text"] += 1
                ok = False
        elif not (rec.get("media") or rec.get("media_ref") or (isinstance(meta, dict) and meta.get("sha256"))):
            # the appraisal's scan leaves the bytes unread: the ingest's sha256 of them says they are there
            self.missing["media"] += 1
            ok = False
        m = meta if isinstance(meta, dict) else {}
        for f in self.required_meta:
            if m.get(f) in (None, "", [], {}):
                self.missing[f"meta.{f}"] += 1
                ok = False
        self.complete += ok

    def _dates(self, meta: dict) -> None:
        for f in DATE_FIELDS:
            if f in meta:
                d = _parse_date(meta[f])
                if d is not None:
                    self.dated += 1
                    age = (self.now - d).total_seconds() / (365.25 * 86400)
                    if len(self.ages) < 200_000:
                        self.ages.append(max(age, 0.0))
                    return

    def _domain(self, meta: dict) -> None:
        if self.domain_field is None:
            for f in DOMAIN_FIELDS:
                if isinstance(meta.get(f), str | int):
                    self.domain_field = f
                    break
        if self.domain_field and isinstance(meta.get(self.domain_field), str | int):
            v = str(meta[self.domain_field])
            if len(self.domains) < 10_000 or v in self.domains:
                self.domains[v] += 1

    def _probe(self, text: str, meta: dict, pii_only: bool = False) -> None:
        hits = self._find_pii(text)
        if hits:
            self.pii_records += 1
            self.pii_kinds.update(k for _, _, k in hits)
        if pii_only:
            return
        self.text_sampled += 1
        lang = meta.get("language")
        if not isinstance(lang, str) or not lang:
            if self._detect is None:
                self._detect = _langid()
            lang = self._detect(text, 1000)[0]
        self.langs[lang] += 1
        from ciyuan.appraise.features import words

        ws = words(text[:5000])
        self.bigrams_total += max(len(ws) - 1, 0)
        for a, b in zip(ws, ws[1:], strict=False):
            self.bigrams.add(hash((a, b)))  # in-process only: never stored

    # -- result ----------------------------------------------------------------------------

    def duplicate_count(self) -> int:
        parts = self.hashes + ([np.array(self._hbuf, dtype=np.uint64)] if self._hbuf else [])
        if not parts:
            return 0
        h = np.concatenate(parts)
        return int(len(h) - len(np.unique(h)))

    def result(self, licence: str | None = None, card: dict | None = None, near_duplicates: int | None = None
               ) -> dict:  # fmt: skip
        n = max(self.n, 1)
        exact = self.duplicate_count()
        dup_records = exact if near_duplicates is None else max(exact, near_duplicates)
        ind: dict[str, dict] = {}
        ind["completeness"] = {
            "score": self.complete / n,
            "evidence": {
                "records": self.n,
                "complete": self.complete,
                "missing": dict(self.missing),
                "required_meta": list(self.required_meta),
            },  # fmt: skip
        }
        ind["schema_conformance"] = {
            "score": self.conforming / n,
            "evidence": {
                "records": self.n,
                "conforming": self.conforming,
                "violations": dict(self.violations),
                "examples": self.violation_examples,
            },  # fmt: skip
        }
        judged = self.texts + self.media
        ind["duplication"] = {
            "score": 1 - dup_records / max(judged, 1),
            "evidence": {
                "texts": self.texts,
                "media": self.media,
                "exact_duplicates": exact,
                "near_duplicates": near_duplicates,
                "duplicate_rate": dup_records / max(judged, 1),
            },  # fmt: skip
        }
        s = max(self.sampled, 1)
        ind["pii_residue"] = {
            "score": 1 - self.pii_records / s,
            "evidence": {
                "sampled": self.sampled,
                "records_with_pii": self.pii_records,
                "by_kind": dict(self.pii_kinds),
                "detector": self.pii_source,
            },  # fmt: skip
        }
        top = self.langs.most_common(1)
        lang_h, lang_hn = _entropy(self.langs)
        ts = max(self.text_sampled, 1)
        ind["language_consistency"] = {
            "score": (top[0][1] / ts) if top else None,
            "evidence": {
                "sampled": self.text_sampled,
                "dominant": top[0][0] if top else None,
                "languages": dict(self.langs.most_common(10)),
                "entropy_bits": lang_h,
            },  # fmt: skip
        }
        if self.ages:
            ages = np.array(self.ages)
            ind["timeliness"] = {
                "score": float(np.mean(0.5 ** (ages / HALF_LIFE_YEARS))),
                "evidence": {"dated_records": self.dated, "share_dated": self.dated / n,
                             "median_age_years": float(np.median(ages)), "half_life_years": HALF_LIFE_YEARS},
            }  # fmt: skip
        else:
            ind["timeliness"] = {"score": None, "evidence": {"dated_records": 0, "why": "no dates in meta"}}
        distinct = len(self.bigrams) / self.bigrams_total if self.bigrams_total else 0.0
        dom_h, dom_hn = _entropy(self.domains)
        parts = [distinct] + ([dom_hn] if len(self.domains) >= 2 else [])
        ind["diversity"] = {
            "score": float(np.mean(parts)) if self.bigrams_total else None,
            "evidence": {
                "distinct_bigram_ratio": distinct,
                "bigrams": self.bigrams_total,
                "domain_field": self.domain_field,
                "domains": len(self.domains),
                "domain_entropy_norm": dom_hn,
                "language_entropy_norm": lang_hn,
            },  # fmt: skip
        }
        if self.media and not self.n - self.media:  # media only: what reads text does not apply
            why = ("a media-only version (images, audio, video, robot episodes): language and wording are "
                   "measured on text records only")
            for name in TEXT_ONLY:
                ind[name] = {"score": None, "applies": False, "evidence": {"why": why, "media": self.media}}
        ind["licence_clarity"] = licence_clarity(licence)
        ind["documentation"] = documentation(card or {})
        return {"indicators": ind, "score": aggregate(ind)}


def aggregate(indicators: dict) -> float:
    """Q = weighted mean of the indicators that apply (weights in ``WEIGHTS``)."""
    num = den = 0.0
    for name, w in WEIGHTS.items():
        s = indicators.get(name, {}).get("score")
        if s is not None:
            num += w * float(s)
            den += w
    return num / den if den else 0.0


def assess(records: Iterable[dict], licence: str | None = None, card: dict | None = None, **kw) -> dict:
    """Quality of an iterable of records in one pass (convenience over the accumulator)."""
    acc = QualityAccumulator(**kw)
    acc.add_many(records)
    return acc.result(licence=licence, card=card)
