"""Peak memory of ``ciyuan ingest`` on a large generated JSONL (target: under 1 GB for 2 GB of input).

Generates a JSONL of the requested size (English and Chinese words, varied record lengths, a few bad
lines), ingests it with the real CLI in a child process, and reports the child's peak RSS against the
input size, plus throughput.

    .venv/bin/python bench/bench_ingest_memory.py --gb 2 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
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

EN = [
    "turbine",
    "gearbox",
    "bearing",
    "blade",
    "pitch",
    "yaw",
    "generator",
    "converter",
    "inspection",
    "vibration",
    "temperature",
    "oil",
    "filter",
    "replaced",
    "torque",
    "sensor",
    "fault",
    "alarm",
    "tower",
    "nacelle",
    "maintenance",
    "crew",
    "shift",
    "report",
]
ZH = list("风机齿轮箱轴承叶片变桨偏航发电机变流器巡检振动温度油滤更换扭矩传感器故障报警塔筒机舱维护班组报告")


def generate(path: Path, size: int, seed: int = 7) -> int:
    rng = random.Random(seed)
    written = n = 0
    with path.open("w", encoding="utf-8") as fh:
        while written < size:
            if rng.random() < 0.5:
                text = " ".join(rng.choices(EN, k=rng.randint(20, 800)))
            else:
                text = "".join(rng.choices(ZH, k=rng.randint(30, 1500)))
            line = json.dumps({"id": f"r{n}", "text": text, "site": rng.randint(1, 40)}, ensure_ascii=False)
            if n % 100_000 == 99_999:
                line = line[: len(line) // 2]  # a malformed line now and then
            fh.write(line + "\n")
            written += len(line.encode()) + 1
            n += 1
    return n


def _pss(pid: int) -> int:
    """Proportional set size in bytes: pages shared by forked workers are counted once, not per process."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


class TreeSampler(threading.Thread):
    """Samples the summed PSS of a process and all its descendants (workers included) every 0.2 s."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self._done = pid, 0, threading.Event()

    def _tree(self) -> list[int]:
        kids: dict[int, list[int]] = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    ppid = int(Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                kids.setdefault(ppid, []).append(int(d))
        out, todo = [], [self.pid]
        while todo:
            p = todo.pop()
            out.append(p)
            todo.extend(kids.get(p, []))
        return out

    def run(self) -> None:
        while not self._done.is_set():
            total = 0
            for p in self._tree():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    total += _pss(p)
            self.peak = max(self.peak, total)
            time.sleep(0.2)

    def stop(self) -> None:
        self._done.set()
        self.join()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ciyuan-bench-ingest-"))
    src = tmp / "big.jsonl"
    t0 = time.perf_counter()
    lines = generate(src, int(args.gb * (1 << 30)))
    gen_s = time.perf_counter() - t0
    env = dict(os.environ, CIYUAN_HOME=str(tmp / "home"))
    env.pop("CIYUAN_DATABASE_URL", None)
    ciyuan = Path(sys.executable).with_name("ciyuan")
    t0 = time.perf_counter()
    child = subprocess.Popen(
        [str(ciyuan), "ingest", str(src), "--dataset", "big", "--workers", str(args.workers), "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = TreeSampler(child.pid)
    sampler.start()
    stdout, stderr = child.communicate()
    sampler.stop()
    proc = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"ingest failed: {proc.stderr}\n{proc.stdout}")
    out = json.loads(proc.stdout)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the ingest process and its reaped workers
    peak_kb = usage.ru_maxrss  # largest child: the ingest process
    size = src.stat().st_size
    res = {
        "input_bytes": size,
        "input_lines": lines,
        "records": out["records"],
        "quarantined": out["quarantined"],
        "tokens": out["tokens"],
        "workers": args.workers,
        "generate_s": round(gen_s, 1),
        "ingest_s": round(wall, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),  # less sensitive than wall time to busy neighbours
        "mb_per_s": round(size / wall / 1e6, 2),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_tree_pss_mb": round(sampler.peak / (1 << 20), 1),
        "peak_rss_over_input": round(peak_kb * 1024 / size, 3),
        "target": "peak memory (PSS) of ingest and its workers together < 1024 MB",
        "pass": sampler.peak / (1 << 20) < 1024,
    }
    print(json.dumps(res, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in res.items()))
    if not args.keep:
        import shutil

        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
