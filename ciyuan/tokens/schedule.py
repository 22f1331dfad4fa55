"""Token schedules: how many tokens a record is worth, for every modality, behind one interface.

A schedule turns record dicts (see docs/architecture.md) into token counts. Callers only ever do
``get_schedule(name).count_records(records)`` and store ``(name, version, count)``; a new modality
is a new class plus one ``register_schedule`` call, and no caller changes.

* Every tokenizer name (``cl100k_base``, ``qwen``, ``tiktoken:/...``, ``hf:/...``) is a text
  schedule over ``record["text"]``.
* Media with bytes is counted from the facts probed from the bytes (``ciyuan/tokens/vision.py``,
  ``audio.py``: Qwen2-VL, GPT-4o, Claude, Whisper, Qwen2-Audio, Qwen2.5-VL video); the formulas
  here over declared ``record["meta"]`` numbers (``*-declared``) remain for records without bytes.
* Media schedules are published formulas over numbers in ``record["meta"]``. Their version is a
  hash of the formula's name, revision and parameters, so changing a parameter changes the version
  and old counts are never silently mixed with new ones. Counts use exact decimal arithmetic on the
  numbers as written, so the same record always gets the same count.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ciyuan.config import DEFAULT_TOKENIZER
from ciyuan.errors import InvalidInput, NotFound
from ciyuan.tokens.tokenizers import BUILTIN_TOKENIZERS, Tokenizer, get_tokenizer, list_tokenizers, tokenizer_version

if TYPE_CHECKING:
    from ciyuan.config import Settings


@runtime_checkable
class TokenSchedule(Protocol):
    """Counts tokens of records of one modality; ``(name, version)`` identifies every count.

    A schedule may also say which record keys ``count_records`` reads, as ``record_fields``; the
    parallel counter (:func:`ciyuan.tokens.parallel.count_records_parallel`) then ships only those
    to its workers. Without it, whole records are shipped.
    """

    name: str
    version: str
    modality: str

    def count_records(self, records: list[dict]) -> list[int]: ...


# --------------------------------------------------------------------------- helpers


def _rid(record: dict) -> str:
    return str(record.get("id", "?"))


def _meta(record: dict) -> dict:
    meta = record.get("meta") or {}
    if isinstance(meta, str):  # meta straight from a Parquet shard is JSON text
        try:
            meta = json.loads(meta)
        except ValueError as exc:
            raise InvalidInput(f"record {_rid(record)}: meta is not valid JSON", hint="fix the record's meta") from exc
    if not isinstance(meta, dict):
        raise InvalidInput(f"record {_rid(record)}: meta must be an object", hint="fix the record's meta")
    return meta


def _number(record: dict, meta: dict, key: str, *, positive: bool = True, default: Any = None) -> Decimal:
    """An exact decimal from meta[key]; the error names the record and field."""
    value = meta.get(key, default)
    if value is None:
        raise InvalidInput(
            f"record {_rid(record)}: meta.{key} is missing", hint=f"set meta.{key} when ingesting this record"
        )
    if isinstance(value, bool):
        value = None
    try:
        # repr(float) is the shortest decimal that round-trips, i.e. what the writer meant
        num = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except (InvalidOperation, TypeError, ValueError):
        num = Decimal("NaN")
    if not num.is_finite() or num < 0 or (positive and num == 0):
        want = "a positive number" if positive else "a number >= 0"
        raise InvalidInput(f"record {_rid(record)}: meta.{key} is {value!r}, not {want}", hint=f"fix meta.{key}")
    return num


def _ceil(x: Decimal) -> int:
    return int(x.to_integral_value(rounding="ROUND_CEILING"))


def _formula_version(name: str, revision: int, params: dict) -> str:
    canon = json.dumps({"formula": name, "revision": revision, "params": params}, sort_keys=True)
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- text


def _count_texts(records: list[dict], name: str, tokenizer: Tokenizer, no_text: str | None) -> list[int]:
    """Tokens of each record's text under ``tokenizer``, reusing a stored count under ``name``.
    A record without text counts 0 (a media record), or is an error saying ``no_text`` when given."""
    out: list[int | None] = []
    todo: list[str] = []
    where: list[int] = []
    for r in records:
        stored = (r.get("tokens") or {}).get(name)
        if isinstance(stored, int) and not isinstance(stored, bool) and stored >= 0:
            out.append(stored)
            continue
        text = r.get("text")
        if text is None and no_text is None:
            out.append(0)  # a media record has no text tokens
            continue
        if not isinstance(text, str):
            raise InvalidInput(f"record {_rid(r)}: {no_text or 'text must be a string'}",
                               hint="re-ingest the record" if no_text else "fix the record's text")
        where.append(len(out))
        out.append(None)
        todo.append(text)
    counts = tokenizer.count_batch(todo) if todo else []
    for i, n in zip(where, counts, strict=True):
        out[i] = n
    return out  # type: ignore[return-value]


@dataclass
class TextSchedule:
    """Tokens of ``record["text"]`` under one tokenizer; a stored count for it is reused.

    The tokenizer is looked up by name on each use (a dict hit), so ``clear_cache`` or an edited
    vocabulary file is seen here too.
    """

    name: str
    modality: str = "text"
    record_fields: tuple[str, ...] = ("text", "tokens")

    @property
    def tokenizer(self) -> Tokenizer:
        return get_tokenizer(self.name)

    @property
    def version(self) -> str:
        return self.tokenizer.version

    def count_records(self, records: list[dict]) -> list[int]:
        return _count_texts(records, self.name, self.tokenizer, None)


# --------------------------------------------------------------------------- media formulas


@dataclass
class FormulaSchedule:
    """A published formula over each record's meta; see docs/tokens.md for each one."""

    name: str
    modality: str
    revision: int
    params: dict
    per_record: Callable[[FormulaSchedule, dict], int] = field(repr=False)
    description: str = ""
    record_fields: tuple[str, ...] = ("id", "meta")
    formula: str = ""  # the name hashed into the version, when it differs from the name (a rename)

    @property
    def version(self) -> str:
        return _formula_version(self.formula or self.name, self.revision, self.params)

    def count_records(self, records: list[dict]) -> list[int]:
        return [self.per_record(self, r) for r in records]


