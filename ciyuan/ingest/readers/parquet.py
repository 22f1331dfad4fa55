"""Parquet (``.parquet``, ``.pq``): rows read in batches, row group by row group; one column holds the text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ciyuan.errors import InvalidInput
from ciyuan.ingest.readers import Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import RAW_KEEP, Meter, guarded, jsonable, no_meter, to_record

PARQUET_BATCH = 1024


def _read_parquet(path: str, text_field: str, id_field: str | None, meter: Meter = no_meter) -> Iterator[Good | Bad]:
    """Rows in batches of ``PARQUET_BATCH``, row group by row group; ``line`` is the 1-based row number.

    A row group that cannot be read (a damaged page) is quarantined as one item naming its rows and
    byte offset, and reading goes on with the next group: the other groups are kept. A batch whose
    cells do not convert (invalid UTF-8 in a string column) is taken apart row by row.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering keeps every row group read until closed
    except (pa.ArrowException, OSError) as exc:
        raise InvalidInput(
            f"{path}: not a readable Parquet file: {exc}", hint="check the file is complete"
        ) from exc
    names = pf.schema_arrow.names
    top = text_field if text_field in names else text_field.split(".")[0]
    if top not in names:
        raise InvalidInput(
            f"{path}: Parquet file has no column {text_field!r} (columns: {', '.join(names)})",
            hint="pass the name of the column holding the text as the text field",
        )
    md = pf.metadata
    row = 0
    for g in range(md.num_row_groups):
        group = md.row_group(g)
        last = row + group.num_rows
        offsets = [
            o for c in range(group.num_columns)
            for o in (group.column(c).dictionary_page_offset, group.column(c).data_page_offset) if o
        ]
        at = min(offsets) if offsets else 0
        size = sum(group.column(c).total_compressed_size for c in range(group.num_columns))
        batches = pf.iter_batches(batch_size=PARQUET_BATCH, row_groups=[g])
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as exc:
                reason = (
                    f"Parquet row group {g} unreadable (rows {row + 1}-{last}, {size} bytes at file byte offset "
                    f"{at}): {exc}; the other row groups were read"
                )
                yield Bad(path, row + 1, reason, b"")
                break
            if batch is None:
                break
            for obj in _batch_rows(batch, pa):
                row += 1
                if isinstance(obj, str):
                    yield Bad(path, row, obj, b"")
                    continue
                obj = jsonable(obj)
                rec = to_record(obj, text_field, id_field)
                if isinstance(rec, str):
                    raw = json.dumps(obj, ensure_ascii=False, default=str).encode("utf-8")[:RAW_KEEP]
                    yield Bad(path, row, rec, raw)
                else:
                    yield Good(path, row, rec)
        row = last
        meter(size)


def _batch_rows(batch: Any, pa: Any) -> list[dict | str]:
    """The rows of ``batch`` as dicts; a row whose cells do not convert becomes the reason why."""
    try:
        return batch.to_pylist()
    except (UnicodeDecodeError, pa.ArrowException, ValueError, OverflowError):
        pass
    out: list[dict | str] = []
    for i in range(batch.num_rows):
        one = batch.slice(i, 1)
        try:
            out.append(one.to_pylist()[0])
            continue
        except (UnicodeDecodeError, pa.ArrowException, ValueError, OverflowError) as exc:
            bad = next((n for n, col in zip(one.schema.names, one.columns, strict=True) if _fails(col, pa)), "?")
            out.append(f"Parquet cell unreadable in column {bad!r}: {exc}")
    return out


def _fails(column: Any, pa: Any) -> bool:
    try:
        column.to_pylist()
    except (UnicodeDecodeError, pa.ArrowException, ValueError, OverflowError):
        return True
    return False


class ParquetReader:
    """Rows of a Parquet file; ``line`` is the 1-based row number, the other columns become ``meta``."""

    name = "parquet"
    suffixes = (".parquet", ".pq")
    modality = "text"

    def detect(self, path: str, head_bytes: bytes) -> bool:
        return False  # by suffix only, as before the registry (``PAR1`` sniffing would be a new promise)

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        return guarded(_read_parquet(path, options.text_field, options.id_field, meter))


register(ParquetReader())
