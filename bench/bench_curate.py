"""The whole text-pretrain recipe: MB/s per core and peak memory, on synthetic or REAL text.

Real text (``--corpus DIR``): every ``*.jsonl`` under DIR (``{"text": ...}`` per line, e.g. the
folder bench/make_real_corpus.py writes, or man pages rendered to JSONL) is copied, scaled to
``--mb`` if asked (repeated with about one word in ten swapped per copy, so copies are neither exact
nor near duplicates), ingested with the real CLI (``ciyuan ingest``, not timed as curation) and
curated with the real CLI (``ciyuan curate NAME@VERSION --recipe text-pretrain``). MB/s per core is
the bytes of text over the CPU seconds (user + system) of the ``curate`` process tree (the CLI and
its worker processes, all reaped); memory is the peak summed PSS of that tree, sampled every 0.2 s.

    .venv/bin/python bench/bench_curate.py --make-corpus /tmp/realcorpus --make-mb 100
    .venv/bin/python bench/bench_curate.py --corpus /tmp/realcorpus --workers 2
    .venv/bin/python bench/bench_curate.py --corpus /tmp/realcorpus --mb 1000 --workers 2

A speed change must not change what is kept: ``--save-decisions F`` writes every record's decision
(kept, or the rejecting step and reason) and ``--compare F`` on the other tree counts the records
decided differently (``records_decided_differently``, with the first few). The CPU seconds of the
CLI process and of each worker are also sampled from /proc, to show where the total went.

Synthetic text (no ``--corpus``):

Each size runs in a fresh child process with its own ciyuan home. The corpus is written as a
version first (not timed); then ``curate`` runs with ``--workers`` processes while a thread samples
the proportional set size (PSS, /proc/PID/smaps_rollup) of the child and every descendant (the
executor's worker processes) every 0.2 s; the peak of that sum is the run's memory. CPU seconds are
the child's own plus its reaped children's (user + system), so MB/s per core = MB / CPU seconds,
which a shared, loaded machine does not distort the way wall time is.

    .venv/bin/python bench/bench_curate.py --sizes 200,1000 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _descendants(root: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        kids.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, []))
    return out


def tree_pss_mb(root: int) -> float:
    """Sum of PSS over ``root`` and its descendants, in MB."""
    total = 0
    for pid in _descendants(root):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total / 1024


def tree_cpu(root: int, seen: dict[int, float]) -> None:
    """Record in ``seen`` the CPU seconds (user + system) so far of ``root`` and each descendant.

    Sampled, so a process's last fraction of a second is missed; what it shows is where the CPU
    went: the parent process against each worker (the ``wait4`` total is the exact sum).
    """
    tick = os.sysconf("SC_CLK_TCK")
    for pid in _descendants(root):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        seen[pid] = max(seen.get(pid, 0.0), (int(fields[11]) + int(fields[12])) / tick)


def folder_mb(root: Path) -> float:
    """Bytes of every file under ``root`` (the curate work folder: intermediate shards and scratch)."""
    total = 0
    for dirpath, _, files in os.walk(root):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, f))
            except OSError:
                continue
    return total / 1e6


class PeakSampler(threading.Thread):
    def __init__(self, interval: float = 0.2, disk: Path | None = None):
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_event = interval, 0.0, threading.Event()
        self.disk, self.peak_disk = disk, 0.0

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, tree_pss_mb(os.getpid()))
            if self.disk is not None:
                self.peak_disk = max(self.peak_disk, folder_mb(self.disk))
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def child(mb: float, home: str, workers: int) -> dict:
    os.environ["CIYUAN_HOME"] = home
    sys.path.insert(0, str(ROOT / "tests" / "curate"))
    from corpus import boilerplate_pages, edit_copy, en_prose, zh_prose

    from ciyuan.curate.curate import curate
    from ciyuan.store import VersionBuilder

    rng = random.Random(1)
    b = VersionBuilder("bench", made_by={"command": "bench"}, rows_per_shard=2000)
    size, i, recent = 0, 0, []
    while size < mb * 1e6:
        roll = rng.random()
        if roll < 0.1 and recent:
            text = edit_copy(rng.choice(recent), 3, rng, cjk=False)
        elif roll < 0.15:
            text = rng.choice(boilerplate_pages(rng, 8))
        elif roll < 0.45:
            text = zh_prose(rng, 6)
        else:
            text = en_prose(rng, 6)
        recent = (recent + [text])[-50:] if not text.startswith(("Home", "首页")) else recent
        b.add({"id": f"r{i}", "text": text, "meta": {}})
        size += len(text.encode())
        i += 1
    v = b.commit()
    del b, recent
    pss_before = tree_pss_mb(os.getpid())
    sampler = PeakSampler(disk=Path(home) / "work")
    sampler.start()
    load0, cpu0, t0 = os.getloadavg(), _cpu_seconds(), time.perf_counter()
    res = curate(v.ref, "text-pretrain", workers=workers)
    dt, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    peak = sampler.stop()
    return {
        "mb": round(size / 1e6, 1),
        "records": i,
        "workers": workers,
        "wall_seconds": round(dt, 1),
        "cpu_seconds": round(cpu, 1),
        "mb_per_cpu_second": round(size / 1e6 / cpu, 2),
        "mb_per_s_wall": round(size / 1e6 / dt, 2),
        "pss_mb_before_curate": round(pss_before),
        "peak_tree_pss_mb": round(peak),
        "peak_work_folder_mb": round(sampler.peak_disk),
        "kept": res["kept"],
        "rejected": res["rejected"],
        "load_avg_start": [round(x, 2) for x in load0],
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
    }


def make_corpus(out: Path, mb: float = 100.0, doc_share: float = 0.35) -> dict:
    """Write a real-text corpus from this machine: /usr/share/doc text, then rendered man pages.

    ``doc.jsonl``: text files and gzipped changelogs under /usr/share/doc (each cut to 300,000
    characters) up to ``doc_share`` of ``mb``; then one ``man-LANG.jsonl`` per translation
    (zh_CN, zh_TW, ja, ko, de, fr, es, ru, pt_BR, it, pl) and ``manN.jsonl`` for sections 1, 8, 5,
    7, 2, 3, each page rendered with ``man -P cat -l`` at 80 columns in a UTF-8 locale, until the
    text reaches ``mb`` MB. Used for docs/benchmarks.md when bench/make_real_corpus.py is absent.
    """
    import glob
    import gzip
    from concurrent.futures import ThreadPoolExecutor

    out.mkdir(parents=True, exist_ok=True)
    target = mb * 1e6
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")

    def render(path: str) -> str | None:
        try:
            p = subprocess.run(["man", "-P", "cat", "-l", path], env=env, capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        text = p.stdout.decode("utf-8", "replace")
        return text if len(text) > 100 else None

    total, counts = 0, {}
    with (out / "doc.jsonl").open("w", encoding="utf-8") as fh:
        for root, _, files in sorted(os.walk("/usr/share/doc")):
            for f in sorted(files):
                path = os.path.join(root, f)
                if total >= target * doc_share or os.path.islink(path):
                    continue
                try:
                    if f.endswith(".gz"):
                        raw = gzip.decompress(Path(path).read_bytes())
                    elif f.endswith((".txt", ".md", ".rst")) or f in ("copyright", "README", "NEWS", "changelog"):
                        raw = Path(path).read_bytes()
                    else:
                        continue
                    text = raw.decode("utf-8")[:300_000]
                except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
                    continue
                if len(text) > 100:
                    fh.write(json.dumps({"id": path, "text": text, "source": "doc"}, ensure_ascii=False) + "\n")
                    total += len(text.encode())
    counts["doc"] = total
    groups = [(f"man-{lang}", f"/usr/share/man/{lang}/man*/*.gz") for lang in
              ("zh_CN", "zh_TW", "ja", "ko", "de", "fr", "es", "ru", "pt_BR", "it", "pl")]  # fmt: skip
    groups += [(f"man{sec}", f"/usr/share/man/man{sec}/*.gz") for sec in ("1", "8", "5", "7", "2", "3")]
    with ThreadPoolExecutor(2) as ex:
        for name, pattern in groups:
            if total >= target:
                break
            files = sorted(glob.glob(pattern))
            with (out / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
                for path, text in zip(files, ex.map(render, files), strict=True):
                    if text:
                        fh.write(json.dumps({"id": path, "text": text, "source": name}, ensure_ascii=False) + "\n")
                        total += len(text.encode())
                    if total >= target:
                        break
            counts[name] = total
    return {"out": str(out), "mb": round(total / 1e6, 1), "cumulative_bytes": counts}


def corpus_files(folder: Path) -> list[Path]:
    """The ``*.jsonl`` files under ``folder``, sorted (a planted-pairs list is skipped: no ``text``)."""
    files = sorted(p for p in folder.rglob("*.jsonl") if p.is_file())
    if not files:
        sys.exit(f"--corpus {folder}: no .jsonl file under it (make one with bench/make_real_corpus.py)")
    return files


def _perturb(text: str, rng: random.Random) -> str:
    """``text`` with about one space-separated word in ten replaced by another word of it."""
    ws = text.split(" ")
    n = len(ws)
    if n < 10:
        return text
    for j in rng.sample(range(n), n // 10):
        ws[j] = ws[rng.randrange(n)]
    return " ".join(ws)


def write_scaled(folder: Path, out: Path, mb: float | None, seed: int = 3) -> tuple[int, int]:
    """Copy the corpus to one JSONL at ``out`` (scaled to ``mb`` MB of text); (records, text bytes).

    The first pass is the corpus as it is; each further pass perturbs every record (see
    :func:`_perturb`) until the text reaches ``mb``. Records without a string ``text`` are skipped.
    """
    rng = random.Random(seed)
    target = mb * 1e6 if mb else None
    n = size = 0
    with out.open("w", encoding="utf-8") as fh:
        for copy in range(10_000):
            for path in corpus_files(folder):
                with path.open(encoding="utf-8") as src:
                    for line in src:
                        try:
                            text = json.loads(line).get("text")
                        except (json.JSONDecodeError, AttributeError):
                            continue
                        if not isinstance(text, str) or not text:
                            continue
                        if copy:
                            text = _perturb(text, rng)
                        fh.write(json.dumps({"id": f"c{copy}-{n}", "text": text}, ensure_ascii=False) + "\n")
                        n += 1
                        size += len(text.encode())
                        if target is not None and size >= target:
                            return n, size
            if target is None:
                break
    return n, size


def process_pss(pid: int) -> dict[str, float] | None:
    """PSS, anonymous PSS and file-backed PSS of one process in MB (None once it is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("Pss", "Pss_Anon", "Pss_File"):
                    out[key] = int(rest.split()[0]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return {"pss": out.get("Pss", 0.0), "anon": out.get("Pss_Anon", 0.0), "file": out.get("Pss_File", 0.0)}


def newest_stage(work: Path | None) -> str:
    """The newest ``stage-``/``scan-``/``plan-`` folder under a curation home's work folder: what runs now."""
    if work is None:
        return ""
    found = []
    for dirpath, dirs, _ in os.walk(work):
        for d in dirs:
            if d.startswith(("stage-", "scan-", "plan-")):
                with contextlib.suppress(OSError):
                    found.append((os.stat(os.path.join(dirpath, d)).st_mtime, d))
    return max(found)[1] if found else ""


class TreeTrace:
    """Per-process PSS samples of a process tree, one JSON line each (``trace``), and their peaks.

    Why: the tree's peak says that memory grew, not in which process or stage; the trace says both.
    """

    def __init__(self, path: Path | None, work: Path | None = None):
        self.fh = path.open("w", encoding="utf-8") if path is not None else None
        self.work, self.t0 = work, time.perf_counter()
        self.peak: dict = {"tree": 0.0}
        self.own: dict[int, dict] = {}

    def sample(self, root: int) -> float:
        if self.fh is None:
            return tree_pss_mb(root)
        procs = {p: r for p in _descendants(root) if (r := process_pss(p)) is not None}
        tree = sum(r["pss"] for r in procs.values())
        stage = newest_stage(self.work)
        row = {"t": round(time.perf_counter() - self.t0, 2), "tree": round(tree, 1), "stage": stage,
               "procs": {str(p): {k: round(v, 1) for k, v in r.items()} for p, r in procs.items()}}
        self.fh.write(json.dumps(row) + "\n")
        if tree > self.peak["tree"]:
            self.peak = row
        for p, r in procs.items():
            if r["pss"] > self.own.get(p, {}).get("pss", -1.0):
                self.own[p] = {**row["procs"][str(p)], "t": row["t"], "stage": stage}
        return tree

    def summary(self) -> dict:
        if self.fh is None:
            return {}
        self.fh.close()
        return {"tree_peak": self.peak, "process_peaks": {str(p): v for p, v in self.own.items()}}


def run_tree(cmd: list[str], env: dict, disk: Path | None = None, trace: Path | None = None) -> dict:
    """Run ``cmd``: CPU seconds, peak RSS (``wait4``: it and every reaped descendant), peak tree PSS, stdout.

    ``wait4`` gives the finished process's own usage plus that of the children it waited for (the
    executor's workers), so CPU seconds and the largest resident set are per run, not cumulative.
    ``trace`` (a file) gets every sample per process (:class:`TreeTrace`); its summary is returned.
    """
    with tempfile.TemporaryFile("w+", encoding="utf-8") as out, tempfile.TemporaryFile("w+", encoding="utf-8") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        peak, peak_disk, stop = [0.0], [0.0], threading.Event()
        tracer = TreeTrace(trace, disk)
        cpu_seen: dict[int, float] = {}

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], tracer.sample(proc.pid))
                tree_cpu(proc.pid, cpu_seen)
                if disk is not None:
                    peak_disk[0] = max(peak_disk[0], folder_mb(disk))
                stop.wait(0.2)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        th.join()
        wall = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-4000:]}\n{stdout[-2000:]}")
    return {
        "cpu": usage.ru_utime + usage.ru_stime,
        "wall": wall,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "peak_pss_mb": peak[0],
        "peak_disk_mb": peak_disk[0],
        "stdout": stdout,
        "trace": tracer.summary(),
        # sampled CPU s of the command's own process, then of each child it started (workers)
        "cpu_parent_sampled": round(cpu_seen.get(proc.pid, 0.0), 1),
        "cpu_children_sampled": [round(v, 1) for k, v in sorted(cpu_seen.items()) if k != proc.pid],
    }


