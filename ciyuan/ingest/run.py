"""Ingest: outside files in, one new version out, every bad item kept in its quarantine.

Readers stream (bounded memory); each reader declares the modality of its records, and tokens are
counted per batch through that modality's default token schedule (text: the default tokenizer), over
``workers`` processes when asked; the builder writes shards as batches arrive.
"""

from __future__ import annotations

import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ciyuan.config import Settings, settings
from ciyuan.errors import CiyuanError, InvalidInput
from ciyuan.ingest.readers import Bad, Good, read_source, reader_for, source_size
from ciyuan.store import memory
from ciyuan.store.builder import VersionBuilder
from ciyuan.store.manifest import reason_kind
from ciyuan.tokens.schedule import default_schedule

BATCH_ROWS = 2048
BATCH_BYTES = 4 << 20
RELEASE_EVERY = 4  # batches (about 16 MB) between hand-backs of freed memory (ciyuan.store.memory)


def _expand(sources: Iterable[str]) -> list[str]:
    out = []
    for src in sources:
        if not os.path.exists(src):
            raise InvalidInput(f"{src}: no such file or folder", hint="check the path; give files or folders")
        out.append(src)
    if not out:
        raise InvalidInput("no source given", hint="ciyuan ingest FILE... --dataset NAME")
    return out


@dataclass(frozen=True)
class IngestProgress:
    """Where an ingest is: records kept and items quarantined so far, and input bytes read of the total
    (file sizes, compressed bytes for .gz/.zst), so a progress bar can show a total and time left."""

    records: int
    quarantined: int
    bytes_read: int
    bytes_total: int


def parse_renames(pairs: Iterable[str]) -> dict[str, str]:
    """``OLD=NEW`` pairs (e.g. ``lang=language``) into a mapping, with a clear error for a bad one."""
    out: dict[str, str] = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise InvalidInput(f"--rename {pair!r} is not OLD=NEW", hint="e.g. --rename lang=language")
        out[old.strip()] = new.strip()
    return out


def _batches(items: Iterator[Good | Bad], builder: VersionBuilder, defaults: dict,
             renames: dict[str, str] | None = None, modality: str = "text",
             mismatches: Counter[str] | None = None) -> Iterator[list[dict]]:
    """Group good records into batches; bad items go straight to the quarantine. Declared-vs-probed
    mismatches of media records are counted by field in ``mismatches`` (``records`` counts records)."""
    batch: list[dict] = []
    size = 0
    for item in items:
        if isinstance(item, Bad):
            builder.quarantine(item.source, item.line, item.reason, item.raw, item.member)
            continue
        rec = item.record
        meta = dict(rec.get("meta") or {})
        for old, new in (renames or {}).items():
            if old in meta:
                meta[new] = meta.pop(old)
        meta.setdefault("source", item.source)
        meta.setdefault("line", item.line)
        for k, v in defaults.items():
            if v is not None:
                meta.setdefault(k, v)
        out = {"id": rec.get("id"), "modality": modality, "text": rec.get("text"), "meta": meta, "tokens": {}}
        for key in ("media", "media_ref", "media_src", "attachments"):  # media readers bring them; text readers do not
            if rec.get(key) is not None:
                out[key] = rec[key]
        if mismatches is not None and meta.get("mismatch"):
            mismatches["records"] += 1
            for m in meta["mismatch"]:
                mismatches[f"field:{m.get('field')}"] += 1
        batch.append(out)
        size += len(out["text"] or "") + len(out.get("media") or b"")
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _never_raising(source: str, items: Iterator[Good | Bad]) -> Iterator[Good | Bad]:
    """The reader's items; should a reader still fail on some input, the rest of that one file becomes
    one quarantine row naming the error, and the other files are read (a last line of defence: every
    known bad item is handled by the readers themselves)."""
    line = 0
    while True:
        try:
            item = next(items)
        except StopIteration:
            return
        except CiyuanError:
            raise
        except Exception as exc:  # noqa: BLE001 - any reader failure is reported, not raised
            yield Bad(source, line + 1, f"reader failed: {type(exc).__name__}: {exc}; the rest of this file "
                      "was not read", b"")
            return
        line = max(line, item.line)
        yield item


def _shown_source(source: str, given: str) -> str:
    """``source`` relative to the folder that holds what was given (a file's name; a folder's own name
    plus the path inside it), so a record's ``meta.source`` and the version id do not depend on where
    the input sat on the provider's machine."""
    base = Path(given).resolve().parent
    try:
        return Path(source).resolve().relative_to(base).as_posix()
    except ValueError:
        return Path(source).name


