"""Trace the memory of any command's process tree: PSS of every process, every 0.2 s.

Why: a whole-run peak says *that* memory grew with the input, not *where*. This runs the command
under :func:`bench_curate.run_tree` with a :class:`bench_curate.TreeTrace`: one JSON line per
sample in ``--out`` (``t``, ``tree`` MB, the newest stage folder of ``--work`` if given, and per
pid ``pss``/``anon``/``file`` MB), then prints the tree's peak (what each process held at that
moment) and each process's own peak with its stage.

    PYTHONPATH=. .venv/bin/python bench/trace_pss.py --out /tmp/trace.jsonl --work HOME/work -- \\
        ciyuan curate real@VERSION --recipe text-pretrain --workers 2 --json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_curate import run_tree  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True, help="JSON lines, one per sample")
    ap.add_argument("--work", type=Path, help="a curation home's work folder: record its newest stage folder")
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    res = run_tree(cmd, dict(os.environ), disk=args.work, trace=args.out)
    res["stdout"] = res["stdout"][-2000:]
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
