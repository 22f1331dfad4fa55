"""Dedup scans write their scratch files batch by batch: the same files, the same decisions.

Why: a scan that kept a whole shard's signatures and keys until its end held O(shard rows) memory
(issue 12's memory target). The streaming writers must give byte-identical scratch files to the
whole-array writers (``Scratch.save``, ``save_partitioned``, ``save_ids``), and a curation run the
same version id whether the writers spill once (what the old code did) or every few entries.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
from corpus import boilerplate_pages, edit_copy, en_prose, near_dup_corpus, zh_prose

from ciyuan.curate import scratch
from ciyuan.curate.scratch import Scratch


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("spill", [16, 16 * 7, 1 << 30])
def test_partitioned_appender_writes_what_save_partitioned_writes(tmp_path, monkeypatch, spill):
    monkeypatch.setattr(scratch, "SPILL_BYTES", spill)
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 2**63, 1000, dtype=np.uint64)
    keys[::10] = keys[5]  # repeated keys keep their order of arrival inside a partition
    nodes = scratch.node(2, np.arange(1000))
    whole, streamed = Scratch(tmp_path / "whole"), Scratch(tmp_path / "streamed")
    whole.save_partitioned("band", 2, keys, nodes, 7)
    app = streamed.partitioned_appender("band", 2, 7)
    for lo in range(0, 1000, 93):
        app.add(keys[lo : lo + 93], nodes[lo : lo + 93])
    assert app.close() == 1000
    assert _files(tmp_path / "whole") == _files(tmp_path / "streamed")
    for p in range(7):
        off = streamed.load("band-offsets", 2)
        assert np.all(streamed.load("band-keys", 2)[off[p] : off[p + 1]] % np.uint64(7) == p)


def test_array_and_id_appenders_read_back_like_whole_saves(tmp_path):
    rng = np.random.default_rng(1)
    sig = rng.integers(0, 2**32, (50, 8), dtype=np.uint32)
    whole, streamed = Scratch(tmp_path / "whole"), Scratch(tmp_path / "streamed")
    whole.save("sig", 0, sig)
    whole.save("length", 0, np.arange(50, dtype=np.int64))
    app, lengths = streamed.appender("sig", 0, np.uint32, 8), streamed.appender("length", 0, np.int64)
    for lo in range(0, 50, 16):
        app.append(sig[lo : lo + 16])
        lengths.append(np.arange(lo, min(lo + 16, 50)))
    assert app.close() == 50 and lengths.close() == 50
    assert (tmp_path / "whole" / "sig-00000.npy").read_bytes() == (tmp_path / "streamed" / "sig-00000.npy").read_bytes()
    assert (tmp_path / "whole" / "length-00000.npy").read_bytes() == (
        tmp_path / "streamed" / "length-00000.npy").read_bytes()
    empty = streamed.appender("quality", 1, np.float32)
    assert empty.close() == 0 and streamed.load("quality", 1).shape == (0,)
    ids = [f"r{i}-名前" for i in range(20_000)]  # more than one Arrow batch
    whole.save_ids(0, ids)
    out = streamed.ids_appender(0)
    for lo in range(0, len(ids), 3000):
        out.extend(ids[lo : lo + 3000])
    out.close()
    pick = scratch.node(0, np.array([0, 19_999, 8191, 8192, 5]))
    assert streamed.ids_of(pick) == whole.ids_of(pick) == [ids[0], ids[19_999], ids[8191], ids[8192], ids[5]]


@pytest.mark.parametrize("name", ["exact_dedup", "near_dedup"])
def test_a_scan_writes_the_same_scratch_files_whatever_it_buffers(tmp_path, monkeypatch, name):
    from ciyuan.curate.steps import make_step

    records = near_dup_corpus(seed=7, families=30)
    records += [dict(r, id=f"copy-{r['id']}") for r in records[::5]]
    out = {}
    for spill in (1 << 30, 64):  # one run, as the whole-array writers; a run every four entries
        monkeypatch.setattr(scratch, "SPILL_BYTES", spill)
        step = make_step(name)
        folder = tmp_path / str(spill)
        ctx = step.begin(str(folder), len(records))
        ctx["parts"] = 5
        step.scan(0, iter([dict(r, meta={}) for r in records]), 3, ctx)
        out[spill] = _files(folder)
    assert out[64] == out[1 << 30]
    assert not [f for f in out[64] if f.endswith(".raw")]  # no run file is left behind


def _corpus(seed: int = 4) -> list[dict]:
    rng = random.Random(seed)
    recs = []
    for i in range(40):
        recs.append({"id": f"en{i}", "text": en_prose(rng)})
        recs.append({"id": f"zh{i}", "text": zh_prose(rng)})
    for i, t in enumerate(boilerplate_pages(rng, 8)):
        recs.append({"id": f"bp{i}", "text": t})
    for i in range(12):
        recs.append({"id": f"exact{i}", "text": recs[i * 2]["text"]})
        recs.append({"id": f"near{i}", "text": edit_copy(recs[i * 2 + 1]["text"], 1, rng, cjk=True)})
    rng.shuffle(recs)
    return recs


def test_curation_gives_the_same_version_whatever_the_scans_buffer(home, monkeypatch):
    """Same version id and kept ids with the old single-run writing (everything buffered) and with a
    spill every few entries and many small reduce partitions, in-process and over two workers."""
    from ciyuan.curate.curate import curate
    from ciyuan.store import VersionBuilder, resolve

    b = VersionBuilder("scan", made_by={"command": "test"}, rows_per_shard=30)
    for r in _corpus():
        b.add(dict(r, meta={}))
    parent = b.commit()
    runs = []
    for spill, budget, workers in ((1 << 30, 1 << 30, 1), (64, 512, 1), (64, 512, 2)):
        monkeypatch.setattr(scratch, "SPILL_BYTES", spill)
        monkeypatch.setattr(scratch, "PARTITION_BYTES", budget)
        res = curate(parent.ref, "text-pretrain", workers=workers)
        v = resolve(f"scan@{res['version']}")
        runs.append((res["version"], sorted(r["id"] for r in v.iter_records()),
                     sorted((r["id"], r["_rejected"]["step"]) for r in v.iter_records(partition="rejected"))))
    assert runs[0] == runs[1] == runs[2]
    steps = {s for _, s in runs[0][2]}
    assert {"exact_dedup", "near_dedup"} <= steps  # both dedup steps decided something


def _traced_peak(fn) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", ["exact_dedup", "near_dedup"])
def test_a_scan_holds_a_batch_not_its_shard(tmp_path, monkeypatch, name):
    """Four times the records must not raise a scan's peak allocation (numpy included) by more than
    half a megabyte: the old scans kept every signature, key and id until the shard's end (at 12,000
    records: 39 MB for near-dedup, 1.9 MB for exact-dedup; now 8 MB and 0.7 MB)."""
    from ciyuan.curate.steps import make_step

    monkeypatch.setattr(scratch, "SPILL_BYTES", 64 << 10)
    rng = random.Random(2)
    docs = [f"doc {i} " + en_prose(rng, 1) for i in range(200)]

    def scan(n: int) -> int:
        step = make_step(name)
        folder = tmp_path / f"{name}-{n}"
        ctx = step.begin(str(folder), n)
        records = ({"id": f"r{i}", "text": docs[i % 200] + f" {i}", "meta": {}} for i in range(n))
        return _traced_peak(lambda: step.scan(0, records, 0, ctx))

    scan(500)  # the first scan also pays one-off costs (compiled patterns, the MinHash library)
    small, large = scan(3_000), scan(12_000)
    assert large - small < 512 << 10, (small, large)


def test_signing_batches_are_bounded_by_characters(tmp_path):
    """512 long documents in a row are signed in pieces of about a million characters (shingling takes
    ~40 bytes a character, so the whole run would need hundreds of MB); signatures are the same."""
    from ciyuan.curate.steps import make_step

    rng = random.Random(5)
    long_doc = " ".join(en_prose(rng, 40) for _ in range(6))
    records = [{"id": f"r{i}", "text": f"{i} " + long_doc, "meta": {}} for i in range(300)]
    assert sum(len(r["text"]) for r in records) > 8 << 20
    step = make_step("near_dedup")
    ctx = step.begin(str(tmp_path), len(records))
    peak = _traced_peak(lambda: step.scan(0, iter(records), 0, ctx))
    assert peak < 120 << 20, peak
    sig = Scratch(tmp_path).load("sig", 0)
    assert np.array_equal(sig[:3], step._signatures([r["text"] for r in records[:3]]))
