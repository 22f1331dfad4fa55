"""What every step shares: declared parameters, statistics, and the reject/changed marks.

A step is a callable over an iterator of record dicts that yields every record it receives. A filter
never drops a record: it marks it with ``record["_rejected"] = {"step", "rule", "code", "reason"}`` so
the executor can route it to the version's ``rejected`` partition; later steps pass marked records
through untouched. ``code`` is ``step.rule`` (``quality.c4_curly_bracket``, ``langid.low_score``,
``exact_dedup.exact_duplicate``): stable, what every listing counts by and ``--reason`` matches;
``reason`` is the human sentence with the measured values. A mapper edits the record and appends its name to
``meta["curation"]["changed_by"]``.

Every step declares the record modalities it applies to (``modalities``; the text steps say
``{"text"}``). A live record of another modality passes through untouched and is counted
``not_applicable`` for that step: neither kept nor rejected by it, and a global step's scans never
see it, so an image can no more be a "duplicate" of another image's missing text than be "too
short". ``seen = kept + rejected``; ``not_applicable`` counts the records a step let by.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ciyuan.curate.codes import rejection_code
from ciyuan.errors import InvalidInput

REJECTED = "_rejected"
TEXT: frozenset[str] = frozenset({"text"})


def batched(records: Iterable[dict], size: int, max_chars: int | None = None) -> Iterator[list[dict]]:
    """Records in lists of ``size`` (the last shorter), or fewer once their texts reach ``max_chars``
    characters: what a scan signs or hashes at a time. Why the characters: a run of long documents
    weighs many times a run of short ones, and the heaviest run in a corpus grows with the corpus."""
    batch: list[dict] = []
    chars = 0
    for r in records:
        batch.append(r)
        if max_chars is not None:
            chars += len(r.get("text") or "")
        if len(batch) >= size or (max_chars is not None and chars >= max_chars):
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def modality_of(record: dict) -> str:
    """A record's modality; records written before the field existed are text."""
    return record.get("modality") or "text"


@dataclass(frozen=True)
class Param:
    """One documented step parameter (listed by ``ciyuan steps``)."""

    name: str
    type: str  # "int" | "float" | "bool" | "str" | "list[str]" | "list[int]"
    default: Any
    help: str
    choices: tuple[str, ...] | None = None

    def coerce(self, value: Any, step: str) -> Any:
        """Accept YAML/CLI values (strings, scalars, lists) and check them against the type."""
        try:
            if value is None:
                return None
            if self.type == "int":
                if isinstance(value, bool):
                    raise ValueError
                return int(value)
            if self.type == "float":
                return float(value)
            if self.type == "bool":
                if isinstance(value, str):
                    if value.lower() in ("1", "true", "yes", "on"):
                        return True
                    if value.lower() in ("0", "false", "no", "off"):
                        return False
                    raise ValueError
                return bool(value)
            if self.type.startswith("list"):
                items = value.split(",") if isinstance(value, str) else list(value)
                conv = int if self.type == "list[int]" else str
                return [conv(x.strip() if isinstance(x, str) else x) for x in items if str(x).strip()]
            value = str(value)
            if self.choices and value not in self.choices:
                raise ValueError
            return value
        except (TypeError, ValueError):
            want = f"one of {', '.join(self.choices)}" if self.choices else self.type
            raise InvalidInput(
                f"step {step!r}: parameter {self.name!r} got {value!r}, expected {want}",
                hint=f"run `ciyuan steps` to see {step}'s parameters",
            ) from None

    def to_dict(self) -> dict:
        d = {"name": self.name, "type": self.type, "default": self.default, "help": self.help}
        if self.choices:
            d["choices"] = list(self.choices)
        return d