def decisions(home: Path, dataset: str, version: str) -> list[list[str]]:
    """Every record of a curated version as ``[id, "kept"]`` or ``[id, step, reason]``, kept ones first.

    What a speed change must leave alone: which records stay, and which step rejected the others
    with which reason (the reason carries the measured values, so a changed statistic shows too).
    """
    import pyarrow.parquet as pq

    root = home / "store" / "datasets" / dataset / version
    out: list[list[str]] = []
    for part, cols in (("shards", ["id"]), ("rejected", ["id", "step", "reason"])):
        for f in sorted((root / part).glob("*.parquet")):
            t = pq.read_table(f, columns=cols).to_pydict()
            rows = zip(*(t[c] for c in cols), strict=True)
            out.extend([r[0], "kept"] if part == "shards" else list(r) for r in rows)
    return out


def compare_decisions(mine: list[list[str]], path: Path) -> dict:
    """How many records were decided differently from the decisions saved at ``path`` (JSON lines)."""
    with path.open(encoding="utf-8") as fh:
        theirs = {d[0]: d for d in map(json.loads, fh)}
    ours = {d[0]: d for d in mine}
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    return {"compared_with": str(path), "records_decided_differently": len(differ), "first_differences":
            [{"id": k, "now": ours.get(k), "before": theirs.get(k)} for k in differ[:5]]}  # fmt: skip


