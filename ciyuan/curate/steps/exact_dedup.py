"""Exact deduplication on normalised text; the first record (in shard order) is kept."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

from ciyuan.curate.steps.base import GlobalStep, Param
from ciyuan.curate.text import stable_hash

_WS_RE = re.compile(r"\s+")


class ExactDedup(GlobalStep):
    name = "exact_dedup"
    description = "Drop records whose normalised text equals an earlier record's (hash of NFC text)."
    params = (
        Param("lowercase", "bool", False, "Compare case-insensitively."),
        Param("ignore_whitespace", "bool", True, "Collapse all whitespace before hashing."),
    )

    def key(self, text: str) -> int:
        """64-bit hash of the normalised text: equal texts after NFC/whitespace/case get equal keys."""
        t = unicodedata.normalize("NFC", text)
        if self.ignore_whitespace:
            t = _WS_RE.sub(" ", t).strip()
        if self.lowercase:
            t = t.lower()
        return stable_hash(t)

    def scan(self, round_: int, records: Iterable[dict], shard: int, context: Any) -> list[tuple[int, str]]:
        return [(self.key(r.get("text") or ""), r["id"]) for r in records]

    def reduce(self, round_: int, parts: list, context: Any) -> tuple[bool, dict]:
        first: dict[int, str] = {}
        size: dict[int, int] = {}
        drop: dict[str, str] = {}
        for part in parts:
            for h, rid in part:
                keeper = first.setdefault(h, rid)
                size[h] = size.get(h, 0) + 1
                if keeper != rid:
                    drop[rid] = keeper
        groups = {first[h]: n for h, n in size.items() if n > 1}
        top = sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
        return True, {"drop": drop, "groups": groups, "top": top}

    def bind(self, plan: dict) -> None:
        super().bind(plan)
        self.stats.extra["largest_groups"] = [{"keeper": k, "size": n} for k, n in plan.get("top", [])]

    def apply_plan(self, record: dict) -> None:
        rid = record["id"]
        keeper = self.plan["drop"].get(rid)
        meta = record.setdefault("meta", {})
        if keeper is not None:
            meta["exact_dup_of"] = keeper
            self.reject(record, "exact_duplicate", f"exact_dedup: same text as {keeper}")
        elif rid in self.plan["groups"]:
            self.stats.counters["groups"] += 1
