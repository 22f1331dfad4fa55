"""Croissant 1.0 JSON-LD card of a version, with RAI fields and ciyuan's token and appraisal facts.

Why Croissant: it is the metadata format ML tooling already reads (loaders, search, hubs), and
its Responsible-AI vocabulary is where a buyer looks for collection, PII and limitation notes.

The card describes the version's Parquet shards twice: each shard as a ``cr:FileObject`` with its
sha256 (so a buyer can verify every byte), and all of them as one ``cr:FileSet`` (``shards/*.parquet``)
that the ``records`` RecordSet reads (fields id, modality, text, media_ref, meta and one token
count per tokenizer). Token facts and the appraisal ride along under the ``ciyuan:`` extension namespace.

Media versions add a ``media`` field (the bytes as ingested) typed ``sc:ImageObject``,
``sc:AudioObject`` or ``sc:VideoObject`` (``sc:Text``, raw bytes, when one version mixes media
modalities), so ``mlcroissant`` hands images back as PIL images and audio or video as bytes; and one
``cr:FileSet`` per media format with its IANA ``encodingFormat`` (``image/png``, ``audio/wav``...),
``containedIn`` the shards, saying what files a buyer receives. The facts come from the probe
(:mod:`ciyuan.appraise.media`), never from the provider's declared meta.

Where a card loads from (``mlcroissant`` 1.x resolves a local FileSet only against the card's own
folder, and reads FileSet contents only from disk):

* ``croissant.json`` in the version folder names the shards relative to it (``shards/...``);
* a copy written elsewhere (``ciyuan card --out``) names each shard by its absolute path and gets a
  folder ``<card name>.shards/`` of links to the shards beside it (:func:`write_card_with_shards`),
  which its FileSet reads, so it loads its records wherever it is written;
* a listing's public card (``base_url``) names each shard at the exchange (only entitled buyers may
  fetch them) and adds the free ``sample`` as a public FileObject with its own RecordSet.
"""

from __future__ import annotations

import glob
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

CROISSANT_CONTEXT: dict[str, Any] = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "arrayShape": "cr:arrayShape",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
    "ciyuan": "https://ciyuan.dev/ns/",
}

PARQUET = "application/x-parquet"


def _field(rs: str, name: str, dtype: str, desc: str, source: dict | None = None) -> dict:
    return {
        "@type": "cr:Field",
        "@id": f"{rs}/{name}",
        "name": name,
        "description": desc,
        "dataType": dtype,
        "source": {**(source or {"fileSet": {"@id": "shards"}}), "extract": {"column": name}},
    }


def media_type(media: dict | None) -> str | None:
    """The Croissant dataType of the ``media`` column: sc:ImageObject / AudioObject / VideoObject for
    a version of one media modality, sc:Text (raw bytes) when it mixes several, None without media."""
    from ciyuan.appraise.media import SCHEMA_TYPE

    mods = [m for m, n in ((media or {}).get("by_modality") or {}).items() if n]
    if not mods:
        return None
    return SCHEMA_TYPE[mods[0]] if len(mods) == 1 else "sc:Text"


def _fields(rs: str, tokenizers: list[str], source: dict | None = None, media: dict | None = None) -> list[dict]:
    from ciyuan.store.records import token_column

    out = [
        _field(rs, "id", "sc:Text", "Record id (content hash when the source had none).", source),
        _field(rs, "modality", "sc:Text", "text, image, audio, video or tabular.", source),
        _field(rs, "text", "sc:Text", "The text of the record (a caption or transcript for media).", source),
        _field(rs, "media_ref", "sc:Text", "Reference to media stored outside the record, if any.", source),
        _field(rs, "meta", "sc:Text", "Record metadata as JSON text.", source),
    ]
    mt = media_type(media)
    if mt:
        kinds = ", ".join(sorted((media or {}).get("encoding_formats") or []))
        out.insert(2, _field(rs, "media", mt, f"The media file's bytes as ingested ({kinds}); its probed facts "
                             "(size, duration, format) are in meta under its modality, its sha256 in meta.sha256; "
                             "null when stored by reference (media_ref).", source))
    for t in tokenizers:
        out.append(_field(rs, token_column(t), "sc:Integer", f"Token count of the text under {t}.", source))
    return out