def corpus_run(
    folder: Path, mb: float | None, workers: int, recipe: str, keep: bool = False, ingest_workers: int = 1,
    trace: Path | None = None, reuse: Path | None = None, save_decisions: Path | None = None,
    compare: Path | None = None,
) -> dict:
    """Ingest then curate the (scaled) real corpus with the CLI in a fresh ciyuan home.

    ``trace`` (a folder): per-process PSS samples of each command, ``ingest-MB.jsonl`` and
    ``curate-MB.jsonl`` (see :class:`TreeTrace`), and their peaks in the result. ``reuse`` (a
    folder, kept): the scaled corpus, home and ingest result live there, and a second run with the
    same folder curates the version already ingested (to compare code trees on one input).
    ``save_decisions`` writes every record's decision (see :func:`decisions`) as JSON lines;
    ``compare`` counts the records decided differently from such a file of an earlier run.
    """
    tmp = reuse if reuse is not None else Path(tempfile.mkdtemp(prefix="ciyuan-bench-curate-"))
    keep = keep or reuse is not None
    try:
        src = tmp / "corpus.jsonl"
        env = dict(os.environ, CIYUAN_HOME=str(tmp / "home"))
        env.pop("CIYUAN_DATABASE_URL", None)
        cli = str(Path(sys.executable).with_name("ciyuan"))
        if trace is not None:
            trace.mkdir(parents=True, exist_ok=True)
        saved = tmp / "ingest.json"
        if saved.exists():
            ing = json.loads(saved.read_text(encoding="utf-8"))
            records, size, tag = ing["records"], ing["size"], ing["tag"]
        else:
            tmp.mkdir(parents=True, exist_ok=True)
            records, size = write_scaled(folder, src, mb)
            tag = f"{round(size / 1e6)}mb"
            ing = run_tree([cli, "ingest", str(src), "--dataset", "real", "--workers", str(ingest_workers), "--json"],
                           env, trace=trace / f"ingest-{tag}.jsonl" if trace else None)
            ing.update(records=records, size=size, tag=tag)
            if reuse is not None:
                saved.write_text(json.dumps(ing), encoding="utf-8")
        ref = f"real@{json.loads(ing['stdout'])['version']}"
        load0 = os.getloadavg()
        cur = run_tree(
            [cli, "curate", ref, "--recipe", recipe, "--workers", str(workers), "--json"], env, disk=tmp / "home",
            trace=trace / f"curate-{tag}.jsonl" if trace else None,
        )
        res = json.loads(cur["stdout"])
        steps = {s["step"]: s.get("rejected", 0) for s in res.get("steps", []) if isinstance(s, dict) and "step" in s}
        decided = decisions(tmp / "home", "real", res["version"])
        extra: dict = {}
        if save_decisions is not None:
            with save_decisions.open("w", encoding="utf-8") as fh:
                fh.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in decided)
        if compare is not None:
            extra = compare_decisions(decided, compare)
        return {
            "corpus": str(folder),
            "mb": round(size / 1e6, 1),
            "records": records,
            "recipe": recipe,
            "workers": workers,
            "curate_cpu_seconds": round(cur["cpu"], 1),
            "curate_wall_seconds": round(cur["wall"], 1),
            "curate_cpu_parent_sampled": cur["cpu_parent_sampled"],
            "curate_cpu_workers_sampled": cur["cpu_children_sampled"],
            "mb_per_cpu_second": round(size / 1e6 / cur["cpu"], 2),
            "mb_per_s_wall": round(size / 1e6 / cur["wall"], 2),
            "curate_peak_tree_pss_mb": round(cur["peak_pss_mb"]),
            "curate_peak_rss_mb": round(cur["peak_rss_mb"]),
            "curate_peak_work_mb": round(cur["peak_disk_mb"]),
            "ingest_cpu_seconds": round(ing["cpu"], 1),
            "ingest_wall_seconds": round(ing["wall"], 1),
            "ingest_peak_tree_pss_mb": round(ing["peak_pss_mb"]),
            "ingest_peak_rss_mb": round(ing["peak_rss_mb"]),
            "kept": res["kept"],
            "rejected": res["rejected"],
            "rejected_by_step": steps,
            "load_avg_start": [round(x, 2) for x in load0],
            "load_avg_end": [round(x, 2) for x in os.getloadavg()],
            "version": res["version"],
            **({"ingest_trace": ing.get("trace", {}), "curate_trace": cur["trace"]} if trace else {}),
            "decisions_sha256": hashlib.sha256(json.dumps(decided).encode()).hexdigest()[:16],
            **extra,
        }
    finally:
        if not keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,50", help="synthetic corpus sizes in MB")
    ap.add_argument("--corpus", type=Path, help="folder of .jsonl real text; curated through the CLI")
    ap.add_argument("--mb", type=float, help="with --corpus: scale the corpus to this many MB of text")
    ap.add_argument("--make-corpus", type=Path, help="write a real-text corpus from man pages and /usr/share/doc here")
    ap.add_argument("--make-mb", type=float, default=100.0, help="with --make-corpus: MB of text to write")
    ap.add_argument("--recipe", default="text-pretrain")
    ap.add_argument("--workers", type=int, default=1, help="local executor processes")
    ap.add_argument("--trace", type=Path, help="with --corpus: write per-process PSS samples into this folder")
    ap.add_argument("--ingest-workers", type=int, default=1, help="with --corpus: ciyuan ingest --workers")
    ap.add_argument("--reuse", type=Path, help="with --corpus: keep corpus, home and ingest here; rerun: curate again")
    ap.add_argument("--save-decisions", type=Path, help="with --corpus: write each record's decision here (JSONL)")
    ap.add_argument("--compare", type=Path, help="with --corpus: compare with a --save-decisions file")
    ap.add_argument("--child", type=float)
    ap.add_argument("--home")
    args = ap.parse_args()
    if args.make_corpus:
        print(json.dumps(make_corpus(args.make_corpus, args.make_mb)), flush=True)
        return
    if args.corpus:
        res = corpus_run(args.corpus, args.mb, args.workers, args.recipe, ingest_workers=args.ingest_workers,
                         trace=args.trace, reuse=args.reuse, save_decisions=args.save_decisions,
                         compare=args.compare)  # fmt: skip
        print(json.dumps(res), flush=True)
        return
    if args.child:
        print(json.dumps(child(args.child, args.home, args.workers)))
        return
    out = []
    for s in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as home:
            cmd = [sys.executable, __file__, "--child", s, "--home", home, "--workers", str(args.workers)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(json.dumps(out[-1]), flush=True)


if __name__ == "__main__":
    main()