def _patches(record: dict, meta: dict, patch: int) -> int:
    w = _number(record, meta, "width")
    h = _number(record, meta, "height")
    return _ceil(w / patch) * _ceil(h / patch)


def _image_patch(s: FormulaSchedule, record: dict) -> int:
    return _patches(record, _meta(record), s.params["patch_px"])


def _audio(s: FormulaSchedule, record: dict) -> int:
    d = _number(record, _meta(record), "duration_s", positive=False)
    return _ceil(d * s.params["tokens_per_s"])


def _video(s: FormulaSchedule, record: dict) -> int:
    meta = _meta(record)
    d = _number(record, meta, "duration_s", positive=False)
    frames = max(1, _ceil(d * s.params["fps"]))  # even a zero-length clip shows one frame
    return frames * _patches(record, meta, s.params["patch_px"])


def _episode(s: FormulaSchedule, record: dict) -> int:
    meta = _meta(record)
    steps = _number(record, meta, "steps", positive=False)
    obs = _number(record, meta, "obs_tokens", positive=False, default=s.params["default_obs_tokens"])
    act = _number(record, meta, "action_tokens", positive=False, default=s.params["default_action_tokens"])
    for key, v in (("steps", steps), ("obs_tokens", obs), ("action_tokens", act)):
        if v != v.to_integral_value():
            raise InvalidInput(f"record {_rid(record)}: meta.{key} must be a whole number", hint=f"fix meta.{key}")
    return int(steps * (obs + act))


def _triples_of(record: dict) -> list[list[str]]:
    meta = _meta(record)
    if "triples" in meta:
        triples = meta["triples"]
    elif all(k in meta for k in ("subject", "predicate", "object")):
        triples = [[meta["subject"], meta["predicate"], meta["object"]]]
    else:
        raise InvalidInput(
            f"record {_rid(record)}: no triples in meta",
            hint="set meta.triples to [[subject, predicate, object], ...] or meta.subject/predicate/object",
        )
    if not isinstance(triples, list):
        raise InvalidInput(f"record {_rid(record)}: meta.triples must be a list", hint="fix meta.triples")
    for t in triples:
        if not (isinstance(t, list | tuple) and len(t) == 3 and all(isinstance(x, str) for x in t)):
            raise InvalidInput(
                f"record {_rid(record)}: each triple must be three strings, got {t!r}", hint="fix meta.triples"
            )
    return [list(t) for t in triples]