def _rai(version_dict: dict, appraisal: dict | None, info: dict) -> dict:
    """RAI fields filled from what ciyuan knows; the seller's own text in ``info`` wins."""
    made_by = version_dict.get("made_by") or {}
    q = (appraisal or {}).get("quality", {}).get("indicators", {})
    pii = q.get("pii_residue", {})
    pii_text = (
        f"PII residue probe: {pii['evidence'].get('records_with_pii', 0)} of "
        f"{pii['evidence'].get('sampled', 0)} sampled records matched a PII pattern "
        f"(detector {pii['evidence'].get('detector')})."
        if pii.get("evidence")
        else "Not yet measured: run ciyuan appraise."
    )
    out = {
        "rai:dataCollection": info.get("rai:dataCollection")
        or f"Ingested and curated with ciyuan; made by {json.dumps(made_by, ensure_ascii=False)}.",
        "rai:dataCollectionType": info.get("rai:dataCollectionType") or "Manual Human Curator",
        "rai:dataPreprocessingProtocol": info.get("rai:dataPreprocessingProtocol")
        or (
            f"ciyuan recipe lineage: parent version {version_dict.get('parent') or 'none'}; "
            f"rejected {version_dict.get('rejected', 0)} records by reason "
            f"{json.dumps(version_dict.get('rejected_by_reason', {}), ensure_ascii=False)}; "
            f"quarantined {version_dict.get('quarantined', 0)} unreadable input items."
        ),
        "rai:personalSensitiveInformation": info.get("rai:personalSensitiveInformation") or pii_text,
        "rai:dataLimitations": info.get("rai:dataLimitations")
        or "Quality indicators and utility are estimates from samples and reference models; see the appraisal.",
    }
    for key in ("rai:dataUseCases", "rai:dataBiases", "rai:dataSocialImpact", "rai:hasSyntheticData"):
        if info.get(key) not in (None, ""):
            out[key] = info[key]
    return out


def _agent(value: Any) -> Any:
    """Croissant wants a creator or publisher as a schema.org Organization or Person, not a bare name."""
    if isinstance(value, str):
        return {"@type": "sc:Organization", "name": value}
    if isinstance(value, list):
        return [_agent(v) for v in value]
    return value


def build_card(version_dict: dict, manifest: dict, appraisal: dict | None = None, info: dict | None = None,
               base_url: str | None = None, local_root: str | None = None, fileset_dir: str = "shards",
               sample: dict | None = None, media: dict | None = None,
               episodes: dict | None = None) -> dict:  # fmt: skip
    """The card as a dict. ``info`` holds seller-declared fields (description, license, creator...).

    Shard URLs: ``base_url/<path>`` (an exchange), else ``local_root/<path>`` (absolute paths of a
    local store), else the relative path. ``fileset_dir`` is the folder, relative to the card, its
    FileSet reads. ``sample`` = ``{"url", "sha256", "bytes", "records"}`` adds the free sample.
    ``media`` is the version's media summary (:func:`ciyuan.appraise.media.scan`): it adds the
    ``media`` field and one FileSet per media format (see :func:`media_files`). ``episodes``
    (:func:`ciyuan.appraise.episode_card.summary`) describes robot episodes: the frame table's
    fields and the camera files (see :mod:`ciyuan.appraise.episode_card`).
    """
    from ciyuan.appraise import episode_card

    info = dict(info or {})
    name = version_dict["dataset"]
    vid = version_dict["version"]
    tokenizers = list(manifest.get("tokenizers", {}))
    files = []
    for i, s in enumerate(manifest.get("shards", [])):
        if base_url:
            url = f"{base_url.rstrip('/')}/{s['path']}"
        elif local_root:
            url = f"{local_root.rstrip('/')}/{s['path']}"
        else:
            url = s["path"]
        files.append({
            "@type": "cr:FileObject", "@id": f"shard-{i:05d}", "name": f"shard-{i:05d}",
            "contentUrl": url, "encodingFormat": PARQUET, "sha256": s["sha256"], "contentSize": f"{s['bytes']} B",
        })  # fmt: skip
    files.append({
        "@type": "cr:FileSet", "@id": "shards", "name": "shards",
        "description": "All Parquet shards of the version (zstd); each is also listed with its sha256.",
        "encodingFormat": PARQUET, "includes": f"{glob.escape(fileset_dir)}/*.parquet",
    })  # fmt: skip
    files.extend(media_files(media))
    files.extend(episode_card.files(episodes, "public" if base_url else "absolute" if local_root else "relative"))
    fields = _fields("records", tokenizers, media=media)
    if episodes:
        fields.insert(2, episode_card.media_field("records", _field, None))
    record_sets = [
        {
            "@type": "cr:RecordSet",
            "@id": "records",
            "name": "records",
            "description": "One row per record of the version.",
            "key": {"@id": "records/id"},
            "field": fields,
        }
    ] + episode_card.frames_record_set(episodes)
    if sample:
        files.append({
            "@type": "cr:FileObject", "@id": "sample-file", "name": "sample-file",
            "description": f"The free sample: the first {sample['records']} records, public.",
            "contentUrl": sample["url"], "encodingFormat": PARQUET, "sha256": sample["sha256"],
            "contentSize": f"{sample['bytes']} B",
        })  # fmt: skip
        record_sets.append({
            "@type": "cr:RecordSet", "@id": "sample", "name": "sample",
            "description": "The free sample (public; the full records need an entitlement).",
            "key": {"@id": "sample/id"},
            # the sample file holds no media bytes (the page shows thumbnails of it): no media field
            "field": _fields("sample", tokenizers, {"fileObject": {"@id": "sample-file"}}),
        })  # fmt: skip
    ap = appraisal or {}
    created = manifest.get("created_at") or datetime.now(UTC).isoformat()
    card: dict[str, Any] = {
        "@context": CROISSANT_CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "name": name,
        "description": info.get("description") or f"Version {vid[:12]} of dataset {name}, made with ciyuan.",
        "version": info.get("version") or f"0.0.0+{vid[:12]}",
        "url": info.get("url") or (base_url or f"ciyuan:{name}@{vid}"),
        "datePublished": info.get("datePublished") or created[:10],
        "license": info.get("license") or "https://ciyuan.dev/licenses/unspecified",
        "creator": _agent(info.get("creator") or info.get("provider") or "unknown"),
        "citeAs": info.get("citeAs") or f"{name}, version {vid[:12]}, ciyuan dataset.",
        "keywords": info.get("keywords") or ["ciyuan", name],
        **({"inLanguage": info["inLanguage"]} if info.get("inLanguage") else {}),
        **({"publisher": _agent(info["publisher"])} if info.get("publisher") else {}),
        **_rai(version_dict, appraisal, info),
        "distribution": files,
        "recordSet": record_sets,
        "ciyuan:version": vid,
        "ciyuan:tokens": version_dict.get("tokens", {}),
        "ciyuan:tokenizers": manifest.get("tokenizers", {}),
        "ciyuan:records": version_dict.get("records"),
    }
    if media and media.get("media_records"):
        card["ciyuan:media"] = {k: media.get(k) for k in ("by_modality", "formats", "encoding_formats", "by_reference")}
    if episodes:
        card["ciyuan:episodes"] = {k: episodes[k] for k in ("episodes", "frames", "features", "cameras", "robot_types")}
    if ap:
        card["ciyuan:appraisal"] = without_nulls({
            "quality": ap.get("quality", {}).get("score"),
            "uniqueness": ap.get("uniqueness", {}).get("score"),
            "unique_tokens": ap.get("tokens", {}).get("unique"),
            "utility": ap.get("utility"),
            "price": {k: ap.get("price", {}).get(k) for k in ("formula", "currency", "price_per_mtok")},
            "appraised_at": ap.get("appraised_at"),
        })
    return card


