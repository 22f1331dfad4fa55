"""The whole text-pretrain recipe: MB/s per core and peak memory at two corpus sizes.

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,50", help="corpus sizes in MB")
    ap.add_argument("--workers", type=int, default=1, help="local executor processes")
    ap.add_argument("--child", type=float)
    ap.add_argument("--home")
    args = ap.parse_args()
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
