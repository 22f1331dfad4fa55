"""Stats after curation, checked from outside: a LeRobot folder with idle runs is imported, trimmed by
``robot-episodes``, exported, and every stat the export wrote (v2.1 ``meta/episodes_stats.jsonl``,
v3.0 the ``stats/<feature>/<stat>`` columns of ``meta/episodes`` and ``meta/stats.json``) is compared
with one computed here with pyarrow and numpy from the exported Parquet files alone. Camera features
are left out: their image stats are the provider's (docs/ingest.md, "Export")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clihelp import cli
from episode_gen import lerobot_v21, lerobot_v30

LENGTHS = (50, 25, 40)
DEFECTS = {"idle": {0: [(0, 15), (25, 35)], 2: [(20, 30)]}}
KEPT = [25, 25, 30]


def numeric(info: dict) -> list[str]:
    return [k for k, v in info["features"].items() if v.get("dtype") not in ("video", "image", "string")]


def recompute(table: pa.Table, name: str) -> dict:
    """min, max, mean, std (population, as LeRobot) and count of one column over ``table``'s rows."""
    arr = np.asarray(table.column(name).to_pylist(), np.float64).reshape(table.num_rows, -1)
    return {"min": arr.min(0), "max": arr.max(0), "mean": arr.mean(0), "std": arr.std(0), "count": [len(arr)]}


def same(got: dict, want: dict, where: str) -> None:
    assert set(want) <= set(got), (where, sorted(got))
    for k, v in want.items():
        assert np.asarray(got[k], np.float64).reshape(-1) == pytest.approx(np.asarray(v).reshape(-1), rel=1e-6,
                                                                              abs=1e-9), (where, k)


def trimmed(tmp_path: Path, source: str) -> str:
    make = lerobot_v21 if source == "v2.1" else lerobot_v30
    src = make(tmp_path / "src", lengths=LENGTHS, defects=DEFECTS)
    assert cli("ingest", str(src), "--dataset", "a")["quarantined"] == 0
    out = cli("curate", "a", "--recipe", "robot-episodes", "--workers", "1")
    trim = next(s for s in out["steps"] if s["step"] == "episode_idle_trim")
    assert trim["counters"]["episodes_trimmed"] == 2
    return f"a@{out['version'][:12]}"


@pytest.mark.parametrize("source", ["v2.1", "v3.0"])
def test_v21_episode_stats_are_the_exported_frames(home: Path, tmp_path: Path, source: str) -> None:
    out = tmp_path / "v21"
    cli("export", trimmed(tmp_path, source), "--format", "lerobot-v2.1", "--out", str(out))
    info = json.loads((out / "meta/info.json").read_text())
    rows = [json.loads(line) for line in (out / "meta/episodes_stats.jsonl").read_text().splitlines()]
    assert [r["episode_index"] for r in rows] == [0, 1, 2]
    for r, n in zip(rows, KEPT, strict=True):
        table = pq.read_table(out / f"data/chunk-000/episode_{r['episode_index']:06d}.parquet")
        assert table.num_rows == n
        for name in numeric(info):
            same(r["stats"][name], recompute(table, name), f"episode {r['episode_index']} {name}")


@pytest.mark.parametrize("source", ["v2.1", "v3.0"])
def test_v30_stats_are_the_exported_frames(home: Path, tmp_path: Path, source: str) -> None:
    out = tmp_path / "v30"
    cli("export", trimmed(tmp_path, source), "--format", "lerobot-v3.0", "--out", str(out))
    info = json.loads((out / "meta/info.json").read_text())
    data = pa.concat_tables(pq.read_table(p) for p in sorted((out / "data").rglob("*.parquet")))
    assert data.num_rows == sum(KEPT) == info["total_frames"]
    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    for row in eps:
        part = data.slice(row["dataset_from_index"], row["dataset_to_index"] - row["dataset_from_index"])
        assert set(part.column("episode_index").to_pylist()) == {row["episode_index"]}
        for name in numeric(info):
            got = {k: row[f"stats/{name}/{k}"] for k in ("min", "max", "mean", "std", "count")}
            same(got, recompute(part, name), f"episode {row['episode_index']} {name}")
    stats = json.loads((out / "meta/stats.json").read_text())
    for name in numeric(info):
        same(stats[name], recompute(data, name), f"stats.json {name}")
