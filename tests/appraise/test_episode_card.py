"""The Croissant card of robot episodes: the frame table's fields with dtypes and shapes (Croissant's
isArray/arrayShape), the camera files as FileSets and FileObjects with ``encodingFormat`` video/mp4
and their sha256, valid by ``mlcroissant validate`` (beside the shards, as a local copy and as a
listing's public card). The episodes are a LeRobot v3.0 and a v2.1 folder made by the test
generator and imported with ``ciyuan ingest``."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "ingest"))

from episode_gen import CAM, hdf5_robomimic, lerobot_v21, lerobot_v30  # noqa: E402

from ciyuan.appraise import engine  # noqa: E402

EXE = Path(sys.executable).with_name("mlcroissant")


def _validate(path: Path) -> None:
    res = subprocess.run([str(EXE), "validate", "--jsonld", str(path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


def _ingest(src: Path, name: str):
    from ciyuan.ingest.run import ingest
    from ciyuan.store import resolve

    ingest([str(src)], name)
    return resolve(name)


def test_v30_card_describes_frames_and_one_shared_camera_file(home: Path, tmp_path: Path) -> None:
    root = lerobot_v30(tmp_path / "so100", lengths=(30, 24, 20))
    v = _ingest(root, "arm3")
    out = tmp_path / "card.json"
    card = engine.card(v.ref, out=str(out))
    frames = next(rs for rs in card["recordSet"] if rs["@id"] == "frames")
    f = {x["name"]: x for x in frames["field"]}
    assert f["action"]["dataType"] == "sc:Float" and (f["action"]["isArray"], f["action"]["arrayShape"]) == (True, "6")
    assert f["observation.state"]["arrayShape"] == "6" and "state" in f["observation.state"]["description"]
    assert f["frame_index"]["dataType"] == "sc:Integer" and "isArray" not in f["frame_index"]
    assert f["timestamp"]["dataType"] == "sc:Float"
    assert all(x["source"]["fileSet"] == {"@id": "episode-frame-tables"} for x in f.values())
    dist = {d["@id"]: d for d in card["distribution"]}
    assert dist["episode-frame-tables"]["encodingFormat"] == "application/vnd.apache.arrow.stream"
    assert dist["camera-0"]["@type"] == "cr:FileSet" and dist["camera-0"]["encodingFormat"] == "video/mp4"
    assert CAM in dist["camera-0"]["description"]
    videos = [d for d in card["distribution"] if d["@id"].startswith("video-")]
    raw = (root / "videos" / CAM / "chunk-000" / "file-000.mp4").read_bytes()
    assert len(videos) == 1  # one v3.0 file, shared by the three episodes: once
    assert videos[0]["sha256"] == hashlib.sha256(raw).hexdigest() and videos[0]["encodingFormat"] == "video/mp4"
    assert Path(videos[0]["contentUrl"]).read_bytes() == raw  # the local copy names the blob by path
    media = next(x for x in card["recordSet"][0]["field"] if x["name"] == "media")
    assert "Arrow IPC" in media["description"]
    assert card["ciyuan:episodes"]["episodes"] == 3 and card["ciyuan:episodes"]["frames"] == 74
    _validate(out)
    import mlcroissant as mlc

    from ciyuan.ingest.readers.episode import read_table

    rows = list(mlc.Dataset(str(out)).records("records"))  # the records still load, frame tables in media
    assert sorted(read_table(r["records/media"]).num_rows for r in rows) == [20, 24, 30]
    beside = Path(v.location) / "croissant.json"
    _validate(beside)
    import json

    rel = [d for d in json.loads(beside.read_text())["distribution"] if d["@id"].startswith("video-")][0]
    assert not Path(rel["contentUrl"]).is_absolute()
    assert (Path(v.location) / rel["contentUrl"]).resolve().read_bytes() == raw
    public = tmp_path / "public.json"
    pub = engine.card(v.ref, out=str(public), base_url="https://exchange.example/v1/listings/lst_x")
    assert not [d for d in pub["distribution"] if d["@id"].startswith("video-")]  # blobs come with the data
    assert any(d["@id"] == "camera-0" for d in pub["distribution"])
    _validate(public)


def test_v21_and_hdf5_cards_validate(home: Path, tmp_path: Path) -> None:
    v = _ingest(lerobot_v21(tmp_path / "a", lengths=(12, 10)), "arm2")
    out = tmp_path / "a.json"
    card = engine.card(v.ref, out=str(out))
    assert len([d for d in card["distribution"] if d["@id"].startswith("video-")]) == 2  # a file per episode
    _validate(out)
    h = _ingest(hdf5_robomimic(tmp_path / "r.hdf5", lengths=(12, 10)), "rm")
    out = tmp_path / "r.json"
    card = engine.card(h.ref, out=str(out))
    cams = [d for d in card["distribution"] if d["@id"].startswith("camera-")]
    assert cams and all(d["encodingFormat"] == "application/octet-stream" for d in cams)  # image arrays as stored
    _validate(out)
