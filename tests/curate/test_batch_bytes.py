"""The executor's batches end at BATCH_BYTES as well as BATCH_ROWS, so a run of long documents does
not make a batch (and a worker's memory) many times larger than a run of short ones."""

from __future__ import annotations

import pyarrow.parquet as pq

from ciyuan.curate import executor
from ciyuan.curate.executor import BATCH_BYTES, _ShardWriter, read_shard


def _records(n: int, chars: int) -> list[dict]:
    return [{"id": f"r{i}", "modality": "text", "text": chr(97 + i % 26) * chars, "meta": {"i": i}, "tokens": {}}
            for i in range(n)]


def test_intermediate_row_groups_and_read_batches_are_bounded_in_bytes(tmp_path):
    recs = _records(40, 1 << 20)  # 40 MB in 40 rows: far under BATCH_ROWS, far over BATCH_BYTES
    w = _ShardWriter(tmp_path / "part.parquet")
    for r in recs:
        w.add(r)
    assert w.close() == 40
    md = pq.ParquetFile(tmp_path / "part.parquet").metadata
    assert md.num_row_groups >= 40 * (1 << 20) // BATCH_BYTES
    assert max(md.row_group(i).num_rows for i in range(md.num_row_groups)) * (1 << 20) <= BATCH_BYTES
    sizes = [b.nbytes for b in executor._by_bytes(pq.ParquetFile(tmp_path / "part.parquet").iter_batches(
        batch_size=executor.BATCH_ROWS))]
    assert max(sizes) <= BATCH_BYTES + (2 << 20)  # a slice is cut by rows: within a record of the bound
    back = list(read_shard(str(tmp_path / "part.parquet"), source=False))
    assert [r["id"] for r in back] == [r["id"] for r in recs]
    assert [r["text"] for r in back] == [r["text"] for r in recs]


def test_short_records_still_batch_by_rows(tmp_path):
    recs = _records(3000, 10)
    w = _ShardWriter(tmp_path / "part.parquet")
    for r in recs:
        w.add(r)
    w.close()
    md = pq.ParquetFile(tmp_path / "part.parquet").metadata
    assert [md.row_group(i).num_rows for i in range(md.num_row_groups)] == [1024, 1024, 952]
    assert [r["meta"]["i"] for r in read_shard(str(tmp_path / "part.parquet"), source=False)] == list(range(3000))
