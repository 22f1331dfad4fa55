"""Is curation fair to every language? Keep rates of a recipe on PARALLEL man pages.

The same manual page in Chinese, Japanese, Korean and English: every page this machine has under
``/usr/share/man/{zh_CN,zh_TW,ja,ko}`` whose English original is under ``/usr/share/man``. Each
page is rendered to plain text (``man -l`` at 80 columns, UTF-8), pages that are the same file
(symlinks) or render to the same text are counted once per language, and the recipe runs over all
of them together, in memory (``ciyuan.curate.pipeline.run_steps``, the reference the executors
agree with). Reported per language: pages, kept, keep rate, and the rules that rejected the rest;
then the CJK keep rate over the English one for the pages they translate, and MB/s per core of the
``quality`` step and of the whole chain (CPU seconds of this process, best of ``--repeat``).

Input: Debian's man pages. On a machine without them:

    apt-get update && apt-get install -y groff-base manpages manpages-zh manpages-ja
    (the Korean pages come with the programs: xz-utils, psmisc, passwd, man-db, login)

or, to leave the machine's man pages alone, unpack the translations elsewhere:

    apt-get download manpages-zh manpages-ja && for f in manpages-*.deb; do dpkg -x $f /tmp/mp; done
    .venv/bin/python bench/bench_fairness.py --translations /tmp/mp/usr/share/man

    .venv/bin/python bench/bench_fairness.py [--recipe text-pretrain] [--json]

Without ``man`` or without any translated page the benchmark says so and exits 0 (skipped).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

MAN = Path(os.environ.get("CIYUAN_BENCH_MANDIR", "/usr/share/man"))
LOCALES = {"zh_CN": "zh", "zh_TW": "zh", "ja": "ja", "ko": "ko"}
HOW = "apt-get update && apt-get install -y groff-base manpages manpages-zh manpages-ja"


def _render(path: Path) -> str:
    """Plain text of one man page at 80 columns: ``groff -k -Tutf8 -mandoc -t`` without bold/underline.

    (``man -l`` into a pipe hangs on some pages here, so groff is called as man would.)
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    cmd = ["groff", "-k", "-Tutf8", "-mandoc", "-t", "-rLL=80n", "-P-c", "-P-b", "-P-u"]
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    out = subprocess.run(cmd, input=raw, capture_output=True, env=env, timeout=60, cwd=str(path.parent.parent))
    return out.stdout.decode("utf-8", "replace")


def _pages(translations: Path = MAN) -> list[tuple[str, str, Path]]:
    """(language, page name, path): every translated page with an English original, and those originals."""
    found: list[tuple[str, str, Path]] = []
    english: dict[str, Path] = {}
    for loc, lang in LOCALES.items():
        root = translations / loc
        if not root.is_dir():
            continue
        for p in sorted(root.glob("man*/*")):
            name = f"{p.parent.name}/{p.name}"
            orig = MAN / name
            if not orig.exists():
                continue
            found.append((lang, name, p))
            english[name] = orig
    found += [("en", name, p) for name, p in sorted(english.items())]
    return found


def load_corpus(cache: Path, translations: Path = MAN) -> list[dict]:
    """Records (id, text, meta.source_language, meta.page), rendered once and cached by file content."""
    cache.mkdir(parents=True, exist_ok=True)
    records, seen_files, seen_texts = [], set(), set()
    for lang, name, path in _pages(translations):
        real = path.resolve()
        if (lang, real) in seen_files:
            continue
        seen_files.add((lang, real))
        raw = real.read_bytes()
        key = hashlib.sha256(raw).hexdigest()[:32]
        hit = cache / f"{key}.txt"
        if hit.exists():
            text = hit.read_text(encoding="utf-8")
        else:
            text = _render(real)
            hit.write_text(text, encoding="utf-8")
        if not text.strip() or (lang, text) in seen_texts:
            continue
        seen_texts.add((lang, text))
        meta = {"source_language": lang, "page": name}
        records.append({"id": f"{lang}:{name}:{key[:8]}", "text": text, "meta": meta})
    return records


