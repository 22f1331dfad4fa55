"""Parquet with Hugging Face ``Image``/``Audio`` columns: a struct ``{bytes, path}`` per row.

The first such column is the media (its ``path`` is the name compared with the bytes and kept in
``meta.path``); a text column (``--text-field``, else ``caption``, ``transcription``, ``sentence``,
``text``) is the record's text; the other columns are declared meta. Rows are read a row group at a
time in small batches, so memory holds a few rows' media. A row with no bytes is quarantined
(``media.no_bytes``); an unreadable row group is one quarantine row and the others are read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from ciyuan.errors import InvalidInput
from ciyuan.ingest.readers import Bad, Good, ReadOptions, register
from ciyuan.ingest.readers.common import Meter, jsonable
from ciyuan.ingest.readers.media import TEXT_COLUMNS, code, majority, media_item

BATCH_ROWS = 16
MODALITY_SAMPLE = 200


def media_columns(schema: pa.Schema) -> list[str]:
    """Columns shaped as HF ``Image``/``Audio`` features: a struct with a binary ``bytes`` and a ``path``."""
    out = []
    for f in schema:
        if pa.types.is_struct(f.type):
            names = {f.type.field(i).name: f.type.field(i).type for i in range(f.type.num_fields)}
            if "bytes" in names and "path" in names and (pa.types.is_binary(names["bytes"])
                                                         or pa.types.is_large_binary(names["bytes"])):
                out.append(f.name)
    return out


def _schema(path: str) -> pa.Schema | None:
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException):
        return None


def read_hf_parquet(path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
    try:
        pf = pq.ParquetFile(path, pre_buffer=False)  # pre-buffering keeps every row group read until closed
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInput(f"{path}: Parquet footer unreadable: {exc}", hint="copy the file again") from exc
    cols = media_columns(pf.schema_arrow)
    if not cols:
        raise InvalidInput(f"{path}: no Image/Audio column (a struct of bytes and path)",
                           hint="use --format parquet for a text Parquet file")
    media_col = cols[0]
    size = os.path.getsize(path)
    row = 0
    for g in range(pf.num_row_groups):
        meta = pf.metadata.row_group(g)
        meter(size * meta.num_rows // max(1, pf.metadata.num_rows))
        start, done = row, 0
        try:
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, row_groups=[g]):
                for rec in batch.to_pylist():
                    done += 1
                    yield _row(path, start + done, rec, media_col, options)
        except (OSError, pa.ArrowException) as exc:
            yield Bad(path, start + done + 1, code("corrupt", f"Parquet row group {g} (rows {start + done + 1}-"
                                                  f"{start + meta.num_rows}) unreadable: {exc}"), b"")
        row = start + meta.num_rows


def _row(path: str, row: int, rec: dict, media_col: str, options: ReadOptions) -> Good | Bad:
    cell = rec.pop(media_col) or {}
    data, inner = cell.get("bytes"), cell.get("path")
    if not data:
        what = f"row {row}: {media_col}.bytes is {'empty' if data == b'' else 'null'}"
        return Bad(path, row, code("no_bytes", what + (f" (path {inner!r} points outside the file)" if inner else "")),
                   b"")
    text = None
    for col in (options.text_field, *TEXT_COLUMNS):
        if isinstance(rec.get(col), str) and rec[col].strip():
            text = rec.pop(col)
            break
    declared = {k: jsonable(v) for k, v in rec.items()}
    extra = {"path": inner} if inner else {}
    name = os.path.basename(inner) if inner else f"row{row}"
    return media_item(path, row, name=name, options=options, data=data, text=text, declared=declared,
                      extra_meta=extra)


class HFParquetReader:
    """Parquet whose rows carry media in an HF ``Image``/``Audio`` struct column."""

    name = "hf-parquet"
    suffixes = (".parquet",)
    suffix_needs_detect = True  # a .parquet without such a column is the text reader's
    modality = "media"

    def detect(self, path: str, head_bytes: bytes) -> bool:
        if not os.path.isfile(path) or not head_bytes.startswith(b"PAR1"):
            return False
        schema = _schema(path)
        return schema is not None and bool(media_columns(schema))

    def modality_of(self, path: str) -> str:
        def heads() -> Iterator[bytes]:
            pf = pq.ParquetFile(path, pre_buffer=False)
            col = media_columns(pf.schema_arrow)[0]
            n = 0
            for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=[col]):
                for cell in batch.column(0).to_pylist():
                    if n >= MODALITY_SAMPLE:
                        return
                    n += 1
                    yield (cell or {}).get("bytes") or b""

        return majority(heads())

    def read(self, path: str, options: ReadOptions, meter: Meter) -> Iterator[Good | Bad]:
        return read_hf_parquet(path, options, meter)


register(HFParquetReader())