def _modality(paths: list[str], fmt: str, forced: str | None = None) -> tuple[str, bool]:
    """The one modality of the sources (a version's token counts are of one schedule), and whether
    its records carry media bytes. A text reader declares its modality; a media reader's is
    ``forced`` (``--modality``) or the one most of its items' bytes are."""
    if forced is not None and forced not in ("image", "audio", "video"):
        raise InvalidInput(f"--modality {forced!r} is not image, audio or video", hint="e.g. --modality image")
    found: dict[str, str] = {}
    media = set()
    for p in paths:
        reader = reader_for(p, fmt)
        if reader.modality == "media":
            media.add(p)
            found[p] = forced or reader.modality_of(p)
        elif forced is not None:
            raise InvalidInput(f"{Path(p).name} is read by the {reader.name} reader ({reader.modality} records); "
                               f"--modality {forced} applies to media files",
                               hint="give media files or folders, or leave --modality out")
        else:
            found[p] = reader.modality
    if media and len(media) < len(paths):
        raise InvalidInput("the sources mix media layouts and text formats; one version holds one modality",
                           hint="ingest each into its own dataset")
    kinds = sorted(set(found.values()))
    if len(kinds) > 1:
        which = "; ".join(f"{k}: {', '.join(Path(p).name for p, m in found.items() if m == k)}" for k in kinds)
        raise InvalidInput(
            f"the sources hold records of {len(kinds)} modalities ({which}); one version holds one",
            hint="ingest each modality into its own dataset" + (", or pick one with --modality" if media else ""),
        )
    return kinds[0], bool(media) or bool(getattr(reader_for(paths[0], fmt), "carries_media", False))


def _declared(card: dict | str | Path | None, license: str | None) -> dict:
    """The declared card, checked; it must not contradict ``--license``."""
    from ciyuan.ingest.declared import check_card, load_card

    if card is None:
        return {}
    declared = load_card(card) if isinstance(card, str | Path) else check_card(card)
    if license and declared.get("license") not in (None, license):
        raise InvalidInput(
            f"the card declares licence {declared['license']!r} but --license says {license!r}",
            hint="give the licence once, in the card or with --license",
        )
    return declared


