"""The shared base of the media schedules that count from probed facts, never from declared ones.

Ingest probes each media object from its bytes and writes what it found under one key per modality
of the record's ``meta`` (``meta.image``, ``meta.audio``, ``meta.video``; the keys are listed in
docs/tokens.md). A :class:`ProbedSchedule` reads only that key, so a number a provider typed into
``meta.width`` can never change a count. Records of another modality count 0 under it, as a media
record counts 0 under a text schedule, so one schedule can price a mixed dataset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from ciyuan.errors import InvalidInput

DECLARED_HINT = {
    "image": "image-patch28-declared",
    "audio": "audio-25hz-declared",
    "video": "video-frames-declared",
}


def rid(record: dict) -> str:
    return str(record.get("id", "?"))


def probed_facts(record: dict, modality: str, schedule: str) -> dict:
    """``meta[modality]`` of ``record``: the facts the probe found in its bytes."""
    meta = record.get("meta") or {}
    if isinstance(meta, str):  # meta straight from a Parquet shard is JSON text
        try:
            meta = json.loads(meta)
        except ValueError as exc:
            raise InvalidInput(f"record {rid(record)}: meta is not valid JSON", hint="fix the record's meta") from exc
    if not isinstance(meta, dict):
        raise InvalidInput(f"record {rid(record)}: meta must be an object", hint="fix the record's meta")
    facts = meta.get(modality)
    if facts is None:
        raise InvalidInput(
            f"record {rid(record)}: meta.{modality} is missing; {schedule} counts from the facts probed "
            f"from the {modality} bytes",
            hint=f"ingest the {modality} file itself so it is probed, or count records that carry no bytes "
            f"with {DECLARED_HINT.get(modality, 'a declared schedule')}",
        )
    if not isinstance(facts, dict):
        raise InvalidInput(f"record {rid(record)}: meta.{modality} must be an object of probed facts",
                           hint=f"re-ingest the {modality} so the probe fills meta.{modality}")  # fmt: skip
    return facts


def _where(record: dict, modality: str, key: str) -> str:
    return f"record {rid(record)}: meta.{modality}.{key}"


def whole(record: dict, modality: str, facts: dict, key: str, *, minimum: int = 1) -> int:
    """A whole number >= ``minimum`` from the probed facts (pixels, frames, samples)."""
    v = facts.get(key)
    if v is None:
        raise InvalidInput(f"{_where(record, modality, key)} is missing",
                           hint=f"re-ingest the {modality} so the probe fills it")  # fmt: skip
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise InvalidInput(f"{_where(record, modality, key)} is {v!r}, not a whole number >= {minimum}",
                           hint=f"re-ingest the {modality} so the probe fills it")  # fmt: skip
    return v


def exact(record: dict, modality: str, facts: dict, key: str, *, positive: bool = True) -> Fraction | None:
    """An exact rational from the facts (a number as written, or ``"30000/1001"``); None if absent."""
    v = facts.get(key)
    if v is None:
        return None
    num: Fraction | None
    try:
        if isinstance(v, bool):
            num = None
        elif isinstance(v, int):
            num = Fraction(v)
        elif isinstance(v, float):  # repr is the shortest decimal that round-trips: what the probe wrote
            num = Fraction(Decimal(repr(v)))
        elif isinstance(v, str) and "/" in v:
            a, b = v.split("/", 1)
            num = Fraction(int(a.strip()), int(b.strip()))
        elif isinstance(v, str):
            num = Fraction(Decimal(v.strip()))
        else:
            num = None
    except (InvalidOperation, ValueError, ZeroDivisionError):
        num = None
    if num is None or num < 0 or (positive and num == 0):
        want = "a positive number" if positive else "a number >= 0"
        raise InvalidInput(f"{_where(record, modality, key)} is {v!r}, not {want}",
                           hint=f"re-ingest the {modality} so the probe fills it")  # fmt: skip
    return num


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def ceil_frac(x: Fraction) -> int:
    return -((-x.numerator) // x.denominator)


def probed_version(name: str, revision: int, params: dict) -> str:
    """First 16 hex digits of sha256 over name, revision and parameters: a changed parameter is a new version."""
    canon = json.dumps({"schedule": name, "revision": revision, "params": params, "reads": "probed"},
                       sort_keys=True)  # fmt: skip
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


@dataclass
class ProbedSchedule:
    """A named, versioned count over ``meta[modality]``; ``per_item(schedule, record, facts)`` counts one."""

    name: str
    modality: str
    revision: int
    params: dict
    per_item: Callable[[ProbedSchedule, dict, dict], int] = field(repr=False)
    description: str = ""

    @property
    def version(self) -> str:
        return probed_version(self.name, self.revision, self.params)

    def count_records(self, records: list[dict]) -> list[int]:
        out: list[int] = []
        for r in records:
            m = r.get("modality")
            if m and m != self.modality:
                out.append(0)  # another modality has no tokens under this schedule
                continue
            out.append(int(self.per_item(self, r, probed_facts(r, self.modality, self.name))))
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "modality": self.modality,
                "description": self.description, "params": dict(self.params), "revision": self.revision}  # fmt: skip
