"""A version of robot episodes out as a LeRobot v3.0 or v2.1 folder that LeRobot's own loader reads.

What the reader kept of the source (``meta.lerobot``: ``info.json`` less the counts, the episode row
less where its rows are, its declared stats, its task names) is written back verbatim, so a LeRobot
folder converts v2.1 <-> v3.0 without losing a file, a feature or a stat (docs/ingest.md "Export").
The camera videos are the stored blobs, copied byte for byte, except where the file holds more than the
episode: a v3.0 file of many episodes going to v2.1's one file per episode, and an episode curation
trimmed (``meta.episode.cameras[cam].segments``: the kept ranges of the original file), which goes out
as a file of exactly its kept frames in either format. There ``video_cut`` copies the packets of each
range (remux) when it starts on a keyframe and re-encodes otherwise, and the export says which in its
result and in ``meta/ciyuan_export.json``. Curated stats (``stats_recomputed_by: curation``) replace
the declared ones of the features they cover, and normalised task texts the declared ones.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ciyuan.errors import InvalidInput
from ciyuan.store.blobs import digest_of
from ciyuan.store.versions import Version

FORMATS = {"lerobot-v3.0": "v3.0", "lerobot-v2.1": "v2.1"}
V21_DATA = "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet"
V21_VIDEO = "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4"
V30_DATA = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
V30_VIDEO = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
_LAYOUT = ("codebase_version", "data_path", "video_path", "data_files_size_in_mb", "video_files_size_in_mb",
           "chunks_size", "total_chunks", "total_videos")
BASIC = ("min", "max", "mean", "std", "count")


class _Episode:
    """One record: its facts, what the source declared, and its frame table."""

    def __init__(self, rec: dict):
        meta = rec.get("meta") or {}
        self.facts: dict = meta.get("episode") or {}
        self.declared: dict | None = meta.get("lerobot")
        before, now = (meta.get("curation") or {}).get("tasks_before"), self.facts.get("tasks")
        if self.declared and before and now is not None and len(before) == len(now):  # task texts normalised
            rename = dict(zip(before, now, strict=True))
            self.declared = {**self.declared, "tasks": {i: rename.get(t, t) for i, t in
                                                        (self.declared.get("tasks") or {}).items()}}
        self.attachments: dict = meta.get("attachments") or {}
        self.id = rec.get("id")
        self.media = rec["media"]
        self.adopted = False
        if self.declared is None and self.facts.get("fps"):  # HDF5 demos, RLDS: made LeRobot-shaped
            from ciyuan.store import lerobot_adopt as adopt

            self.declared = adopt.declared_for(self.facts, self._read())
            self.facts = adopt.adopted_facts(self.facts)
            self.attachments = {adopt.safe_name(k): v for k, v in self.attachments.items()}
            self.adopted = True

    def _read(self) -> pa.Table:
        return pa.ipc.open_stream(pa.BufferReader(self.media)).read_all()

    def table(self) -> pa.Table:
        if self.adopted:
            from ciyuan.store.lerobot_adopt import table_for_lerobot

            return table_for_lerobot(self._read())
        return self._read()

    def stats(self, table: pa.Table, rewritten: set[str]) -> dict:
        """The declared stats (verbatim), ours for the features they lacked or that were repaired, and
        stats of the ``rewritten`` columns (renumbered here) from ``table``."""
        declared = dict((self.declared or {}).get("stats") or {})
        ours = dict(self.facts.get("stats") or {})
        if self.adopted:  # every stat is ours: of the exported table, the added columns too
            rewritten = {n for n in table.column_names if n not in (self.facts.get("cameras") or {})}
        stale = [*(self.facts.get("stats_recomputed") or []), *rewritten]
        if self.facts.get("stats_recomputed_by") == "curation":  # the frames changed: ours are the true ones
            stale += list(ours)
        for name in stale:
            declared.pop(name, None)
        for name in rewritten:
            arr = np.asarray(table.column(name).to_pylist(), np.float64).reshape(table.num_rows, -1)
            ours[name] = {"min": arr.min(0).tolist(), "max": arr.max(0).tolist(), "mean": arr.mean(0).tolist(),
                          "std": arr.std(0).tolist(), "count": [table.num_rows]}
        return {k: ours[k] if k in rewritten else v for k, v in declared.items()} | \
            {k: v for k, v in ours.items() if k not in declared}


def _episodes(version: Version) -> list[_Episode]:
    eps = []
    for rec in version.iter_records(resolve_media=True):
        if rec.get("modality") != "episode":
            continue
        ep = _Episode(rec)
        if ep.declared is None:
            raise InvalidInput(f"record {ep.id} of {version.ref} has no meta.lerobot and no measured fps",
                               hint="ingest the source again (LeRobot, HDF5 demos or RLDS) and export that version")
        eps.append(ep)
    if not eps:
        raise InvalidInput(f"{version.ref} holds no episode records", hint="ingest a LeRobot folder first")
    return sorted(eps, key=lambda e: int(e.facts.get("episode_index", 0)))


def _tasks(eps: list[_Episode]) -> tuple[dict[int, str], dict[int, int] | None]:
    """The task table, and a renumbering of ``task_index`` when episodes disagree about an index."""
    seen: dict[int, str] = {}
    for ep in eps:
        for i, text in (ep.declared.get("tasks") or {}).items():
            if seen.setdefault(int(i), text) != text:
                break
        else:
            continue
        names: dict[str, int] = {}
        for e in eps:
            for text in (e.declared.get("tasks") or {}).values():
                names.setdefault(text, len(names))
        return {i: t for t, i in names.items()}, {}
    return dict(sorted(seen.items())), None


def _set(table: pa.Table, name: str, values: np.ndarray) -> pa.Table:
    i = table.column_names.index(name)
    field = table.schema.field(i)
    return table.set_column(i, field, pa.array(values.astype(field.type.to_pandas_dtype()), type=field.type))


def _renumber(ep: _Episode, table: pa.Table, new_index: int, start: int, task_map: dict | None,
              tasks: dict[int, str]) -> tuple[pa.Table, set[str]]:
    """``episode_index``/``index`` (and ``task_index``) rewritten when a subset or a merge needs it;
    the names of the columns rewritten."""
    n = table.num_rows
    changed: set[str] = set()
    if "episode_index" in table.column_names and \
            (np.asarray(table.column("episode_index").to_numpy()) != new_index).any():
        table = _set(table, "episode_index", np.full(n, new_index))
        changed.add("episode_index")
    if "index" in table.column_names and \
            (np.asarray(table.column("index").to_numpy()) != start + np.arange(n)).any():
        table = _set(table, "index", start + np.arange(n))
        changed.add("index")
    if task_map is not None and "task_index" in table.column_names:
        by_text = {t: i for i, t in tasks.items()}
        old = {int(k): v for k, v in (ep.declared.get("tasks") or {}).items()}
        col = np.asarray([by_text[old[int(x)]] for x in table.column("task_index").to_pylist()])
        table = _set(table, "task_index", col)
        changed.add("task_index")
    return table, changed


def aggregate(stats: list[dict]) -> dict:
    """Dataset stats from per-episode stats, as LeRobot aggregates them: min of mins, max of maxes,
    count-weighted mean, pooled std; any other stat (quantiles) as a count-weighted mean."""
    out: dict = {}
    names = list(dict.fromkeys(k for s in stats for k in s))
    for name in names:
        items = [s[name] for s in stats if name in s and all(k in s[name] for k in BASIC)]
        if not items:
            continue
        cnt = np.array([float(np.asarray(s["count"]).reshape(-1)[0]) for s in items])
        w = cnt.reshape(-1, *([1] * np.asarray(items[0]["mean"]).ndim))
        means = np.stack([np.asarray(s["mean"], np.float64) for s in items])
        stds = np.stack([np.asarray(s["std"], np.float64) for s in items])
        total = cnt.sum()
        mean = (w * means).sum(0) / total
        var = (w * (stds ** 2 + (means - mean) ** 2)).sum(0) / total
        agg = {"min": np.min(np.stack([np.asarray(s["min"], np.float64) for s in items]), 0).tolist(),
               "max": np.max(np.stack([np.asarray(s["max"], np.float64) for s in items]), 0).tolist(),
               "mean": mean.tolist(), "std": np.sqrt(var).tolist(), "count": [int(total)]}
        for k in items[0]:
            if k not in agg and all(k in s for s in items):
                agg[k] = ((w * np.stack([np.asarray(s[k], np.float64) for s in items])).sum(0) / total).tolist()
        out[name] = agg
    return out


def _info(eps: list[_Episode], fmt: str, counts: dict, layout: dict) -> dict:
    base = {k: v for k, v in eps[0].declared["info"].items() if k not in _LAYOUT}
    head = {"codebase_version": fmt, "robot_type": base.pop("robot_type", eps[0].facts.get("robot_type")),
            **counts, **layout, "fps": base.pop("fps", eps[0].facts.get("fps")),
            "splits": {"train": f"0:{counts['total_episodes']}"}}
    return {**head, **{k: v for k, v in base.items() if k not in head}}


def _video_keys(eps: list[_Episode]) -> list[str]:
    feats = eps[0].declared["info"].get("features") or {}
    return [k for k, v in feats.items() if isinstance(v, dict) and v.get("dtype") == "video"]


def _copy_blob(version: Version, ref: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with version.blobs().open(digest_of(ref)) as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def _segments(facts: dict) -> list[tuple[float, float]] | None:
    """The ranges of a camera's file the episode's frames are (file time), or ``None`` when the whole
    file is the episode's (copied as it is)."""
    if facts.get("segments"):
        return [(float(a), float(b)) for a, b in facts["segments"]]
    if facts.get("whole_file", True) or facts.get("to_s") is None:
        return None
    return [(float(facts.get("from_s") or 0.0), float(facts["to_s"]))]


