"""Peak memory and quarantine size of ``ciyuan ingest`` on a CSV with one runaway quoted field.

Line 2 opens a quote that never closes; a million ordinary rows follow. Before the fix (issue 10,
defect 5) the reader grew one field up to the line limit, kept every raw line of it, then
quarantined each following line on its own; now the record is cut at ``ingest_max_record_bytes``,
quarantined once, and parsing resumes on the line after the one that opened the quote.

    .venv/bin/python bench/bench_csv_runaway.py --rows 1000000 --json

Measured on this machine (1,000,000 rows, 34.8 MB), before -> after the fix: the runaway file kept
753,977 -> 1,000,000 rows; ``read_source`` alone peaked at 167.7 -> 141.7 MB (control file: 88.1 ->
97.9 MB, 8.7 MB of it ``pyarrow.compute``, now imported by the builder that uses it); the whole CLI
ingest peaks at ~350 MB either way (its fixed cost: tokenizer, Arrow, SQLite).
The runaway costs at most a few times ``ingest_max_record_bytes`` (8 MiB), whatever the file's size.

The ingest runs through the real CLI in a child process; its peak RSS comes from ``wait4``. A control
file (the same rows, the quote closed) shows what the ingest costs without the runaway field.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def generate(path: Path, rows: int, runaway: bool = True) -> int:
    """Header, one unclosed quote (closed in the control file), then ``rows`` good rows; returns the size."""
    with path.open("w", encoding="utf-8") as fh:
        fh.write("id,text\n")
        fh.write('0,"this quoted field never closes\n' if runaway else '0,"this quoted field closes"\n')
        for i in range(1, rows + 1):
            fh.write(f"{i},maintenance log line {i}\n")
    return path.stat().st_size


READER = """
import collections, json, sys
from ciyuan.ingest.readers import Good, read_source
n = collections.Counter("good" if isinstance(i, Good) else "bad" for i in read_source(sys.argv[1]))
print(json.dumps({"records": n["good"], "quarantined": n["bad"], "quarantined_by_reason": {}}))
"""


def run(rows: int, runaway: bool, reader_only: bool = False) -> dict:
    """Ingest one generated file in a fresh home through the CLI (or only read it with ``read_source``);
    return counts and that child's peak RSS."""
    tmp = Path(tempfile.mkdtemp(prefix="ciyuan-bench-csv-"))
    try:
        src = tmp / "runaway.csv"
        size = generate(src, rows, runaway)
        env = dict(os.environ, CIYUAN_HOME=str(tmp / "home"))
        env.pop("CIYUAN_DATABASE_URL", None)
        env.pop("CIYUAN_STORAGE_URL", None)
        with (tmp / "out").open("w+") as out_f, (tmp / "err").open("w+") as err_f:
            cmd = ([sys.executable, "-c", READER, str(src)] if reader_only else
                   [sys.executable, "-m", "ciyuan.cli.main", "ingest", str(src), "--dataset", "runaway", "--json"])
            child = subprocess.Popen(cmd, env=env, stdout=out_f, stderr=err_f)
            _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not the max over all
            child.returncode = os.waitstatus_to_exitcode(status)
            out_f.seek(0)
            err_f.seek(0)
            stdout, stderr = out_f.read(), err_f.read()
        if child.returncode != 0:
            sys.exit(f"ingest failed: {stderr[-3000:]}\n{stdout[-3000:]}")
        out = json.loads(stdout)
        return {
            "input_bytes": size,
            "good_rows_in_input": rows + (0 if runaway else 1),
            "records": out["records"],
            "quarantined": out["quarantined"],
            "quarantined_by_reason": out["quarantined_by_reason"],
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    res = {
        "ingest, control (quote closed)": run(args.rows, False),
        "ingest, runaway quote": run(args.rows, True),
        "read_source only, control": run(args.rows, False, True),
        "read_source only, runaway": run(args.rows, True, True),
    }
    print(json.dumps(res, indent=2) if args.json else "\n".join(f"{k}: {v}" for k, v in res.items()))


if __name__ == "__main__":
    main()
