"""Appraise a stored version: tokens, quality, uniqueness, utility, record values and a price.

Why one streaming pass: versions reach millions of records, so everything that must see every
record (token totals, completeness, conformance, exact duplicates, MinHash signatures) is computed
batch by batch with flat memory (signatures go to a memory-mapped file), while what is expensive
per record (PII probes, language id, the reference models, KNN-Shapley) runs on deterministic
samples whose sizes are recorded in the appraisal.

The result is stored as ``appraisal.json`` in the version folder (and a copy with signatures and
record values under ``$CIYUAN_HOME/appraise/<version id>/``), so it travels with the version.
"""

from __future__ import annotations

import json
import math
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ciyuan.appraise import media_uniqueness as media_uq
from ciyuan.appraise import quality as quality_mod
from ciyuan.appraise.card import build_card
from ciyuan.appraise.episodes import appraise_episodes, episode_records
from ciyuan.appraise.knn_shapley import knn_shapley_self
from ciyuan.appraise.ngram_lm import perplexity_lift
from ciyuan.appraise.price import suggest_price
from ciyuan.appraise.results import history, load, save, save_values, work_dir
from ciyuan.appraise.uniqueness import CatalogIndex, near_duplicates_within, signatures, uniqueness
from ciyuan.appraise.utility_labelled import labelled_utility
from ciyuan.config import Settings, settings
from ciyuan.errors import InvalidInput, NotFound

APPRAISAL_FORMAT = "ciyuan.appraisal/1"
LABEL_SAMPLE = 3_000  # records used by the labelled reference model (dual form: n <= feature dim)
SHAPLEY_SAMPLE = 3_000  # records valued by KNN-Shapley (n^2 distances)
LM_TOKENS = 2_000_000  # dataset tokens sampled for the language-model lift
SEEDS = (0, 1, 2, 3, 4)


def catalog(s: Settings | None = None) -> CatalogIndex:
    return CatalogIndex((s or settings()).home / "appraise" / "catalog")


def media_catalog(s: Settings | None = None) -> media_uq.MediaCatalog:
    """The perceptual hashes of listed media (text goes to :func:`catalog`)."""
    return media_uq.MediaCatalog((s or settings()).home / "appraise" / "catalog-media")


def _card_info(version) -> dict:
    """Seller-declared card fields: ``manifest.extra.card`` and top-level extra keys."""
    extra = version.manifest.get("extra") or {}
    info = dict(extra.get("card") or {})
    for k in ("description", "license", "creator", "publisher", "url", "keywords", "inLanguage", "domain",
              "modality", "citeAs", "datePublished"):  # fmt: skip
        if k in extra and k not in info:
            info[k] = extra[k]
    if extra.get("language") and not info.get("inLanguage"):
        info["inLanguage"] = extra["language"]
    return info


def _batches(version, tokenizer: str) -> Iterator[list[dict]]:
    from ciyuan.store.records import from_batch, token_column

    col = token_column(tokenizer)
    counter = None
    for batch in version.iter_batches(columns=["id", "modality", "text", "media_ref", "meta", col], batch_size=8192):
        recs = from_batch(batch)
        missing = [r for r in recs if tokenizer not in (r.get("tokens") or {})]
        if missing:
            if counter is None:  # a tokenizer name or a media formula: one interface for both
                from ciyuan.tokens.schedule import get_schedule

                counter = get_schedule(tokenizer)
            counts = counter.count_records(missing)
            for r, c in zip(missing, counts, strict=True):
                r.setdefault("tokens", {})[tokenizer] = int(c)
        yield recs


def _texts_of(ref: str, limit_tokens: int, tokenizer: str) -> list[str]:
    """Texts of another version (the baseline), up to about ``limit_tokens`` tokens."""
    from ciyuan.store import resolve

    v = resolve(ref)
    out, have = [], 0
    for recs in _batches(v, tokenizer):
        for r in recs:
            if r.get("text"):
                out.append(r["text"])
                have += r["tokens"][tokenizer]
                if have >= limit_tokens:
                    return out
    return out


