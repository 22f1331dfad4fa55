"""Build a real-text corpus from this machine's files and plant edited near-duplicate copies in it.

Why: near-dedup speed and quality measured on synthetic prose flatter every tool (short, regular
documents, one language). Man pages and package documentation are real text of very mixed length,
language and layout, and every Debian-like machine has them, so the benchmark can be rerun
anywhere without downloading a data set.

What it writes (``--out``, default ``/tmp/ciyuan-real-corpus``):

* ``data/part-NNNN.jsonl``: ``{"id", "text", "source"}`` per document, shuffled;
* ``pairs.jsonl``: the planted pairs ``{"original", "copy", "jaccard", "edits"}``, where ``jaccard``
  is the exact Jaccard similarity of the two documents' word 5-gram sets;
* ``stats.json``: documents, bytes, planted pairs, and what was left out and why.

The base documents are made duplicate-free first (exact text, and any pair whose word 5-gram
Jaccard similarity is ``--base-threshold`` (0.7) or more loses its later member), so that every
near-duplicate at the dedup threshold (0.8) in the output is a planted one: precision and recall
on ``pairs.jsonl`` are then the whole truth. Pairs between 0.5 and 0.7 stay (templated pages such
as one CLI's sub-commands): hard negatives a tool must not remove.
Rendering is the slow part (groff, about 10 minutes on two busy cores), so the rendered pages are
kept in ``rendered.jsonl.gz`` and reused by the next run into the same folder.
Each planted copy is an original with a few words replaced, deleted or inserted and sometimes a
short run of lines dropped, edited until its exact Jaccard similarity to the original lies in
[``--min-jaccard``, 0.98].

    .venv/bin/python bench/make_real_corpus.py --out /tmp/ciyuan-real-corpus --plant 500
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_WORD = re.compile(r"\w+")
_CTRL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
MAX_DOC_BYTES = 64_000  # a few huge changelogs would otherwise dominate the byte count


def _render_man(path: str) -> tuple[str, str | None]:
    """One man page rendered to plain UTF-8 text by groff (tbl for tables), or None for a redirect."""
    try:
        with gzip.open(path, "rb") as fh:
            src = fh.read()
    except (OSError, EOFError):
        return path, None
    if src.lstrip().startswith(b".so ") or len(src) < 200:
        return path, None  # a link to another page
    proc = subprocess.run(
        ["groff", "-t", "-man", "-Tutf8", "-P-cbou", "-rLL=80n", "-Kutf8"],
        input=src,
        capture_output=True,
        timeout=60,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    text = proc.stdout.decode("utf-8", "replace")
    return path, _clean(text)


def _clean(text: str) -> str | None:
    text = _CTRL.sub("", text)
    text = "\n".join(line.rstrip() for line in text.splitlines())
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return text if len(_WORD.findall(text)) >= 30 else None


def _read_doc(path: str) -> tuple[str, str | None]:
    """A text file from /usr/share/doc (gzip allowed), or None when it is not readable text."""
    try:
        raw = gzip.open(path, "rb").read() if path.endswith(".gz") else open(path, "rb").read()  # noqa: SIM115
    except (OSError, EOFError):
        return path, None
    if b"\x00" in raw[:4096]:
        return path, None
    try:
        text = raw[:MAX_DOC_BYTES].decode("utf-8")
    except UnicodeDecodeError:
        return path, None
    return path, _clean(text)


def _read(item: tuple[str, str]) -> tuple[str, str | None]:
    kind, path = item
    return _render_man(path) if kind == "man" else _read_doc(path)


def _doc_files() -> list[str]:
    out = []
    for dirpath, _dirs, files in os.walk("/usr/share/doc"):
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                continue
            low = f.lower()
            if low.endswith((".html", ".htm", ".png", ".jpg", ".gif", ".svg", ".pdf", ".css", ".js", ".py", ".c")):
                continue
            out.append(p)
    return sorted(out)


def shingles(text: str, n: int = 5) -> np.ndarray:
    """Distinct hashes of lowercased word ``n``-grams: the sets the planted similarity is measured on."""
    words = _WORD.findall(text.lower())
    if not words:
        return np.zeros(0, np.uint64)
    grams = [" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))]
    return np.unique(
        np.array([int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little") for g in grams],
                 dtype=np.uint64)
    )  # fmt: skip


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    inter = len(np.intersect1d(a, b, assume_unique=True))
    return inter / (len(a) + len(b) - inter) if len(a) + len(b) else 1.0


def _novel_word(rng: random.Random) -> str:
    return "".join(rng.choice("bcdfghjklmnpqrstvwxz") + rng.choice("aeiou") for _ in range(rng.randint(2, 4)))


def edit(text: str, rate: float, rng: random.Random) -> tuple[str, int]:
    """A copy of ``text`` with about ``rate`` of its words replaced, deleted or inserted."""
    lines = text.split("\n")
    if len(lines) > 40 and rng.random() < 0.3:  # drop a short run of lines, as a re-formatted copy would
        at = rng.randrange(len(lines) - 3)
        del lines[at : at + rng.randint(1, 3)]
    toks = re.split(r"( +)", "\n".join(lines))
    words = [i for i, t in enumerate(toks) if t.strip()]
    n = max(1, round(len(words) * rate))
    for i in rng.sample(words, min(n, len(words))):
        op = rng.random()
        if op < 0.5:
            toks[i] = _novel_word(rng)
        elif op < 0.75:
            toks[i] = ""
        else:
            toks[i] = toks[i] + " " + _novel_word(rng)
    return "".join(toks), n


def base_filter(docs: list[dict], threshold: float = 0.5) -> tuple[list[dict], dict]:
    """Drop exact duplicates and the later member of every pair with Jaccard >= ``threshold``."""
    from ciyuan.curate.pipeline import run_steps
    from ciyuan.curate.steps import make_step

    steps = [
        make_step("exact_dedup"),
        make_step("near_dedup", {"threshold": threshold, "bands": 32, "rows": 4, "verify": "exact"}),
    ]
    out = run_steps([{"id": d["id"], "text": d["text"], "meta": {}} for d in docs], steps)
    drop = {r["id"] for r in out if "_rejected" in r}
    left = {"exact_duplicates": steps[0].stats.to_dict()["rejected"], "near_duplicates": steps[1].stats.to_dict()[
        "rejected"]}  # fmt: skip
    return [d for d in docs if d["id"] not in drop], left


def _render_all(args: argparse.Namespace, rng: random.Random) -> tuple[list[dict], int]:
    """Man pages and documentation files interleaved in a seeded order, so a size limit keeps both."""
    man = sorted(str(p) for p in Path("/usr/share/man").rglob("*.gz"))
    files = [("man", p) for p in man] + [("doc", p) for p in _doc_files()]
    rng.shuffle(files)
    if args.max_docs:
        files = files[: args.max_docs]
    docs: list[dict] = []
    skipped = size = 0
    with ProcessPoolExecutor(args.workers) as pool:
        for (kind, path), (_p, text) in zip(files, pool.map(_read, files, chunksize=16), strict=False):
            if text is None:
                skipped += 1
                continue
            docs.append({"id": f"{kind}:{path.removeprefix('/usr/share/')}", "text": text, "source": kind})
            size += len(text.encode())
            if args.max_mb and size >= args.max_mb * 1e6:
                pool.shutdown(wait=False, cancel_futures=True)
                break
    return docs, skipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/ciyuan-real-corpus")
    ap.add_argument("--plant", type=int, default=500, help="edited near-duplicate copies to plant")
    ap.add_argument("--min-jaccard", type=float, default=0.85)
    ap.add_argument("--base-threshold", type=float, default=0.7, help="natural pairs this similar are thinned")
    ap.add_argument("--files", type=int, default=8, help="jsonl files to write")
    ap.add_argument("--max-docs", type=int, default=0, help="read at most this many files (0: all)")
    ap.add_argument("--max-mb", type=float, default=150.0, help="stop reading at this much text (0: no limit)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    out = Path(args.out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    for old in (out / "data").glob("*.jsonl"):
        old.unlink()

    t0 = time.perf_counter()
    cache = out / "rendered.jsonl.gz"
    if cache.exists():
        with gzip.open(cache, "rt", encoding="utf-8") as fh:
            docs = [json.loads(line) for line in fh]
        skipped = 0
        print(f"reused {len(docs)} rendered documents from {cache}", file=sys.stderr)
    else:
        docs, skipped = _render_all(args, rng)
        with gzip.open(cache, "wt", encoding="utf-8", compresslevel=3) as fh:
            for d in docs:
                fh.write(json.dumps(d, ensure_ascii=False) + "\n")
        print(f"read {len(docs)} documents ({skipped} skipped) in {time.perf_counter() - t0:.0f}s", file=sys.stderr)

    docs, removed = base_filter(docs, args.base_threshold)
    print(f"{len(docs)} after removing natural duplicates {removed}", file=sys.stderr)

    # plant: originals of at least 150 words, each copied once
    candidates = [i for i, d in enumerate(docs) if len(_WORD.findall(d["text"])) >= 150]
    originals = rng.sample(candidates, min(args.plant, len(candidates)))
    pairs, copies = [], []
    for k, i in enumerate(originals):
        orig = docs[i]
        base = shingles(orig["text"])
        rate = rng.choice([0.002, 0.005, 0.01, 0.015, 0.02])
        for _attempt in range(8):
            text, n = edit(orig["text"], rate, rng)
            j = jaccard(base, shingles(text))
            if args.min_jaccard <= j <= 0.98:
                break
            rate = rate * 0.6 if j < args.min_jaccard else rate * 1.5
        else:
            continue
        cid = f"copy:{k:05d}"
        copies.append({"id": cid, "text": text, "source": "planted"})
        pairs.append({"original": orig["id"], "copy": cid, "jaccard": round(j, 4), "edits": n})
    allrecs = docs + copies
    rng.shuffle(allrecs)
    per = -(-len(allrecs) // args.files)
    total = 0
    for f in range(args.files):
        with open(out / "data" / f"part-{f:04d}.jsonl", "w", encoding="utf-8") as fh:
            for r in allrecs[f * per : (f + 1) * per]:
                line = json.dumps(r, ensure_ascii=False) + "\n"
                total += len(line.encode())
                fh.write(line)
    with open(out / "pairs.jsonl", "w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(json.dumps(p) + "\n")
    stats = {
        "documents": len(allrecs),
        "base_documents": len(docs),
        "planted": len(pairs),
        "bytes": total,
        "mb": round(total / 1e6, 1),
        "text_mb": round(sum(len(r["text"].encode()) for r in allrecs) / 1e6, 1),
        "by_source": {s: sum(1 for r in allrecs if r["source"] == s) for s in ("man", "doc", "planted")},
        "natural_duplicates_removed": removed,
        "skipped_files": skipped,
        "base_threshold": args.base_threshold,
        "seconds": round(time.perf_counter() - t0),
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2))
    print(json.dumps(stats, indent=2))


if __name__ == "__main__":
    main()