def without_nulls(value: Any) -> Any:
    """``value`` without null members, and without the objects and lists that leaves empty.

    JSON-LD drops a null, so an object of nulls (a recall not measured: no questions) becomes
    ``{}``, and mlcroissant 1.1 recurses without end on an empty node; a card says nothing instead.
    """
    if isinstance(value, dict):
        out = {k: without_nulls(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in out.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [without_nulls(v) for v in value if v is not None]
    return value


def media_files(media: dict | None) -> list[dict]:
    """One ``cr:FileSet`` per media format of the version, with its IANA ``encodingFormat``.

    The files are the ``media`` column of the Parquet shards (``containedIn`` the shards FileSet),
    so the set says what a buyer receives (how many PNGs, how many WAVs) without a second copy; the
    ``records`` RecordSet reads them, typed sc:ImageObject / AudioObject / VideoObject.
    """
    from ciyuan.appraise.media import mime_of

    out = []
    for modality, formats in sorted(((media or {}).get("formats") or {}).items()):
        for fmt, n in sorted(formats.items()):
            ext = "jpg" if fmt == "jpeg" else fmt
            out.append({
                "@type": "cr:FileSet", "@id": f"media-{modality}-{fmt}", "name": f"media-{modality}-{fmt}",
                "description": f"{n} {modality} file(s) in {fmt}, held in the media column of the shards.",
                "containedIn": {"@id": "shards"}, "encodingFormat": mime_of(modality, fmt), "includes": f"*.{ext}",
            })  # fmt: skip
    return out


def card_fields_for_quality(info: dict) -> dict:
    """The declared card fields, for the documentation-completeness indicator (RAI defaults excluded)."""
    return {k: v for k, v in info.items() if v not in (None, "", [], {})}


def write_card(card: dict, out: str | Path) -> Path:
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, ensure_ascii=False, indent=2, default=str))
    return path


def shards_dir_for(out: str | Path) -> str:
    """The folder beside a card copy that holds links to the shards: ``<card file stem>.shards``."""
    return Path(out).stem + ".shards"


def write_card_with_shards(card: dict, out: str | Path, shard_files: dict[str, str]) -> Path:
    """Write a card copy and, beside it, a folder of links to the shards its FileSet reads.

    ``shard_files`` maps each shard's file name to its absolute path. Symbolic links cost nothing;
    where they cannot be made (another filesystem without symlinks) a hard link, then a copy, is used.
    """
    import os
    import shutil

    path = write_card(card, out)
    folder = path.parent / shards_dir_for(path)
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():  # links of an earlier export (another version) would be read too
        if old.name not in shard_files and (old.is_symlink() or old.suffix == ".parquet"):
            old.unlink()
    for name, target in shard_files.items():
        link = folder / name
        if link.is_symlink() or link.exists():
            link.unlink()
        try:
            os.symlink(target, link)
        except OSError:
            try:
                os.link(target, link)
            except OSError:
                shutil.copyfile(target, link)
    return path