def _cut(version: Version, ep: _Episode, i: int, cam: str, segs: list, target: Path, note: dict,
         rows: int) -> dict:
    """The episode's frames of ``cam`` (``segs`` of its file) as a file of their own, as many as the
    episode's ``rows``; noted."""
    from ciyuan.store.video_cut import cut_segments

    target.parent.mkdir(parents=True, exist_ok=True)
    with version.blobs().open(digest_of(ep.attachments[cam]["media_ref"])) as src:
        got = cut_segments(src, segs, str(target), float(ep.facts["fps"]))
    if got["frames"] != rows:
        raise InvalidInput(f"episode {i}: {got['frames']} frames of {cam!r} cut from {segs}, the table has {rows}",
                           hint="the camera's recorded ranges disagree with the frame table; re-ingest and curate")
    trimmed = bool(((ep.facts.get("cameras") or {}).get(cam) or {}).get("segments"))
    entry = {"episode_index": i, "camera": cam, "frames": got["frames"], "segments": len(segs)}
    if trimmed:
        entry["trimmed"] = True
    if got["method"] == "remux":
        note["remuxed"].append(entry)
    else:
        why = ("a kept range of the trimmed episode does not start on a keyframe" if trimmed
               else "the episode does not start on a keyframe of the shared v3.0 file")
        note["reencoded"].append({**entry, "codec": got["codec"], "why": why})
    return got