def _read_eval(path: str | None) -> list[str] | None:
    if not path:
        return None
    p = Path(path)
    if not p.exists():
        raise NotFound(f"evaluation file {path} does not exist", hint="give a .txt or .jsonl file of target text")
    texts = []
    if p.suffix in (".jsonl", ".json"):
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InvalidInput(f"{path}:{n}: not JSON ({exc.msg})", hint="one JSON object per line") from None
                texts.append(obj.get("text", "") if isinstance(obj, dict) else str(obj))
    else:
        texts = [t for t in p.read_text(encoding="utf-8").split("\n\n") if t.strip()]
    if not texts:
        raise InvalidInput(f"evaluation file {path} has no text", hint="give at least a few paragraphs")
    return texts


def _default_schedule(version, s: Settings) -> str:
    """The schedule ingest would count ``version``'s records with: their modality's default (one the
    version already counted with, when there is one), so an episode version is appraised in episode tokens."""
    from ciyuan.tokens.schedule import default_schedule, get_schedule

    modality = "text"
    for batch in version.iter_batches(columns=["modality"], batch_size=1):
        got = batch.column("modality")[0].as_py() if batch.num_rows and "modality" in batch.schema.names else None
        modality = got or "text"
        break
    if modality == "text":
        return s.default_tokenizer
    for name in version.tokenizers:
        try:
            if get_schedule(name).modality == modality:
                return name
        except Exception:  # noqa: BLE001 - a schedule this build no longer knows: fall back to the default
            continue
    return default_schedule(modality, s).name


def _lm_tokenizer(schedule: str, s: Settings) -> str:
    """The tokenizer the language model reads: the schedule's when it is a text tokenizer."""
    from ciyuan.tokens.schedule import get_schedule

    return schedule if get_schedule(schedule).modality == "text" else s.default_tokenizer


def _picked(record_id: str, every: int) -> bool:
    """Deterministic 1-in-``every`` sample by a hash of the id (a stride would alias with any period)."""
    return every <= 1 or zlib.crc32(record_id.encode("utf-8", "surrogatepass")) % every == 0