@dataclass
class StepStats:
    """Counts one step keeps; merged across shards and workers by :meth:`merge`."""

    step: str
    seen: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)  # rule -> records
    changed: int = 0
    tokens_removed: int = 0
    not_applicable: Counter = field(default_factory=Counter)  # modality -> records the step let by
    counters: Counter = field(default_factory=Counter)  # step specific, e.g. PII type -> matches
    extra: dict = field(default_factory=dict)  # step specific, e.g. largest duplicate clusters

    def merge(self, other: StepStats) -> StepStats:
        self.seen += other.seen
        self.kept += other.kept
        self.rejected.update(other.rejected)
        self.changed += other.changed
        self.tokens_removed += other.tokens_removed
        self.not_applicable.update(other.not_applicable)
        self.counters.update(other.counters)
        for k, v in other.extra.items():
            mine = self.extra.get(k)
            if isinstance(mine, dict) and isinstance(v, dict):
                mine.update(v)
            else:
                self.extra.setdefault(k, v)
        return self

    def to_dict(self) -> dict:
        return {
            "step": self.step,
            "seen": self.seen,
            "kept": self.kept,
            "rejected": sum(self.rejected.values()),
            "rejected_by_rule": dict(sorted(self.rejected.items())),
            "rejected_by_code": {rejection_code(self.step, r): n for r, n in sorted(self.rejected.items())},
            "changed": self.changed,
            "tokens_removed": self.tokens_removed,
            "not_applicable": sum(self.not_applicable.values()),
            "not_applicable_by_modality": dict(sorted(self.not_applicable.items())),
            "counters": dict(sorted(self.counters.items())),
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> StepStats:
        return cls(
            step=d["step"],
            seen=d.get("seen", 0),
            kept=d.get("kept", 0),
            rejected=Counter(d.get("rejected_by_rule", {})),
            changed=d.get("changed", 0),
            tokens_removed=d.get("tokens_removed", 0),
            not_applicable=Counter(d.get("not_applicable_by_modality", {})),
            counters=Counter(d.get("counters", {})),
            extra=dict(d.get("extra", {})),
        )


def token_count(record: dict, tokenizer: str | None = None) -> int | None:
    """The record's token count under ``tokenizer`` (default: the first one counted), if known."""
    toks = record.get("tokens") or {}
    if tokenizer:
        return toks.get(tokenizer)
    for v in toks.values():
        return v
    return None


def curation_meta(record: dict) -> dict:
    """``meta["curation"]``, created on first use."""
    meta = record.get("meta")
    if meta is None:
        meta = record["meta"] = {}
    return meta.setdefault("curation", {})


class Step:
    """Base of every step. Subclasses set ``name``, ``kind``, ``modalities``, ``params`` and implement ``process``."""

    name: ClassVar[str] = ""
    kind: ClassVar[str] = "mapper"  # "mapper" | "filter" | "dedup"
    description: ClassVar[str] = ""
    modalities: ClassVar[frozenset[str]] = frozenset()  # every concrete step names its own
    params: ClassVar[tuple[Param, ...]] = ()

    def __init__(self, **kwargs: Any):
        known = {p.name: p for p in self.params}
        unknown = sorted(set(kwargs) - set(known))
        if unknown:
            raise InvalidInput(
                f"step {self.name!r} has no parameter {', '.join(map(repr, unknown))}",
                hint=f"its parameters are: {', '.join(known) or 'none'} (see `ciyuan steps`)",
            )
        for p in self.params:
            value = p.coerce(kwargs[p.name], self.name) if p.name in kwargs else p.default
            setattr(self, p.name, value)
        self.stats = StepStats(self.name)
        self.setup()

    def setup(self) -> None:
        """Check parameters and build lookup tables once (override)."""

    def warm(self) -> None:
        """Load the models and tables every call of the step needs (override).

        The local executor calls it in the driver before its worker processes fork, so they share
        one copy instead of each loading its own.
        """

    def config(self) -> dict:
        """Parameter values, as recorded in a version's recipe."""
        return {p.name: getattr(self, p.name) for p in self.params}

    def process(self, record: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset_stats(self) -> StepStats:
        """Hand over the counts so far and start afresh (executors call this per shard)."""
        done, self.stats = self.stats, StepStats(self.name)
        return done

    def applies(self, record: dict) -> bool:
        """Whether this step looks at ``record`` at all (its modality is one the step declares)."""
        return modality_of(record) in self.modalities

    def __call__(self, records: Iterable[dict]) -> Iterator[dict]:
        for record in records:
            if REJECTED not in record:
                if not self.applies(record):
                    self.stats.not_applicable[modality_of(record)] += 1
                else:
                    self.stats.seen += 1
                    self.process(record)
                    if REJECTED not in record:
                        self.stats.kept += 1
            yield record

    # marks -----------------------------------------------------------------------------------

    def reject(self, record: dict, rule: str, reason: str) -> None:
        """Mark ``record`` rejected by this step; it still flows on to the rejected partition."""
        record[REJECTED] = {"step": self.name, "rule": rule, "code": rejection_code(self.name, rule), "reason": reason}
        self.stats.rejected[rule] += 1
        self.stats.tokens_removed += token_count(record) or 0

    def mark_changed(self, record: dict, old_text: str) -> None:
        """Note that this step rewrote the text; tokens removed are estimated by character share."""
        cur = curation_meta(record)
        cur.setdefault("changed_by", []).append(self.name)
        self.stats.changed += 1
        toks = token_count(record)
        new_text = record.get("text") or ""
        if toks and old_text:
            self.stats.tokens_removed += max(0, round(toks * (1 - len(new_text) / len(old_text))))


class GlobalStep(Step):
    """A step that needs to see the whole input before deciding (deduplication).

    It runs in rounds so an executor can spread the reading over shards, workers or Ray:

    0. ``begin(scratch, rows)`` gives the first round's context: a scratch folder every scan can
       write to (shared by the workers) and an upper bound on the records it will see;
    1. ``scan(round, records, shard, context)`` reads one shard, writes what it learns to the
       scratch folder and returns a small picklable part; it sees only records not yet rejected
       and of a modality the step applies to (:meth:`scan_input`), in shard order;
    2. ``reduce(round, parts, context)`` runs once, on the driver, over the parts of every shard in
       shard order, and returns ``(done, next_context)``; while not done, another scan round follows
       with ``next_context``; when done, ``next_context`` is the plan, with the decisions about
       each shard's records under ``by_shard`` so a shard job loads only its own;
    3. ``bind(plan_for(plan, shard))`` then makes ``__call__`` a plain filter that marks the
       records the plan drops.

    :func:`ciyuan.curate.pipeline.run_steps` does this for an in-memory list.
    """

    kind: ClassVar[str] = "dedup"

    def setup(self) -> None:
        self.plan: dict | None = None

    def begin(self, scratch: str, rows: int) -> Any:
        """The first scan round's context."""
        return {"scratch": scratch, "rows": rows}

    def scan_input(self, records: Iterable[dict]) -> Iterator[dict]:
        """What a scan reads: live records this step applies to (executors and run_steps use it)."""
        return (r for r in records if REJECTED not in r and self.applies(r))

    def scan_columns(self, round_: int) -> list[str] | None:
        """Record fields a scan round reads (None: all); fewer fields, less decoding."""
        return None

    def scan(self, round_: int, records: Iterable[dict], shard: int, context: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def plan_for(plan: dict, shard: int) -> dict:
        """The part of a plan one shard needs: the summary and that shard's decisions."""
        out = {k: v for k, v in plan.items() if k != "by_shard"}
        out.update(plan["by_shard"][shard] if "by_shard" in plan else {})
        return out

    def reduce(self, round_: int, parts: list, context: Any) -> tuple[bool, Any]:
        raise NotImplementedError

    def bind(self, plan: dict) -> None:
        self.plan = plan

    def process(self, record: dict) -> None:
        if self.plan is None:
            raise InvalidInput(
                f"step {self.name!r} was run before its scan rounds",
                hint="run it through an executor or ciyuan.curate.pipeline.run_steps",
            )
        self.apply_plan(record)

    def apply_plan(self, record: dict) -> None:
        raise NotImplementedError
