"""Import of a LeRobot v3.0 dataset against reading the same files with pyarrow and PyAV alone (issue 14).

A synthetic v3.0 folder (``tests/ingest/episode_gen.py``: a 6-joint arm, one H.264 camera) is made
once; then, ``--repeat`` times and in turn, (a) ``ciyuan ingest`` of it into a store (every
check, the frame tables as Arrow IPC, the video stored as a blob, tokens), (b) the reference that
the issue names: every Parquet file read with pyarrow and every video decoded frame by frame with
PyAV (what "every video decodes" costs at least), and (c) a lighter reference: Parquet read and the
videos only demuxed (packets counted, as the media probe does). Ratios are reference time / ingest
time (issue 14 asks ≥ 0.5 against (b)). Median of the repeats; ``uptime`` load printed beside them.

    PYTHONPATH=. .venv/bin/python bench/bench_episodes.py --episodes 60 --length 150 --size 320x240 --repeat 3
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ingest"))


def reference(root: Path, decode: bool) -> int:
    """Read every Parquet file and every video of ``root``; frames decoded (or packets counted)."""
    import av
    import pyarrow.parquet as pq

    rows = 0
    for f in sorted(glob.glob(str(root / "**" / "*.parquet"), recursive=True)):
        rows += pq.read_table(f).num_rows
    frames = 0
    for f in sorted(glob.glob(str(root / "videos" / "**" / "*.mp4"), recursive=True)):
        with av.open(f) as c:
            vs = c.streams.video[0]
            if decode:
                vs.thread_type = "AUTO"
                frames += sum(1 for _ in c.decode(vs))
            else:
                frames += sum(1 for p in c.demux(vs) if p.size)
    return rows + frames


def ours(root: Path, run: int) -> dict:
    from ciyuan.ingest.run import ingest

    return ingest([str(root)], f"bench-episodes-{run}")


def fresh_home(home: Path) -> None:
    """A store whose database is already migrated: the migrations are a one-time cost, not import."""
    from ciyuan import db
    from ciyuan.config import settings

    os.environ["CIYUAN_HOME"] = str(home)
    settings.cache_clear()
    db.dispose_all()
    db.engine(settings())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=60)
    ap.add_argument("--length", type=int, default=150)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from episode_gen import lerobot_v30

    w, h = (int(x) for x in a.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="ciyuan-bench-episodes-"))
    try:
        root = lerobot_v30(work / "v3", lengths=[a.length] * a.episodes, fps=a.fps, size=(w, h))
        size = sum(os.path.getsize(f) for f in glob.glob(str(root / "**" / "*"), recursive=True) if os.path.isfile(f))
        times: dict[str, list[float]] = {"ingest": [], "decode": [], "demux": []}
        cpu: dict[str, list[float]] = {k: [] for k in times}
        out = None
        fresh_home(work / "home")
        for run in range(a.repeat):
            for name in times:
                t0, c0 = time.perf_counter(), time.process_time()
                if name == "ingest":
                    out = ours(root, run)
                else:
                    reference(root, decode=name == "decode")
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
        med = {k: statistics.median(v) for k, v in times.items()}
        medc = {k: statistics.median(v) for k, v in cpu.items()}
        res = {
            "episodes": a.episodes, "frames": a.episodes * a.length, "size": a.size, "input_mb": round(size / 1e6, 2),
            "records": out["records"] if out else None, "quarantined": out["quarantined"] if out else None,
            "wall_s": {k: round(v, 3) for k, v in med.items()}, "cpu_s": {k: round(v, 3) for k, v in medc.items()},
            "ratio_vs_decode_wall": round(med["decode"] / med["ingest"], 3),
            "ratio_vs_decode_cpu": round(medc["decode"] / medc["ingest"], 3),
            "ratio_vs_demux_wall": round(med["demux"] / med["ingest"], 3),
            "load": os.getloadavg(),
        }
        print(json.dumps(res, indent=None if a.json else 1))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
