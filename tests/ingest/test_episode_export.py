"""Robot episodes out as LeRobot v3.0 and v2.1 folders: the round trip v2.1 -> v3.0 -> v2.1 gives back
every file, feature and stat; the videos are the stored bytes (a shared v3.0 file cut into v2.1
episodes is remuxed on keyframes, re-encoded only when it must be, and the export says so)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import pyarrow.parquet as pq
import pytest
from clihelp import cli
from episode_gen import CAM, lerobot_v21, lerobot_v30
from typer.testing import CliRunner

runner = CliRunner()


def files(root: Path) -> dict[str, Path]:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def test_round_trip_v21_v30_v21(home: Path, tmp_path: Path) -> None:
    src = lerobot_v21(tmp_path / "src", lengths=(30, 24, 20))
    assert cli("ingest", str(src), "--dataset", "a")["records"] == 3
    v3 = tmp_path / "v3"
    res = cli("export", "a", "--format", "lerobot-v3.0", "--out", str(v3))
    assert (res["episodes"], res["frames"], res["videos_copied"], res["reencoded"]) == (3, 74, 3, [])
    info3 = json.loads((v3 / "meta" / "info.json").read_text())
    assert info3["codebase_version"] == "v3.0" and info3["total_frames"] == 74
    assert cli("ingest", str(v3), "--dataset", "b")["records"] == 3
    assert cli("show", "b", "--quarantine", "--limit", "10")["items"] == []
    back = tmp_path / "back"
    cli("export", "b", "--format", "lerobot-v2.1", "--out", str(back))

    a, b = files(src), files(back)
    assert sorted(a) == sorted(b)  # every file, no more
    assert json.loads(a["meta/info.json"].read_text()) == json.loads(b["meta/info.json"].read_text())
    for meta in ("meta/episodes.jsonl", "meta/tasks.jsonl", "meta/episodes_stats.jsonl"):
        assert jsonl(a[meta]) == jsonl(b[meta]), meta  # every stat, exactly
    for rel in a:
        if rel.endswith(".parquet"):
            assert pq.read_table(a[rel]).equals(pq.read_table(b[rel]), check_metadata=True), rel
        elif rel.endswith(".mp4"):
            assert sha(a[rel]) == sha(b[rel]), rel  # the original bytes, never re-encoded


def test_v30_stats_and_shared_video_kept_whole(home: Path, tmp_path: Path) -> None:
    src = lerobot_v30(tmp_path / "src", lengths=(30, 24, 20))
    cli("ingest", str(src), "--dataset", "a")
    out = tmp_path / "out"
    assert cli("export", "a", "--format", "lerobot-v3.0", "--out", str(out))["videos_copied"] == 1
    video = f"videos/{CAM}/chunk-000/file-000.mp4"
    assert sha(src / video) == sha(out / video)  # one file shared by all episodes, copied once
    ours, theirs = (json.loads((r / "meta" / "stats.json").read_text()) for r in (out, src))
    for feat, st in theirs.items():
        for k in ("min", "max", "mean", "std"):
            assert st[k] == pytest.approx(ours[feat][k], rel=1e-6, abs=1e-9), (feat, k)
    a = pq.read_table(src / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    b = pq.read_table(out / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [sorted(r) for r in a] == [sorted(r) for r in b] and a == [{k: r[k] for k in x} for x, r in zip(a, b,
                                                                                                       strict=True)]
    assert pq.read_table(src / "data/chunk-000/file-000.parquet").equals(pq.read_table(out / "data/chunk-000/"
                                                                                       "file-000.parquet"))


@pytest.mark.parametrize(("gop", "method"), [(6, "remux"), (None, "reencode")])
def test_v30_to_v21_cuts_the_shared_video(home: Path, tmp_path: Path, gop: int | None, method: str) -> None:
    """Episodes start at frames 0, 30, 54: a keyframe every 6 frames lets every cut be a remux; with
    x264's defaults (a keyframe in 250, and at scene cuts) an episode that starts between keyframes
    is re-encoded, said so in the note."""
    src = lerobot_v30(tmp_path / "src", lengths=(30, 24, 20), gop=gop)
    cli("ingest", str(src), "--dataset", "a")
    out = tmp_path / "out"
    res = cli("export", "a", "--format", "lerobot-v2.1", "--out", str(out))
    for ep, n in enumerate((30, 24, 20)):
        assert frames(out / f"videos/chunk-000/{CAM}/episode_{ep:06d}.mp4") == n
    with av.open(str(src / f"videos/{CAM}/chunk-000/file-000.mp4")) as c:
        keyframes = {i for i, p in enumerate(p for p in c.demux(video=0) if p.size) if p.is_keyframe}
    on_key = {ep for ep, first in enumerate((0, 30, 54)) if first in keyframes}
    assert {e["episode_index"] for e in res["remuxed"]} == on_key
    assert {e["episode_index"] for e in res["reencoded"]} == {0, 1, 2} - on_key
    assert (on_key == {0, 1, 2}) == (method == "remux")
    note = out / "meta" / "ciyuan_export.json"
    assert note.exists() == (method == "reencode")
    if method == "remux":  # each packet's bytes are the source's
        with av.open(str(src / f"videos/{CAM}/chunk-000/file-000.mp4")) as c:
            packets = [bytes(p) for p in c.demux(video=0) if p.size]
        with av.open(str(out / f"videos/chunk-000/{CAM}/episode_000001.mp4")) as c:
            assert [bytes(p) for p in c.demux(video=0) if p.size] == packets[30:54]
    assert cli("ingest", str(out), "--dataset", "b")["records"] == 3  # and it reads back clean
    assert cli("show", "b", "--quarantine", "--limit", "10")["items"] == []


def test_subset_is_renumbered(home: Path, tmp_path: Path) -> None:
    """A version without episode 0 (quarantined: a NaN) exports as episodes 0..1 with a contiguous index."""
    src = lerobot_v21(tmp_path / "src", lengths=(12, 10, 8), defects={"nan": 0})
    cli("ingest", str(src), "--dataset", "a")
    out = tmp_path / "out"
    res = cli("export", "a", "--format", "lerobot-v3.0", "--out", str(out))
    assert res["episodes"] == 2 and res["renumbered"]
    t = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert t.column("index").to_pylist() == list(range(18))
    assert sorted(set(t.column("episode_index").to_pylist())) == [0, 1]
    assert cli("ingest", str(out), "--dataset", "b")["records"] == 2


def test_export_refuses_a_full_folder(home: Path, tmp_path: Path) -> None:
    """(HDF5 demos were refused too before lerobot_adopt: tests/ingest/test_export_adopted.py.)"""
    src = lerobot_v21(tmp_path / "src", lengths=(5,))
    cli("ingest", str(src), "--dataset", "a")
    cli("export", "a", "--format", "lerobot-v2.1", "--out", str(src), code=2)
