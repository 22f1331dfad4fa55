"""A curated version of robot episodes out as LeRobot v3.0 and v2.1: ingest -> ``curate --recipe
robot-episodes`` (idle runs trimmed, a repeated demonstration and a too-short episode dropped) ->
export -> ingest again with nothing quarantined. Each exported video holds exactly the kept frames (the
kept ranges of a trimmed episode cut and joined: remuxed when every range starts on a keyframe,
re-encoded otherwise and said so), as many as its data table, the global index runs on without gaps,
and the stats are those of the curated frames."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest
from clihelp import cli
from episode_gen import CAM, lerobot_v21, lerobot_v30
from typer.testing import CliRunner

from ciyuan.ingest.readers.episode import feature_stats, read_table

runner = CliRunner()
FPS = 10.0
# episode 0 idle at frames 0-15 and 25-35, episode 2 at 20-30 (every kept range starts on a multiple
# of 5, in a shared v3.0 file too), episode 3 repeats episode 1, episode 4 is under a second long
LENGTHS = (50, 25, 40, 25, 8)
DEFECTS = {"idle": {0: [(0, 15), (25, 35)], 2: [(20, 30)]}, "copy_of": {3: 1}}
KEPT = {0: [(15, 25), (35, 50)], 1: [(0, 25)], 2: [(0, 20), (30, 40)]}  # source episode -> its frames kept
SIZES = [25, 25, 30]


def packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def decoded(path: Path, t0: float = 0.0, t1: float = float("inf")) -> int:
    half = 0.5 / FPS
    with av.open(str(path)) as c:
        return sum(1 for f in c.decode(video=0) if t0 - half <= float(f.time) < t1 - half)


def curated(tmp_path: Path, source: str, gop: int | None) -> str:
    make = lerobot_v21 if source == "v2.1" else lerobot_v30
    src = make(tmp_path / "src", lengths=LENGTHS, defects=DEFECTS, gop=gop)
    assert cli("ingest", str(src), "--dataset", "a")["quarantined"] == 0
    out = cli("curate", "a", "--recipe", "robot-episodes", "--workers", "1")
    trim = next(s for s in out["steps"] if s["step"] == "episode_idle_trim")
    assert trim["counters"]["episodes_trimmed"] == 2
    return f"a@{out['version'][:12]}"


def source_packets(tmp_path: Path, source: str, ep: int) -> list[bytes]:
    if source == "v2.1":
        return packets(tmp_path / "src" / f"videos/chunk-000/{CAM}/episode_{ep:06d}.mp4")
    start = sum(LENGTHS[:ep])
    return packets(tmp_path / "src" / f"videos/{CAM}/chunk-000/file-000.mp4")[start:start + LENGTHS[ep]]


def check_reads_back(out: Path, name: str) -> None:
    res = cli("ingest", str(out), "--dataset", name)
    assert (res["records"], res["quarantined"]) == (3, 0), res
    assert cli("show", name, "--quarantine", "--limit", "10")["items"] == []


@pytest.mark.parametrize("source", ["v2.1", "v3.0"])
@pytest.mark.parametrize(("gop", "method"), [(5, "remux"), (None, "reencode")])
def test_curated_export_v21(home: Path, tmp_path: Path, source: str, gop: int | None, method: str) -> None:
    ref = curated(tmp_path, source, gop)
    out = tmp_path / "v21"
    res = cli("export", ref, "--format", "lerobot-v2.1", "--out", str(out))
    assert (res["episodes"], res["frames"]) == (3, sum(SIZES)) and res["renumbered"]
    start = 0
    for i, n in enumerate(SIZES):
        t = pq.read_table(out / f"data/chunk-000/episode_{i:06d}.parquet")
        assert t.num_rows == n
        assert t.column("index").to_pylist() == list(range(start, start + n))  # contiguous across episodes
        assert t.column("episode_index").to_pylist() == [i] * n
        assert t.column("frame_index").to_pylist() == list(range(n))
        video = out / f"videos/chunk-000/{CAM}/episode_{i:06d}.mp4"
        assert decoded(video) == n  # exactly the kept frames
        if method == "remux" or (i == 1 and source == "v2.1"):  # an untrimmed v2.1 episode: copied
            src = source_packets(tmp_path, source, i)
            assert packets(video) == [src[k] for a, b in KEPT[i] for k in range(a, b)]
        start += n
    trimmed = {(e["episode_index"], e["segments"]) for e in res["remuxed" if method == "remux" else "reencoded"]
               if e.get("trimmed")}
    assert trimmed == {(0, 2), (2, 2)}
    if source == "v2.1":
        assert res["videos_copied"] == 1 and res["videos_cut"] == 2
    note = json.loads((out / "meta" / "ciyuan_export.json").read_text())
    assert {e["episode_index"] for e in note["remuxed"] + note["reencoded"] if e.get("trimmed")} == {0, 2}
    stats = [json.loads(line)["stats"] for line in (out / "meta/episodes_stats.jsonl").read_text().splitlines()]
    for i, n in enumerate(SIZES):
        t = pq.read_table(out / f"data/chunk-000/episode_{i:06d}.parquet")
        for feat in ("observation.state", "action"):
            arr = np.asarray(t.column(feat).to_pylist(), np.float64)
            assert stats[i][feat]["count"] == [n]
            assert stats[i][feat]["mean"] == pytest.approx(arr.mean(0).tolist(), rel=1e-5, abs=1e-7)
            assert stats[i][feat]["min"] == pytest.approx(arr.min(0).tolist(), rel=1e-6, abs=1e-7)
    rows = [json.loads(line) for line in (out / "meta/episodes.jsonl").read_text().splitlines()]
    assert [r["length"] for r in rows] == SIZES
    info = json.loads((out / "meta/info.json").read_text())
    assert (info["total_episodes"], info["total_frames"], info["total_videos"]) == (3, sum(SIZES), 3)
    check_reads_back(out, "b")


@pytest.mark.parametrize("source", ["v2.1", "v3.0"])
def test_curated_export_v30(home: Path, tmp_path: Path, source: str) -> None:
    ref = curated(tmp_path, source, 5)
    out = tmp_path / "v30"
    res = cli("export", ref, "--format", "lerobot-v3.0", "--out", str(out))
    assert (res["episodes"], res["frames"], res["videos_cut"]) == (3, sum(SIZES), 2 if source == "v2.1" else 1)
    assert {e["episode_index"] for e in res["remuxed"]} == ({0, 2} if source == "v2.1" else {0, 1, 2})
    assert res["reencoded"] == []
    t = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert t.column("index").to_pylist() == list(range(sum(SIZES)))
    eps = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    held: dict[Path, list[int]] = {}
    for i, (row, n) in enumerate(zip(eps, SIZES, strict=True)):
        assert (row["length"], row["dataset_to_index"] - row["dataset_from_index"]) == (n, n)
        video = out / f"videos/{CAM}/chunk-{row[f'videos/{CAM}/chunk_index']:03d}/" \
                      f"file-{row[f'videos/{CAM}/file_index']:03d}.mp4"
        t0, t1 = row[f"videos/{CAM}/from_timestamp"], row[f"videos/{CAM}/to_timestamp"]
        assert decoded(video, t0, t1) == n, i
        held.setdefault(video, []).append(i)
        mean = np.asarray(t.slice(row["dataset_from_index"], n).column("action").to_pylist(), np.float64).mean(0)
        assert row["stats/action/mean"] == pytest.approx(mean.tolist(), rel=1e-5, abs=1e-7)
    # each file holds its episodes' kept frames and nothing else (a v3.0 source's shared file is cut to
    # the three kept episodes, the repeat and the short one left out), packet for packet the source's
    assert len(held) == (3 if source == "v2.1" else 1)
    for video, members in held.items():
        assert decoded(video) == sum(SIZES[i] for i in members)
        want = []
        for i in members:
            src = source_packets(tmp_path, source, i)
            want += [pkt for a, b in KEPT[i] for pkt in src[a:b]]
        assert packets(video) == want
    stats = json.loads((out / "meta/stats.json").read_text())
    allact = np.asarray(t.column("action").to_pylist(), np.float64)
    assert stats["action"]["count"] == [sum(SIZES)]
    assert stats["action"]["mean"] == pytest.approx(allact.mean(0).tolist(), rel=1e-5, abs=1e-7)
    assert stats["action"]["std"] == pytest.approx(allact.std(0).tolist(), rel=1e-4, abs=1e-6)
    check_reads_back(out, "b")
    # and once more through the other format: what came back exports again, unchanged in frames
    back = tmp_path / "back"
    res2 = cli("export", "b", "--format", "lerobot-v2.1", "--out", str(back))
    assert res2["frames"] == sum(SIZES)
    check_reads_back(back, "c")


def test_ingested_export_matches_curated_records(home: Path, tmp_path: Path) -> None:
    """The re-imported episodes carry the curated frames: same tables but for position columns."""
    from ciyuan.store import resolve

    ref = curated(tmp_path, "v2.1", None)
    out = tmp_path / "v21"
    cli("export", ref, "--format", "lerobot-v2.1", "--out", str(out))
    check_reads_back(out, "b")
    cur = sorted((r for r in resolve(ref).iter_records(resolve_media=True)),
                 key=lambda r: r["meta"]["episode"]["episode_index"])
    back = sorted((r for r in resolve("b").iter_records(resolve_media=True)),
                  key=lambda r: r["meta"]["episode"]["episode_index"])
    for a, b in zip(cur, back, strict=True):
        ta, tb = read_table(a["media"]), read_table(b["media"])
        for col in ("observation.state", "action", "frame_index", "timestamp"):
            assert ta.column(col).to_pylist() == tb.column(col).to_pylist()
        eb = b["meta"]["episode"]
        assert eb["stats"]["action"] == json.loads(json.dumps(feature_stats(tb, eb["features"])))["action"]


def test_normalised_task_text_goes_out(home: Path, tmp_path: Path) -> None:
    src = lerobot_v21(tmp_path / "src", lengths=(12, 12))
    for meta in ("tasks.jsonl", "episodes.jsonl"):
        path = src / "meta" / meta
        path.write_text(path.read_text().replace("pick up the red cube", "Pick up  the red cube."))
    cli("ingest", str(src), "--dataset", "a")
    out = cli("curate", "a", "--steps", "episode_task_text", "--workers", "1")
    dest = tmp_path / "v21"
    cli("export", f"a@{out['version'][:12]}", "--format", "lerobot-v2.1", "--out", str(dest))
    got = [json.loads(line) for line in (dest / "meta/tasks.jsonl").read_text().splitlines()]
    assert got == [{"task_index": 0, "task": "pick up the red cube"},
                   {"task_index": 1, "task": "push the block to the left"}]
    assert json.loads((dest / "meta/episodes.jsonl").read_text().splitlines()[0])["tasks"] == ["pick up the red cube"]
