"""The pii step: throughput (MB/s, CPU time) and recall/precision per type on the labelled set.

Throughput runs ``redact`` over a few MB of mixed text (prose, technical lines, PII-carrying lines in the
proportions given) for the module under test and, with ``--baseline FILE``, for another copy of
``pii.py`` (e.g. ``git show main:ciyuan/curate/steps/pii.py > /tmp/pii_main.py``), back to back, best
of ``--repeat`` runs of process CPU time. ``--jieba`` also measures jieba's ``nr`` (person name) tags as
a name detector on the same labelled Chinese names and clean lines.

    .venv/bin/python bench/bench_pii.py --mb 4 --baseline /tmp/pii_main.py --jieba --real
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "curate"))

from corpus import en_sentence, zh_sentence  # noqa: E402

from ciyuan.curate import pii_samples as ps  # noqa: E402


def _load(path: str):
    spec = importlib.util.spec_from_file_location(f"pii_{abs(hash(path))}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def corpus(mb: float, seed: int = 1, pii_share: float = 0.05, tech_share: float = 0.15) -> list[str]:
    """Records of about 1 kB: prose (half Chinese), technical lines and labelled PII texts mixed in."""
    rng = random.Random(seed)
    pii = [it.text for it in ps.labelled_set(seed=seed)]
    tech = ps.clean_technical_lines(seed=seed, n=2000)
    out, size = [], 0
    while size < mb * 1e6:
        parts = []
        while sum(len(p) for p in parts) < 350:
            r = rng.random()
            if r < pii_share:
                parts.append(rng.choice(pii))
            elif r < pii_share + tech_share:
                parts.append(rng.choice(tech))
            else:
                parts.append(zh_sentence(rng) if rng.random() < 0.5 else en_sentence(rng))
        text = " ".join(parts)
        out.append(text)
        size += len(text.encode("utf-8"))
    return out


def throughput(mod, texts: list[str], repeat: int) -> dict:
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    best = float("inf")
    n = 0
    for _ in range(repeat):
        t0 = time.process_time()
        n = sum(bool(mod.redact(t)[1]) for t in texts)
        best = min(best, time.process_time() - t0)
    return {"mb": round(mb, 2), "cpu_s": round(best, 3), "mb_per_s": round(mb / best, 2), "records_changed": n}


def jieba_names(items: list[ps.Labelled], clean: list[str]) -> dict:
    """jieba.posseg ``nr`` words as person names: recall on the Chinese names, false positives elsewhere."""
    import jieba
    import jieba.posseg as pseg

    jieba.setLogLevel(60)
    jieba.initialize()
    list(pseg.cut("先加载词典。"))  # dictionary load is not timed

    def find(text: str) -> list[tuple[int, int, str]]:
        spans, pos = [], 0
        for w in pseg.cut(text):
            if w.flag == "nr":
                spans.append((pos, pos + len(w.word), "person_name"))
            pos += len(w.word)
        return spans

    zh_names = [it for it in items if it.lang == "zh" and it.spans[0][2] == "person_name"]
    zh_other = [it for it in items if it.lang == "zh" and it.spans[0][2] != "person_name"]
    zh_clean = [line for line in clean if any("\u4e00" <= c <= "\u9fff" for c in line)]
    t0 = time.process_time()
    ev = ps.evaluate(find, zh_names + zh_other, zh_clean)
    secs = time.process_time() - t0
    r = {**ev["types"].get("person_name", {}),
         "formats": {k: v for k, v in ev["formats"].items() if k.startswith("person_name")}}  # fmt: skip
    mb = sum(len(t.text.encode()) for t in zh_names + zh_other) / 1e6 + sum(len(t.encode()) for t in zh_clean) / 1e6
    return {"jieba_nr": r, "mb_per_s": round(mb / secs, 3)}  # its rules counterpart: "labelled" above


def real_text(mods: dict) -> dict:
    """Detections on this machine's man pages (Chinese and English) and Debian READMEs/changelogs."""
    import glob
    import gzip

    man = sorted(glob.glob("/usr/share/man/zh_CN/man*/*.gz"))[:300]
    files = man + sorted(glob.glob("/usr/share/man/man1/*.gz"))[:300]
    lines: list[str] = []
    for f in files:
        try:
            with gzip.open(f, "rt", errors="replace") as fh:
                lines += [x for x in fh.read().splitlines() if x.strip()]
        except OSError:
            continue
    docs = sorted(glob.glob("/usr/share/doc/*/README*"))[:200] + sorted(glob.glob("/usr/share/doc/*/changelog"))[:100]
    for f in docs:
        try:
            with open(f, errors="replace") as fh:
                lines += [x for x in fh.read().splitlines() if x.strip()]
        except OSError:
            continue
    out: dict = {"lines": len(lines), "mb": round(sum(len(x.encode()) for x in lines) / 1e6, 2)}
    for name, mod in mods.items():
        counts: dict[str, int] = {}
        examples: dict[str, list[str]] = {}
        for line in lines:
            for a, b, k in mod.find_pii(line):
                counts[k] = counts.get(k, 0) + 1
                ex = examples.setdefault(k, [])
                if k != "email" and len(ex) < 20:
                    ex.append(line[max(0, a - 20) : b + 10])
        out[name] = {"counts": counts, "examples": examples}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", help="another pii.py to time the same way")
    ap.add_argument("--jieba", action="store_true")
    ap.add_argument("--real", action="store_true", help="also count detections on this machine's man pages and docs")
    args = ap.parse_args()
    texts = corpus(args.mb)
    cur = _load(str(ROOT / "ciyuan" / "curate" / "steps" / "pii.py"))
    out: dict = {"records": len(texts)}
    if args.baseline:
        base = _load(args.baseline)
        out["baseline"] = throughput(base, texts, args.repeat)
        out["baseline_prose_only"] = throughput(base, corpus(args.mb, pii_share=0, tech_share=0), args.repeat)
    out["current"] = throughput(cur, texts, args.repeat)
    out["current_prose_only"] = throughput(cur, corpus(args.mb, pii_share=0, tech_share=0), args.repeat)
    items, clean = ps.labelled_set(), ps.clean_technical_lines()
    ev = ps.evaluate(cur.find_pii, items, clean)
    out["labelled"] = {k: {x: v[x] for x in ("planted", "recall", "exact", "precision", "clean_fp_per_1000_lines")}
                       for k, v in ev["types"].items()}  # fmt: skip
    if args.baseline:
        evb = ps.evaluate(base.find_pii, items, clean)
        out["labelled_baseline"] = {k: {x: v[x] for x in ("recall", "precision", "clean_fp_per_1000_lines")}
                                    for k, v in evb["types"].items()}  # fmt: skip
    if args.jieba:
        out["jieba"] = jieba_names(items, clean)
    if args.real:
        out["real_text"] = real_text({"current": cur, **({"baseline": base} if args.baseline else {})})
    print(json.dumps(out, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
