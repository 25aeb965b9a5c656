"""Parquet DNS logs: record batches with a column mapping; ``line`` is the 1-based row number.

``ts`` may be an Arrow timestamp (any unit, any zone), epoch seconds (milliseconds above
1e11) or text; ``query`` may be text, binary (strict UTF-8) or dictionary encoded. A row
that cannot be used goes to the quarantine with its requested fields as JSON as the raw text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from client.quarantine import Quarantine
from client.readers.base import (
    DEFAULT_COLUMNS,
    BadLine,
    LogFormatError,
    ReadStats,
    TableStream,
    as_text,
    check_columns,
    collect,
    output_schema,
    parse_timestamps,
    quarantine_lines,
    resolve_fields,
    seconds_from_numbers,
)

BATCH_ROWS = 1 << 17


def read_parquet_log(
    path: Path,
    *,
    quarantine: Quarantine,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    mapping: Mapping[str, str] | None = None,
) -> tuple[pa.Table, ReadStats]:
    """Read one Parquet log; ``mapping`` gives the Parquet column of each column."""
    columns = check_columns(columns)
    return collect(
        stream_parquet_log(path, quarantine=quarantine, columns=columns, mapping=mapping), columns
    )


def stream_parquet_log(
    path: Path,
    *,
    quarantine: Quarantine,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    mapping: Mapping[str, str] | None = None,
    batch_rows: int = BATCH_ROWS,
    on_progress=None,
    **_: object,
) -> TableStream:
    """:func:`read_parquet_log` batch by batch (one row group's worth of memory at a time).

    Requested columns other than ``ts``/``query`` that the file lacks are null.
    """
    columns = check_columns(columns)
    path = Path(path)
    fields = resolve_fields(columns, mapping, path=path)
    parquet = _open(path, fields)
    present = [field for field in fields.values() if field in parquet.schema_arrow.names]
    rows_read, records, counts = 0, 0, Counter()
    for group in range(parquet.num_row_groups):
        for batch in parquet.iter_batches(
            batch_size=batch_rows, row_groups=[group], columns=present, use_threads=True
        ):
            table, bad = _convert(batch, fields, first_row=rows_read + 1)
            rows_read += batch.num_rows
            counts += quarantine_lines(quarantine, path, bad)
            records += table.num_rows
            if table.num_rows:
                yield table
        if on_progress is not None:
            on_progress(parquet.metadata.row_group(group).total_byte_size)
    return ReadStats(
        path=str(path),
        lines_read=rows_read,
        records=records,
        quarantined=dict(counts),
        header_lines=0,
    )


def _open(path: Path, fields: Mapping[str, str]) -> pq.ParquetFile:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise LogFormatError(
            f"{path}: not a readable Parquet file ({error}); fix: set [logs] "
            "format to the files' format (zeek-tsv, zeek-json, csv)"
        ) from None
    names = parquet.schema_arrow.names
    missing = [
        f"{name} (column {fields[name]!r})" for name in ("ts", "query") if fields[name] not in names
    ]
    if missing:
        raise LogFormatError(
            f"{path}: no Parquet column for {', '.join(missing)}; its columns are {names[:16]}. "
            'Fix: set [logs] columns in the site config, e.g. columns = {query = "qname"}.'
        )
    return parquet


def timestamps_to_seconds(values: pa.Array) -> pa.Array:
    """float64 epoch seconds from an Arrow timestamp, number or text column (null if unusable)."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        values = values.dictionary_decode()
        kind = values.type
    if pa.types.is_timestamp(kind):
        per_second = {"s": 1, "ms": 1e3, "us": 1e6, "ns": 1e9}[kind.unit]
        seconds = pc.divide(values.cast(pa.int64()).cast(pa.float64()), per_second)
        return pc.if_else(pc.is_finite(seconds), seconds, pa.scalar(None, pa.float64()))
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return seconds_from_numbers(values.cast(pa.float64()))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return parse_timestamps(values.cast(pa.string()))
    return pa.nulls(len(values), pa.float64())


def _query_text(values: pa.Array, reasons: dict[int, str]) -> pa.Array:
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type):
        texts = []
        for index, raw in enumerate(values.to_pylist()):
            try:
                texts.append(None if raw is None else raw.decode("utf-8"))
            except UnicodeDecodeError:
                reasons.setdefault(index, "undecodable")
                texts.append(None)
        values = pa.array(texts, pa.string())
    elif not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        bad = pc.is_valid(values).to_numpy(zero_copy_only=False)
        for index in np.flatnonzero(bad):
            reasons.setdefault(int(index), "bad-field-type")
        return pa.nulls(len(values), pa.string())
    values = values.cast(pa.string())
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _convert(
    batch: pa.RecordBatch, fields: Mapping[str, str], *, first_row: int
) -> tuple[pa.Table, list[BadLine]]:
    reasons: dict[int, str] = {}
    ts = timestamps_to_seconds(batch.column(fields["ts"]))
    for index in np.flatnonzero(pc.is_null(ts).to_numpy(zero_copy_only=False)):
        reasons[int(index)] = "bad-timestamp"
    out = {"ts": ts, "query": _query_text(batch.column(fields["query"]), reasons)}
    for name, field in fields.items():
        if name in out:
            continue
        if field not in batch.schema.names:
            out[name] = pa.nulls(batch.num_rows, pa.string())
            continue
        column = batch.column(field)
        column = column.dictionary_decode() if pa.types.is_dictionary(column.type) else column
        out[name] = as_text(column)
    out["line"] = pa.array(np.arange(batch.num_rows, dtype=np.int64) + first_row)
    columns = list(fields)
    table = pa.table(
        {name: out[name] for name in [*columns, "line"]}, schema=output_schema(columns)
    )
    if not reasons:
        return table, []
    raw = batch.select([field for field in fields.values() if field in batch.schema.names])
    bad = [(first_row + index, reason, _row_json(raw, index)) for index, reason in reasons.items()]
    keep = np.ones(batch.num_rows, dtype=bool)
    keep[list(reasons)] = False
    return table.filter(pa.array(keep)), bad


def _row_json(batch: pa.RecordBatch, index: int) -> str:
    row = batch.slice(index, 1).to_pylist()[0]
    return json.dumps(row, default=str, ensure_ascii=False)