@dataclass
class TripleSchedule:
    """Knowledge-graph triples: tokens of subject, predicate and object, each counted on its own."""

    tokenizer_name: str = DEFAULT_TOKENIZER
    name: str = "triples"
    modality: str = "triple"
    revision: int = 1
    record_fields: tuple[str, ...] = ("id", "meta")

    @property
    def version(self) -> str:
        params = {"tokenizer": self.tokenizer_name, "tokenizer_version": tokenizer_version(self.tokenizer_name)}
        return _formula_version(self.name, self.revision, params)

    def count_records(self, records: list[dict]) -> list[int]:
        tok = get_tokenizer(self.tokenizer_name)
        parts: list[list[str]] = [[x for t in _triples_of(r) for x in t] for r in records]
        flat = [x for p in parts for x in p]
        counts = iter(tok.count_batch(flat))
        return [sum(next(counts) for _ in p) for p in parts]


# --------------------------------------------------------------------------- registry

_FACTORIES: dict[str, Callable[[], TokenSchedule]] = {}
_DESCRIPTIONS: dict[str, str] = {}
_cache: dict[str, TokenSchedule] = {}

# Which schedule a record of each modality is counted with by default: media from the facts probed
# from its bytes (ciyuan/tokens/vision.py, audio.py; ingest probes every media object).
MODALITY_DEFAULTS: dict[str, str] = {
    "text": DEFAULT_TOKENIZER,
    "image": "qwen2-vl-image",
    "audio": "whisper-audio",
    "video": "qwen2.5-vl-video",
    "episode": "episode-openvla",  # measured by the episode readers (ciyuan/tokens/episode.py)
    "triple": "triples",
    "graph": "ntriples",  # graph records (one subject each): tokens of their canonical N-Triples text
}
# ... and a media record that carries no bytes (a reference only, nothing to probe) by its declared formula
DECLARED_DEFAULTS: dict[str, str] = {
    "image": "image-patch28-declared",
    "audio": "audio-25hz-declared",
    "video": "video-frames-declared",
    "episode": "episode-steps",
}


def register_schedule(name: str, factory: Callable[[], TokenSchedule], description: str = "") -> None:
    """Add a schedule (later modalities call this at import); the name must be new."""
    if name in _FACTORIES or name in _ALIASES:
        raise InvalidInput(f"schedule {name!r} is already registered", hint="pick another name")
    _FACTORIES[name] = factory
    _DESCRIPTIONS[name] = description


def _formula(name: str, modality: str, params: dict, fn: Callable, description: str, formula: str = "") -> None:
    def make() -> FormulaSchedule:
        return FormulaSchedule(name, modality, 1, params, fn, description, formula=formula)

    register_schedule(name, make, description)


# Old names of renamed schedules: they still resolve (same formula, same version), so a listing
# priced under one keeps its schedule and its counts.
_ALIASES: dict[str, str] = {
    "image-patch28": "image-patch28-declared",
    "audio-25hz": "audio-25hz-declared",
    "video-frames": "video-frames-declared",
}


# The declared formulas read numbers a provider typed into meta: a reference for records that carry
# no bytes; media with bytes is counted from its probe (ciyuan/tokens/vision.py and audio.py).
_formula(
    "image-patch28-declared",
    "image",
    {"patch_px": 28},
    _image_patch,
    "declared meta.width/height (records without bytes): ceil(width/28) * ceil(height/28)",
    "image-patch28",
)
_formula(
    "audio-25hz-declared",
    "audio",
    {"tokens_per_s": 25},
    _audio,
    "declared meta.duration_s (records without bytes): ceil(duration_s * 25)",
    "audio-25hz",
)
_formula(
    "video-frames-declared",
    "video",
    {"fps": 2, "patch_px": 28},
    _video,
    "declared meta (records without bytes): max(1, ceil(duration_s * 2)) frames * ceil(w/28) * ceil(h/28)",
    "video-frames",
)
_formula(
    "episode-steps",
    "episode",
    {"default_obs_tokens": 256, "default_action_tokens": 7},
    _episode,
    "steps * (obs_tokens + action_tokens) from meta; defaults 256 per observation, 7 per action",
)
register_schedule("triples", TripleSchedule, "sum of cl100k_base tokens of each subject, predicate and object in meta")


@dataclass
class NTriplesSchedule:
    """Graph records: tokens of the record's canonical N-Triples (N-Quads) text under one tokenizer.

    Why the serialisation and not the terms: it is what an agent or a training loop is handed, so
    the count is what the buyer's model reads; canonical form makes it the same for the same graph.
    """

    tokenizer_name: str = DEFAULT_TOKENIZER
    name: str = "ntriples"
    modality: str = "graph"
    revision: int = 1
    record_fields: tuple[str, ...] = ("id", "text", "tokens")

    @property
    def version(self) -> str:
        params = {"tokenizer": self.tokenizer_name, "tokenizer_version": tokenizer_version(self.tokenizer_name)}
        return _formula_version(self.name, self.revision, params)

    def count_records(self, records: list[dict]) -> list[int]:
        return _count_texts(records, self.name, get_tokenizer(self.tokenizer_name),
                            "a graph record's text must be its N-Triples lines (re-ingest the RDF file)")