def ingest(
    sources: Iterable[str],
    dataset: str,
    *,
    fmt: str = "auto",
    text_field: str = "text",
    id_field: str | None = None,
    license: str | None = None,
    domain: str | None = None,
    language: str | None = None,
    strict: bool = False,
    rename: dict[str, str] | None = None,
    card: dict | str | Path | None = None,
    workers: int = 1,
    on_progress: Callable[[IngestProgress], None] | None = None,
    modality: str | None = None,
    timestamp_tolerance_s: float | None = None,
    repair_timestamps: bool = False,
    s: Settings | None = None,
) -> dict:
    """Read ``sources`` into a new version of ``dataset`` and return its summary.

    ``card`` is what the provider declares about the data (a mapping, or a YAML/JSON file checked
    by :func:`ciyuan.ingest.declared.load_card`); it is kept in ``manifest.extra.card``.
    Raises :class:`CiyuanError` when nothing good was read, or (``strict``) when anything was bad;
    then no version is made. A bad item never stops the ingest: it is quarantined. Each given source
    lists at most ``s.ingest_quarantine_cap`` bad items; the rest are counted (in the totals and by
    reason) and named by one summary row. ``on_progress`` gets an :class:`IngestProgress` after each
    batch and once at the end.

    Media layouts (folders with sidecars, HF imagefolder/audiofolder, WebDataset tars, HF media
    Parquet) pick their modality from the bytes unless ``modality`` forces one; the summary then
    also says ``modality`` and ``mismatches`` (declared meta the probe contradicts, by field).

    Robot episodes (LeRobot folders, HDF5 demos) are checked episode by episode; ``timestamp_tolerance_s``
    (default ``s.episode_timestamp_tolerance_s``, 1e-4 s) bounds |timestamp - frame_index/fps|, and
    ``repair_timestamps`` rewrites drifting timestamps instead of quarantining the episode: the
    version's ``made_by.options`` and ``extra.repairs`` say so, and each repaired record's
    ``meta.episode.repaired``.
    """
    from ciyuan.tokens import count_records_parallel

    s = s or settings()
    paths = _expand(sources)
    id_field = id_field or "id"  # an ``id`` field is used when present; records without one get a content hash
    forced = modality
    modality, with_bytes = _modality(paths, fmt, forced)
    tolerance = s.episode_timestamp_tolerance_s if timestamp_tolerance_s is None else timestamp_tolerance_s
    if not tolerance >= 0:
        raise InvalidInput(f"timestamp tolerance {tolerance!r} must be a number >= 0", hint="e.g. 1e-4")
    episode_opts = {"timestamp_tolerance_s": tolerance, **({"repair_timestamps": True} if repair_timestamps else {})} \
        if modality == "episode" else {}
    schedule = default_schedule(modality, s, with_bytes=with_bytes).name
    declared = _declared(card, license)
    builder = VersionBuilder(
        dataset,
        s=s,
        tokenizers=[schedule],
        made_by={
            "command": "ingest",
            "sources": [Path(p).name for p in paths],
            "options": {"format": fmt, "text_field": text_field, "id_field": id_field, "license": license,
                        "domain": domain, "language": language, **({"rename": rename} if rename else {}),
                        **({"modality": forced} if forced else {}), **episode_opts},
        },
    )
    builder.extra = {k: v for k, v in {"license": license, "domain": domain, "language": language}.items() if v}
    if declared:
        builder.extra["card"] = declared
    defaults = {"domain": domain, "language": language}

    cap = max(0, s.ingest_quarantine_cap)
    sizes = [source_size(p, fmt) for p in paths]
    read = {"done": 0, "in_source": 0, "limit": 0}

    def heard(n: int) -> None:
        read["in_source"] = min(read["limit"], read["in_source"] + n)

    def items() -> Iterator[Good | Bad]:
        shown: dict[str, str] = {}
        for p, size in zip(paths, sizes, strict=True):
            read["in_source"], read["limit"] = 0, size
            listed = 0
            unlisted: Counter[str] = Counter()
            first_unlisted = 0
            for item in _never_raising(p, read_source(p, fmt=fmt, text_field=text_field, id_field=id_field,
                                                      max_line_bytes=s.ingest_max_record_bytes, on_bytes=heard,
                                                      modality=modality if with_bytes else None,
                                                      media_inline_max_bytes=s.media_inline_max_bytes,
                                                      timestamp_tolerance_s=tolerance,
                                                      repair_timestamps=repair_timestamps)):
                if isinstance(item, Good):  # records carry the file's name, not where it sat on this machine
                    if item.source not in shown:
                        shown[item.source] = _shown_source(item.source, p)
                    item = Good(shown[item.source], item.line, item.record)
                elif listed >= cap:  # past the cap: counted by kind, not kept
                    if not unlisted:
                        first_unlisted = item.line
                    unlisted[reason_kind(item.reason)] += 1
                    continue
                else:
                    listed += 1
                yield item  # the quarantine keeps the full path: it is the provider's, to find the line
            builder.quarantine_unlisted(p, first_unlisted, unlisted, listed)
            read["done"] += size
            read["in_source"] = 0

    def report() -> None:
        if on_progress:
            total = sum(sizes)
            on_progress(IngestProgress(builder.records, builder.quarantined,
                                       min(total, read["done"] + read["in_source"]), total))

    pending: deque[list[dict]] = deque()
    mismatches: Counter[str] = Counter()
    repairs: Counter[str] = Counter()

    def batches() -> Iterator[list[dict]]:
        for batch in _batches(items(), builder, defaults, rename, modality, mismatches):
            pending.append(batch)
            yield batch

    try:
        for done, counts in enumerate(count_records_parallel(batches(), schedule, workers), 1):
            batch = pending.popleft()
            for rec, n in zip(batch, counts, strict=True):
                rec["tokens"][schedule] = n
                for what in ((rec["meta"].get("episode") or {}).get("repaired") or ()) if modality == "episode" else ():
                    repairs[what] += 1
                builder.add(rec)
            del batch
            if done % RELEASE_EVERY == 0:  # freed pages go back, so a long input does not raise the floor
                memory.release()
            report()
        report()
        if builder.records == 0:
            raise InvalidInput(
                f"nothing good was read from {', '.join(paths)} ({builder.quarantined} bad item(s))",
                hint="check --format and --text-field; bad items are listed in the error report",
            )
        if strict and builder.quarantined:
            raise CiyuanError(
                f"--strict: {builder.quarantined} bad item(s) in the input; no version was made",
                hint="run without --strict to keep the good records and quarantine the bad ones",
                code="strict_refused",
            )
        mismatch_summary = {"records": mismatches["records"],
                            "by_field": {k[len("field:"):]: v for k, v in sorted(mismatches.items())
                                         if k.startswith("field:")}}
        if mismatch_summary["records"]:
            builder.extra["mismatches"] = mismatch_summary
        if repairs:  # the lineage says what ingest rewrote, and in how many episodes
            builder.extra["repairs"] = {k: {"episodes": v, "how": "timestamp = frame_index / fps"}
                                        for k, v in sorted(repairs.items())}
        version = builder.commit()
    except BaseException:
        builder.abort()
        raise
    out = version.to_dict()
    out["records"] = version.records
    if repairs:
        out["repairs"] = builder.extra["repairs"]
    if with_bytes:
        out["modality"] = modality
        out["mismatches"] = mismatch_summary
        out["blobs"] = len(version.manifest.get("blobs", []))
    return out