def run(records: list[dict], recipe: str, repeat: int) -> dict:
    from ciyuan.curate.pipeline import run_steps
    from ciyuan.curate.recipes import build_steps, load_recipe

    canon = load_recipe(recipe)
    best_chain = best_quality = float("inf")
    out: list[dict] = []
    for _ in range(repeat):
        steps = build_steps(canon)
        recs = [{**r, "meta": dict(r["meta"])} for r in records]
        t0 = time.process_time()
        out = run_steps(recs, steps)
        best_chain = min(best_chain, time.process_time() - t0)
        q = [s for s in build_steps(canon) if s.name == "quality"]
        if q:
            # the quality step alone, on what reaches it in the recipe (normalised text, language known)
            reach = [{"id": r["id"], "text": r["text"], "meta": {"language": r["meta"].get("language")}} for r in out]
            t0 = time.process_time()
            list(q[0](reach))
            best_quality = min(best_quality, time.process_time() - t0)
    mb = sum(len(r["text"].encode("utf-8")) for r in records) / 1e6
    by_lang: dict[str, dict] = {}
    for r in out:
        lang = r["meta"]["source_language"]
        d = by_lang.setdefault(lang, {"pages": 0, "kept": 0, "rejected_by": Counter(), "detected": Counter()})
        d["pages"] += 1
        d["detected"][r["meta"].get("language", "?")] += 1
        rej = r.get("_rejected")
        if rej is None:
            d["kept"] += 1
        else:
            d["rejected_by"][f"{rej['step']}.{rej['rule']}"] += 1
    for d in by_lang.values():
        d["keep_rate"] = round(d["kept"] / d["pages"], 3) if d["pages"] else None
        d["rejected_by"] = dict(d["rejected_by"].most_common())
        d["detected"] = dict(d["detected"].most_common())
    cjk = [d for k, d in by_lang.items() if k in ("zh", "ja", "ko")]
    cjk_pages = sum(d["pages"] for d in cjk)
    cjk_rate = sum(d["kept"] for d in cjk) / cjk_pages if cjk_pages else None
    en_rate = by_lang.get("en", {}).get("keep_rate")
    return {
        "recipe": recipe,
        "pages": len(records),
        "mb": round(mb, 2),
        "by_language": dict(sorted(by_lang.items())),
        "cjk_keep_rate": round(cjk_rate, 3) if cjk_rate is not None else None,
        "en_keep_rate": en_rate,
        "cjk_over_en": round(cjk_rate / en_rate, 2) if cjk_rate is not None and en_rate else None,
        "chain_mb_per_cpu_s": round(mb / best_chain, 2) if best_chain else None,
        "quality_mb_per_cpu_s": round(mb / best_quality, 2) if best_quality != float("inf") else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="text-pretrain")
    ap.add_argument(
        "--translations",
        default=str(MAN),
        help="man root holding zh_CN/, zh_TW/, ja/, ko/ (English originals always come from " + str(MAN) + ")",
    )
    ap.add_argument("--cache", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "ciyuan-bench-fairness"))
    ap.add_argument("--repeat", type=int, default=2, help="timing runs (the best CPU time is reported)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--show-rejected", type=int, default=0, help="print N rejected page ids per language")
    args = ap.parse_args()
    if shutil.which("groff") is None:
        print(f"SKIPPED: `groff` is not installed. To run: {HOW}")
        return 0
    records = load_corpus(Path(args.cache), Path(args.translations))
    langs = Counter(r["meta"]["source_language"] for r in records)
    if not any(langs.get(k) for k in ("zh", "ja", "ko")) or not langs.get("en"):
        print(f"SKIPPED: no translated man pages with English originals under {MAN}. To get them: {HOW}")
        return 0
    res = run(records, args.recipe, max(1, args.repeat))
    if args.json:
        print(json.dumps(res, ensure_ascii=False, indent=1))
        return 0
    print(f"recipe {res['recipe']}: {res['pages']} pages, {res['mb']} MB")
    print(f"{'language':8} {'pages':>5} {'kept':>5} {'keep':>6}  rejected by")
    for lang, d in res["by_language"].items():
        why = ", ".join(f"{k} {v}" for k, v in list(d["rejected_by"].items())[:4])
        print(f"{lang:8} {d['pages']:5} {d['kept']:5} {d['keep_rate']:6.2f}  {why}")
    print(f"CJK keep rate {res['cjk_keep_rate']}, English {res['en_keep_rate']}, ratio {res['cjk_over_en']}")
    print(f"MB/s per CPU second: quality step {res['quality_mb_per_cpu_s']}, whole chain {res['chain_mb_per_cpu_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