register_schedule("ntriples", NTriplesSchedule,
                  "cl100k_base tokens of a graph record's canonical N-Triples text (one subject with its triples)")


def get_schedule(name: str) -> TokenSchedule:
    """The schedule called ``name``: a registered formula, or a text schedule for a tokenizer name."""
    sched = _cache.get(name)
    if sched is not None:
        return sched
    if name in _ALIASES:
        sched = dataclasses.replace(get_schedule(_ALIASES[name]), name=name)  # type: ignore[type-var]
    elif name in _FACTORIES:
        sched = _FACTORIES[name]()
    else:
        try:
            sched = TextSchedule(get_tokenizer(name).name)
        except NotFound:
            raise NotFound(
                f"unknown token schedule {name!r}",
                hint=f"use a tokenizer name or one of: {', '.join(_FACTORIES)}",
            ) from None
    _cache[name] = sched
    return sched


def schedule_version(name: str) -> str:
    """The version of schedule ``name``, as :func:`get_schedule` would give it, loading as little as it can.

    Why: a manifest needs only the version, and for a built-in tokenizer that is the hash of its
    vocabulary file; building the tokenizer to read it cost every ``curate`` driver a full load.
    """
    if name in _ALIASES:
        return schedule_version(_ALIASES[name])
    if name in _cache or name in _FACTORIES or name not in BUILTIN_TOKENIZERS:
        return get_schedule(name).version
    return tokenizer_version(name)


def schedule_for_modality(modality: str, tokenizer: str = DEFAULT_TOKENIZER, *,
                          with_bytes: bool = True) -> TokenSchedule:
    """The default schedule for records of ``modality`` (text uses ``tokenizer``); media records
    without bytes (``with_bytes=False``) get the declared formula of :data:`DECLARED_DEFAULTS`."""
    if modality == "text":
        return get_schedule(tokenizer)
    if not with_bytes and modality in DECLARED_DEFAULTS:
        return get_schedule(DECLARED_DEFAULTS[modality])
    if modality not in MODALITY_DEFAULTS:
        raise NotFound(
            f"no token schedule for modality {modality!r}", hint=f"known modalities: {', '.join(MODALITY_DEFAULTS)}"
        )
    return get_schedule(MODALITY_DEFAULTS[modality])


def default_schedule(modality: str, s: Settings | None = None, *, with_bytes: bool = True) -> TokenSchedule:
    """The schedule a record of ``modality`` is counted with when nobody names one.

    Text follows the settings (``default_tokenizer``, e.g. ``CIYUAN_DEFAULT_TOKENIZER=qwen``); the
    other modalities use :data:`MODALITY_DEFAULTS` (``image`` -> ``qwen2-vl-image``, ``audio`` ->
    ``whisper-audio``, ``video`` -> ``qwen2.5-vl-video``, counted from probed facts; ``episode`` ->
    ``episode-openvla``, from the measured episode; ``triple`` -> ``triples``; ``graph`` ->
    ``ntriples``). Records that carry no
    bytes (``with_bytes=False``: a reader of references) get the declared formula instead
    (``image-patch28-declared``, ``audio-25hz-declared``, ``video-frames-declared``, ``episode-steps``). Ingest counts
    every record this way.
    """
    if s is None:
        from ciyuan.config import settings

        s = settings()
    return schedule_for_modality(modality, s.default_tokenizer, with_bytes=with_bytes)


def schedule_aliases() -> dict[str, str]:
    """Old schedule names and the names they resolve to (same formula, same version)."""
    return dict(_ALIASES)


def list_schedules() -> list[dict]:
    """Text schedules (one per tokenizer) and media formulas, with versions."""
    out = [
        {
            "name": t["name"],
            "version": t["version"],
            "modality": "text",
            "description": f"tokens of record text under {t['name']}",
        }
        for t in list_tokenizers()
    ]
    for name in _FACTORIES:
        s = get_schedule(name)
        out.append({"name": name, "version": s.version, "modality": s.modality, "description": _DESCRIPTIONS[name]})
    return out