def _histogram(values: np.ndarray, bins: int = 20) -> dict:
    if len(values) == 0:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(values, bins=bins)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def appraise(
    ref: str,
    eval_file: str | None = None,
    baseline: str | None = None,
    *,
    provider: str | None = None,
    label_field: str = "label",
    tokenizer: str | None = None,
    seeds: tuple[int, ...] = SEEDS,
    features: str = "hashed",
    store: bool = True,
    s: Settings | None = None,
) -> dict:
    """Compute, store and return the appraisal of version ``ref`` (NAME or NAME@VERSION).

    ``features`` picks the labelled-utility features: ``hashed`` n-grams (default, fast),
    ``minilm`` sentence embeddings, or ``auto`` (embeddings when torch and the model package exist).
    """
    from ciyuan.store import resolve

    t0 = time.perf_counter()
    s = s or settings()
    v = resolve(ref, s)
    tok = tokenizer or _default_schedule(v, s)
    info = _card_info(v)
    n_expected = v.records
    acc = quality_mod.QualityAccumulator(expected_records=n_expected, required_meta=info.get("required_meta", ()))
    wd = work_dir(v.id, s)
    sig_path = wd / "signatures.npy"
    sig_tmp = wd / ".signatures.tmp"
    sigs = np.lib.format.open_memmap(sig_tmp, mode="w+", dtype=np.uint32, shape=(max(n_expected, 1), 128))
    tokens = np.zeros(max(n_expected, 1), dtype=np.int64)
    label_every = max(1, math.ceil(n_expected / LABEL_SAMPLE))
    lm_every = 1
    labelled: list[tuple[str, str, object]] = []
    lm_items: list[tuple[int, str, int]] = []  # (crc32 of id, text, tokens): thinned by hash, never by stride
    lm_tokens = 0
    total_tokens = 0
    episodes = 0
    graphs = 0
    row = 0
    for recs in _batches(v, tok):
        n = len(recs)
        sigs[row : row + n] = signatures(media_uq.texts_for_signature(recs))
        for j, r in enumerate(recs):
            acc.add(r)
            c = int(r["tokens"][tok])
            tokens[row + j] = c
            total_tokens += c
            if r.get("modality") == "episode":  # its text is a task: valued by the policy below, not as text
                episodes += 1
                continue
            if r.get("modality") == "graph":  # valued by link prediction below (link_prediction.py)
                graphs += 1
            meta = r.get("meta") if isinstance(r.get("meta"), dict) else {}
            if _picked(r["id"], label_every) and label_field in meta and r.get("text"):
                lab = meta[label_field]
                if isinstance(lab, str | int | bool):
                    labelled.append((r["id"], r["text"], lab))
            if r.get("text") and lm_tokens < LM_TOKENS:
                h = zlib.crc32(r["id"].encode("utf-8", "surrogatepass"))
                if h % lm_every == 0:
                    lm_items.append((h, r["text"], c))
                    lm_tokens += c
        row += n
        # keep the LM sample spread over the version: thin it when the cap is reached early
        while lm_tokens >= LM_TOKENS and row < n_expected and lm_every < 1 << 20:
            lm_every *= 2
            lm_items = [it for it in lm_items if it[0] % lm_every == 0]
            lm_tokens = sum(it[2] for it in lm_items)
    lm_texts = [t for _, t, _ in lm_items]
    del lm_items
    sigs.flush()
    sig_arr = np.load(sig_tmp, mmap_mode="r")[:row]
    timing = {"scan": time.perf_counter() - t0}
    tick = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal tick
        now = time.perf_counter()
        timing[name] = round(now - tick, 3)
        tick = now

    from ciyuan.appraise.media import scan as media_scan

    media = media_scan(v)  # probed facts only: resolution, duration, corrupt, mismatch, duplicate, caption rates
    hashes = media_uq.version_hashes(v) if media.get("media_records") else media_uq.empty_hashes()
    lap("media")
    # tokens, with near-duplicates inside the version collapsed (media by perceptual hash)
    dup = near_duplicates_within(np.asarray(sig_arr)) if row else np.zeros(0, bool)
    dup[hashes["rows"][media_uq.near_duplicates_within(hashes)]] = True
    tok_arr = tokens[:row]
    unique_tokens = int(tok_arr[~dup].sum())
    lap("near_duplicates")

    # name and version are always there (ciyuan fills them, and a card may not declare them)
    declared = {**info, "name": v.dataset, "version": v.id}
    qual = acc.result(licence=info.get("license"), card=declared, near_duplicates=int(dup.sum()))
    index = catalog(s)
    uniq = uniqueness(np.asarray(sig_arr), tok_arr, index, owner=provider or None)
    uniq["evidence"]["provider"] = provider
    if len(hashes["rows"]):
        media_uq.fold_into(uniq, media_uq.uniqueness(hashes, tok_arr, media_catalog(s), owner=provider or None))
    lap("quality_and_uniqueness")

    utility: dict = {}
    values_summary = None
    if len(labelled) >= 20 and len({lab for _, _, lab in labelled}) >= 2:
        lab_ids = [a for a, _, _ in labelled]
        res, x = labelled_utility([t for _, t, _ in labelled], [lab for _, _, lab in labelled],
                                  features=features, seeds=seeds)
        y = np.array([str(lab) for _, _, lab in labelled])
        utility["labelled"] = {"label_field": label_field, "records": len(labelled), **res}
        m = min(len(labelled), SHAPLEY_SAMPLE)
        vals = knn_shapley_self(x[:m], y[:m], k=5)
        order = np.argsort(vals, kind="stable")
        values_summary = {
            "method": "exact KNN-Shapley (Jia et al. 2019), k=5, cosine, leave-self-out, on the utility features",
            "records": m,
            "mean": float(vals.mean()),
            "negative": int((vals < 0).sum()),
            "histogram": _histogram(vals),
            "lowest": [{"id": lab_ids[i], "value": float(vals[i]), "label": str(y[i])} for i in order[:50]],
        }
        save_values(wd, [lab_ids[i] for i in range(m)], vals)
        lap("labelled_utility_and_values")
    eval_texts = _read_eval(eval_file)
    if lm_texts:
        rng = np.random.default_rng(0)
        if eval_texts is None:
            perm = rng.permutation(len(lm_texts))
            cut = max(1, len(lm_texts) // 10)
            eval_texts = [lm_texts[i] for i in perm[:cut]]
            train_texts = [lm_texts[i] for i in perm[cut:]]
            eval_source = "held-out 10 % of the sampled records"
        else:
            train_texts, eval_source = lm_texts, eval_file
        if baseline and train_texts:
            base_texts = _texts_of(baseline, LM_TOKENS, tok)
            from ciyuan.appraise.ngram_lm import default_encoder

            lm_tok = _lm_tokenizer(tok, s)
            enc, _, _ = default_encoder(lm_tok)
            have_data = sum(len(enc(t)) for t in train_texts)
            have_base = sum(len(enc(t)) for t in base_texts)
            budget = int(min(have_base, 2 * have_data))
            if budget >= 1000:
                ppl = perplexity_lift(base_texts, train_texts, eval_texts, budget, seeds, tokenizer=lm_tok)
                utility["text"] = {"baseline": baseline, "eval": eval_source, **ppl}
        elif train_texts:
            utility["text"] = {"baseline": None, "eval": eval_source, "lift": None,
                               "why": "no --baseline given: lift needs a corpus to compare against"}  # fmt: skip
    lap("text_utility")
    from ciyuan.appraise.retrieval_use import retrieval_utility

    kb_use = retrieval_utility(v, s) if not episodes or episodes < row else None  # a knowledge base's use
    if kb_use is not None:
        utility["retrieval"] = kb_use
        lap("retrieval_utility")
    episode_values = None
    if episodes:
        utility["episode"], episode_values, ep_ids, ep_vals = appraise_episodes(
            episode_records(v, episodes), episodes, seeds)
        if len(ep_ids):
            save_values(wd, ep_ids, ep_vals, "episode_values.parquet")
        lap("episode_utility_and_values")
    graph = None
    if graphs:
        from ciyuan.appraise.link_prediction import graph_appraisal

        graph = graph_appraisal(v, tuple(seeds[:3]))
        utility["graph"] = graph["link_prediction"]
        lap("graph_quality_and_link_prediction")
    lift = _headline_lift(utility)
    price = suggest_price(
        qual["score"], uniq["score"], lift, modality=_modality(info, media, row, episodes, graphs),
        domain=info.get("domain", "general"),
    )
    result = {
        "format": APPRAISAL_FORMAT,
        "dataset": v.dataset,
        "version": v.id,
        "appraised_at": datetime.now(UTC).isoformat(),
        "provider": provider,
        "tokenizer": tok,
        "tokens": {
            "total": total_tokens,
            "unique": unique_tokens,
            "records": row,
            "near_duplicate_records": int(dup.sum()),
        },  # fmt: skip
        "quality": qual,
        "uniqueness": uniq,
        "utility": utility,
        "utility_lift_used": lift,
        "record_values": values_summary,
        "episode_values": episode_values,
        "episode_records": episodes,
        "price": price,
        "timing_s": {**timing, "scan": round(timing["scan"], 3), "total": round(time.perf_counter() - t0, 3)},
    }
    if media.get("media_records"):
        result["media"] = media
    if graph is not None:
        result["graph"] = graph
    result["card_preview"] = {"documentation": qual["indicators"]["documentation"]["score"]}
    np.save(sig_path, np.asarray(sig_arr))
    if len(hashes["rows"]):
        media_uq.save_hashes(wd / "phashes.npz", hashes)
    sig_tmp.unlink(missing_ok=True)
    if store:
        save(v, result)
    return result


def _modality(info: dict, media: dict, records: int, episodes: int = 0, graphs: int = 0) -> str:
    """The modality the base rate is read for: the card's, else the commonest media of a media-only version."""
    if info.get("modality"):
        return str(info["modality"])
    by = media.get("by_modality") or {}
    if by and media.get("media_records") == records:
        return max(by, key=lambda m: by[m])
    if records and episodes == records:
        return "episode"
    if records and graphs == records:
        return "graph"
    return "text"


def _headline_lift(utility: dict) -> dict | None:
    """The lift the price uses: relative perplexity drop for text, accuracy lift for labels."""
    if utility.get("text", {}).get("relative_drop"):
        return utility["text"]["relative_drop"]
    if utility.get("labelled", {}).get("lift"):
        return utility["labelled"]["lift"]
    if utility.get("episode", {}).get("relative_drop"):
        return utility["episode"]["relative_drop"]
    if (utility.get("graph") or {}).get("lift"):
        return utility["graph"]["lift"]
    return None


def register_listing(ref: str, listing_id: str, provider: str, s: Settings | None = None) -> dict:
    """Add a listed version's signatures to the catalog index (the exchange calls this on listing)."""
    from ciyuan.store import resolve

    s = s or settings()
    v = resolve(ref, s)
    path = work_dir(v.id, s) / "signatures.npy"
    if path.exists():
        sig = np.load(path)
    else:
        parts = [signatures(media_uq.texts_for_signature(recs)) for recs in _batches(v, s.default_tokenizer)]
        sig = np.concatenate(parts) if parts else np.zeros((0, 128), np.uint32)
        np.save(path, sig)
    out = catalog(s).add(listing_id, provider, v.id, sig)
    hpath = work_dir(v.id, s) / "phashes.npz"
    if hpath.exists():
        hashes = media_uq.load_hashes(hpath)
    else:
        from ciyuan.appraise.media import pa_any_media

        media = any(pa_any_media(b) for b in v.iter_batches(["modality"]))
        hashes = media_uq.version_hashes(v) if media else media_uq.empty_hashes()
    if len(hashes["rows"]):
        out["media"] = media_catalog(s).add(listing_id, provider, v.id, hashes)
    return out


def card(ref: str, out: str | None = None, base_url: str | None = None, s: Settings | None = None,
         sample: dict | None = None) -> dict:  # fmt: skip
    """Croissant card of a version; written into the version folder (loadable) and to ``out``.

    The copy in the version folder names the shards relatively. ``base_url`` gives a card for remote
    buyers (shards named under it, ``sample`` the public free sample). Otherwise an ``out`` copy on a
    local store names the shards by absolute path and gets a folder of links to them beside it, so it
    loads wherever it is written (see :mod:`ciyuan.appraise.card`).
    """
    from ciyuan.appraise.card import shards_dir_for, write_card, write_card_with_shards
    from ciyuan.store import resolve

    v = resolve(ref, s)
    try:
        ap = load(ref, s)
    except NotFound:
        ap = None
    info = _card_info(v)
    if ap and ap.get("provider") and not info.get("provider"):
        info["provider"] = ap["provider"]
    from ciyuan.appraise.episode_card import summary
    from ciyuan.appraise.media import scan

    media = scan(v)
    eps = summary(v, s)
    beside = build_card(v.to_dict(), v.manifest, ap, info, media=media, episodes=eps)
    with v.fs().open(v.path("croissant.json"), "w") as fh:
        fh.write(json.dumps(beside, ensure_ascii=False, indent=2, default=str))
    if base_url:
        c = build_card(v.to_dict(), v.manifest, ap, info, base_url=base_url, sample=sample, media=media,
                       episodes=eps)
        if out:
            write_card(c, out)
        return c
    local = "://" not in str(v.location) or str(v.location).startswith("file://")
    if not out or not local:
        if out:
            write_card(beside, out)
        return beside
    root = str(Path(str(v.location).removeprefix("file://")).resolve())
    if Path(out).resolve().parent == Path(root):  # beside the shards: the relative card loads as is
        write_card(beside, out)
        return beside
    c = build_card(v.to_dict(), v.manifest, ap, info, local_root=root, fileset_dir=shards_dir_for(out),
                   media=media, episodes=eps)
    files = {Path(sh["path"]).name: f"{root}/{sh['path']}" for sh in v.manifest.get("shards", [])}
    write_card_with_shards(c, out, files)
    return c


__all__ = ["appraise", "card", "catalog", "history", "load", "media_catalog", "register_listing", "save"]