def _encode(version: Version, ep: _Episode, i: int, cam: str, target: Path, note: dict, rows: int) -> None:
    """An image-array camera as an MP4 of the episode's (kept) frames; noted, since it is lossy."""
    from ciyuan.store import lerobot_adopt as adopt

    facts = (ep.facts.get("cameras") or {}).get(cam) or {}
    with version.blobs().open(digest_of(ep.attachments[cam]["media_ref"])) as src:
        data = src.read()
    frames = adopt.array_frames(data, facts, adopt.stored_frames(ep.facts, facts), facts.get("frames_kept"))
    if len(frames) != rows:
        raise InvalidInput(f"episode {i}: {len(frames)} frames of {cam!r}, the table has {rows}",
                           hint="the camera's frame count disagrees with the frame table; re-ingest the source")
    target.parent.mkdir(parents=True, exist_ok=True)
    got = adopt.encode(frames, float(ep.facts["fps"]), str(target))
    note["encoded"].append({"episode_index": i, "camera": cam, "frames": got["frames"], "from": facts.get("codec"),
                            "codec": got["codec"], "why": "an image array: LeRobot keeps cameras as MP4 video"})


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=4, ensure_ascii=False) + "\n", encoding="utf-8")


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def export_lerobot(version: Version, fmt: str, out: str) -> dict:
    """Write ``version``'s episodes as a LeRobot folder (``fmt``: ``lerobot-v3.0`` or ``lerobot-v2.1``)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown LeRobot format {fmt!r}", hint="use lerobot-v3.0 or lerobot-v2.1")
    root = Path(out)
    if root.exists() and any(root.iterdir()):
        raise InvalidInput(f"{root} is not empty", hint="give a new or empty folder")
    eps = _episodes(version)
    tasks, task_map = _tasks(eps)
    cams = _video_keys(eps)
    for ep in eps:
        for cam in cams:
            if cam not in ep.attachments:
                raise InvalidInput(f"episode {ep.facts.get('episode_index')} has no {cam!r} video",
                                   hint="every episode of a LeRobot folder has every camera")
    note = {"renumbered": False, "task_index_renumbered": task_map is not None, "reencoded": [], "remuxed": [],
            "encoded": []}
    write = _write_v30 if fmt == "lerobot-v3.0" else _write_v21
    res = write(version, eps, tasks, task_map, cams, root, note)
    if note["renumbered"] or note["reencoded"] or note["task_index_renumbered"] or note["encoded"] or \
            any(e.get("trimmed") for e in note["remuxed"]):
        _write_json(root / "meta" / "ciyuan_export.json", {"from": version.ref, **note})
    return {"dataset": version.dataset, "version": version.id, "format": fmt, "out": str(root), **res,
            **note}


def _prepared(eps: list[_Episode], tasks: dict, task_map: dict | None, note: dict):
    """Each episode with its new index, first global index and (renumbered where needed) table."""
    start = 0
    for i, ep in enumerate(eps):
        table, changed = _renumber(ep, ep.table(), i, start, task_map, tasks)
        note["renumbered"] |= bool(changed - {"task_index"})
        yield i, start, ep, table, changed
        start += table.num_rows


def _row_tasks(ep: _Episode, table: pa.Table, tasks: dict) -> list[str]:
    if "task_index" in table.column_names:
        used = dict.fromkeys(int(x) for x in table.column("task_index").to_pylist())
        return [tasks[i] for i in used if i in tasks]
    return list(ep.facts.get("tasks") or [])


def _write_v21(version, eps, tasks, task_map, cams, root: Path, note: dict) -> dict:
    chunks = int(eps[0].declared["info"].get("chunks_size") or 1000)
    rows, stats_rows, frames, copied = [], [], 0, 0
    for i, _start, ep, table, changed in _prepared(eps, tasks, task_map, note):
        chunk = i // chunks
        path = root / V21_DATA.format(episode_chunk=chunk, episode_index=i)
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)
        frames += table.num_rows
        for cam in cams:
            target = root / V21_VIDEO.format(episode_chunk=chunk, video_key=cam, episode_index=i)
            segs = _segments((ep.facts.get("cameras") or {}).get(cam) or {})
            if ep.adopted:
                _encode(version, ep, i, cam, target, note, table.num_rows)
            elif segs is None:  # the file is this episode's, every frame of it
                _copy_blob(version, ep.attachments[cam]["media_ref"], target)
                copied += 1
            else:
                _cut(version, ep, i, cam, segs, target, note, table.num_rows)
        rows.append({"episode_index": i, "tasks": _row_tasks(ep, table, tasks), "length": table.num_rows,
                     **ep.declared.get("episode", {})})
        stats_rows.append({"episode_index": i, "stats": ep.stats(table, changed)})
    counts = {"total_episodes": len(eps), "total_frames": frames, "total_tasks": len(tasks),
              "total_videos": len(eps) * len(cams), "total_chunks": -(-len(eps) // chunks)}
    _write_json(root / "meta" / "info.json",
                _info(eps, "v2.1", counts, {"chunks_size": chunks, "data_path": V21_DATA,
                                            "video_path": V21_VIDEO if cams else None}))
    _jsonl(root / "meta" / "episodes.jsonl", rows)
    _jsonl(root / "meta" / "episodes_stats.jsonl", stats_rows)
    _jsonl(root / "meta" / "tasks.jsonl", [{"task_index": i, "task": t} for i, t in tasks.items()])
    return {"episodes": len(eps), "frames": frames, "videos_copied": copied,
            "videos_cut": len(eps) * len(cams) - copied - len(note["encoded"])}


def _next(pos: tuple[int, int], chunks: int) -> tuple[int, int]:
    c, f = pos
    return (c + 1, 0) if f + 1 >= chunks else (c, f + 1)


def _write_v30(version, eps, tasks, task_map, cams, root: Path, note: dict) -> dict:
    import pandas as pd

    info = eps[0].declared["info"]
    chunks = int(info.get("chunks_size") or 1000)
    data_mb = info.get("data_files_size_in_mb") or 100
    video_mb = info.get("video_files_size_in_mb") or 500
    rows, all_stats, frames = [], [], 0
    writer: pq.ParquetWriter | None = None
    data_pos, written = (0, -1), 0
    video_pos = {cam: (0, -1) for cam in cams}
    video_of: dict[tuple[str, str], tuple[int, int]] = {}
    placed: dict[tuple[str, int, str], tuple[float, float]] = {}
    cut_files = 0
    try:
        for i, start, ep, table, changed in _prepared(eps, tasks, task_map, note):
            if writer is None or writer.schema != table.schema or written + table.nbytes > data_mb * 2 ** 20:
                if writer is not None:
                    writer.close()
                data_pos, written = _next(data_pos, chunks), 0
                path = root / V30_DATA.format(chunk_index=data_pos[0], file_index=data_pos[1])
                path.parent.mkdir(parents=True, exist_ok=True)
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table)
            written += table.nbytes
            frames += table.num_rows
            row = {"episode_index": i, "tasks": _row_tasks(ep, table, tasks), "length": table.num_rows,
                   "data/chunk_index": data_pos[0], "data/file_index": data_pos[1],
                   "dataset_from_index": start, "dataset_to_index": start + table.num_rows}
            for cam in cams:
                ref = ep.attachments[cam]["media_ref"]
                facts = (ep.facts.get("cameras") or {}).get(cam) or {}
                if (cam, ref) not in video_of:  # a file shared by episodes is written once
                    video_pos[cam] = _next(video_pos[cam], chunks)
                    video_of[(cam, ref)] = video_pos[cam]
                    target = root / V30_VIDEO.format(video_key=cam, chunk_index=video_pos[cam][0],
                                                     file_index=video_pos[cam][1])
                    if ep.adopted:
                        _encode(version, ep, i, cam, target, note, table.num_rows)
                        placed[(cam, i, ref)] = (0.0, table.num_rows / float(ep.facts["fps"]))
                    else:
                        placed.update(_v30_video(version, eps, cam, ref, target, note))
                        cut_files += any(k[0] == cam and k[2] == ref for k in placed)
                c, f = video_of[(cam, ref)]
                if (cam, i, ref) in placed:  # in a file cut to the exported episodes' frames
                    t0, t1 = placed[(cam, i, ref)]
                else:
                    t0 = float(facts.get("from_s") or 0.0)
                    t1 = facts.get("to_s")
                row.update({f"videos/{cam}/chunk_index": c, f"videos/{cam}/file_index": f,
                            f"videos/{cam}/from_timestamp": t0,
                            f"videos/{cam}/to_timestamp": float(t1) if t1 is not None
                            else t0 + table.num_rows / float(ep.facts["fps"])})
            row.update({"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0})
            stats = ep.stats(table, changed)
            all_stats.append(stats)
            for feat, st in stats.items():
                for k, v in st.items():
                    row[f"stats/{feat}/{k}"] = v
            rows.append({**row, **ep.declared.get("episode", {})})
    finally:
        if writer is not None:
            writer.close()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    path = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), path)
    pd.DataFrame({"task_index": list(tasks)}, index=list(tasks.values())).to_parquet(root / "meta" / "tasks.parquet")
    _write_json(root / "meta" / "stats.json", aggregate(all_stats))
    counts = {"total_episodes": len(eps), "total_frames": frames, "total_tasks": len(tasks)}
    layout = {"chunks_size": chunks, "data_files_size_in_mb": data_mb, "video_files_size_in_mb": video_mb,
              "data_path": V30_DATA, "video_path": V30_VIDEO if cams else None}
    _write_json(root / "meta" / "info.json", _info(eps, "v3.0", counts, layout))
    return {"episodes": len(eps), "frames": frames, "videos_copied": len(video_of) - len(note["encoded"]),
            "videos_cut": cut_files}


def _frames_in(version: Version, ref: str) -> int:
    import av

    with version.blobs().open(digest_of(ref)) as src, av.open(src) as c:
        return sum(1 for p in c.demux(video=0) if p.size)


def _v30_video(version: Version, eps: list[_Episode], cam: str, ref: str, target: Path,
               note: dict) -> dict[tuple[str, int, str], tuple[float, float]]:
    """Write ``cam``'s file ``ref`` for a v3.0 export: copied when the exported episodes are all of its
    frames; else cut to exactly their frames (a trimmed episode's kept ranges, a dropped episode's
    frames left out), one episode after the other. The new ``(from, to)`` timestamps of the episodes
    in a cut file, by ``(cam, new episode index, ref)``; empty when copied."""
    members = [(i, e) for i, e in enumerate(eps) if (e.attachments.get(cam) or {}).get("media_ref") == ref]
    facts = [((e.facts.get("cameras") or {}).get(cam) or {}) for _, e in members]
    segs = [_segments(f) for f in facts]
    lengths = [int(e.facts.get("length") or e.table().num_rows) for _, e in members]
    trimmed = [bool(f.get("segments")) for f in facts]
    if not any(trimmed) and (any(s is None for s in segs) or sum(lengths) == _frames_in(version, ref)):
        _copy_blob(version, ref, target)
        return {}
    from ciyuan.store.video_cut import cut_segments

    fps = float(members[0][1].facts["fps"])
    target.parent.mkdir(parents=True, exist_ok=True)
    with version.blobs().open(digest_of(ref)) as src:
        got = cut_segments(src, [r for s in segs for r in (s or [])], str(target), fps)
    if got["frames"] != sum(lengths):
        raise InvalidInput(f"{got['frames']} frames of {cam!r} cut for episodes {[i for i, _ in members]}, their "
                           f"tables have {sum(lengths)}",
                           hint="the camera's recorded ranges disagree with the frame tables; re-ingest and curate")
    out, at = {}, 0
    for (i, _), n, s, trim in zip(members, lengths, segs, trimmed, strict=True):
        out[(cam, i, ref)] = (at / fps, (at + n) / fps)
        at += n
        entry = {"episode_index": i, "camera": cam, "frames": n, "segments": len(s or [])}
        if trim:
            entry["trimmed"] = True
        if got["method"] == "remux":
            note["remuxed"].append(entry)
        else:
            why = "a kept range does not start on a keyframe of the file"
            note["reencoded"].append({**entry, "codec": got["codec"], "why": why})
    return out
