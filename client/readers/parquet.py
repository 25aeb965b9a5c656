"""Parquet DNS logs: record batches with a column mapping; ``line`` is the 1-based row number.

``ts`` may be an Arrow timestamp (any unit, any zone), epoch seconds (milliseconds above
1e11) or text; ``query`` may be text, binary (strict UTF-8) or dictionary encoded. A row
that cannot be used goes to the quarantine with its requested fields as JSON as the raw text.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from client.quarantine import Quarantine
from client.readers import lines
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
from client.readers.lines import LINE_TOO_LONG

BATCH_ROWS = 1 << 17
# Memory bounds against hostile files: a column chunk is read whole, so its uncompressed size is
# capped (a real log's is tens of MB per million rows); text columns stay dictionary encoded
# until a row's size is known, a row over the line cap is quarantined, and the rest is decoded
# in slices of about SLICE_BYTES (one 2 MB dictionary value repeated 200,000 times took 400 GB).
MAX_CHUNK_BYTES = 128 << 20
SLICE_BYTES = 32 << 20


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
        for batch in _batches(parquet, path, group=group, columns=present, batch_rows=batch_rows):
            for rows, piece, bad in _slices(batch, first_row=rows_read + 1):
                table, late = _convert(piece, fields, rows=rows)
                counts += quarantine_lines(quarantine, path, bad + late)
                records += table.num_rows
                if table.num_rows:
                    yield table
            rows_read += batch.num_rows
        if on_progress is not None:
            on_progress(parquet.metadata.row_group(group).total_byte_size)
    return ReadStats(
        path=str(path),
        lines_read=rows_read,
        records=records,
        quarantined=dict(counts),
        header_lines=0,
    )


def _is_text(kind: pa.DataType) -> bool:
    return any(
        check(kind)
        for check in (
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_binary,
            pa.types.is_large_binary,
        )
    )


def _batches(
    parquet: pq.ParquetFile, path: Path, *, group: int, columns: list[str], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    """One row group's batches, after checking no column chunk is too big to hold."""
    meta = parquet.metadata.row_group(group)
    for index in range(meta.num_columns):
        chunk = meta.column(index)
        if chunk.path_in_schema in columns and chunk.total_uncompressed_size > MAX_CHUNK_BYTES:
            raise LogFormatError(
                f"{path}: row group {group} holds {chunk.total_uncompressed_size >> 20} MiB of "
                f"column {chunk.path_in_schema!r} uncompressed, over the {MAX_CHUNK_BYTES >> 20} "
                "MiB a reader holds at once (fix: rewrite the file with smaller row groups, "
                "e.g. row_group_size=100000)"
            )
    try:
        yield from parquet.iter_batches(
            batch_size=batch_rows, row_groups=[group], columns=columns, use_threads=True
        )
    except (pa.ArrowException, OSError) as error:
        raise LogFormatError(
            f"{path}: row group {group} cannot be read ({str(error)[:200]}); fix: export the "
            "log again"
        ) from None


def _row_bytes(batch: pa.RecordBatch) -> np.ndarray:
    """Bytes of text per row over the batch's text columns, without decoding dictionaries."""
    sizes = np.zeros(batch.num_rows, dtype=np.int64)
    for column in batch.columns:
        if pa.types.is_dictionary(column.type) and _is_text(column.type.value_type):
            lengths = pc.binary_length(column.dictionary).take(column.indices)
        elif _is_text(column.type):
            lengths = pc.binary_length(column)
        else:
            continue
        sizes += lengths.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    return sizes


def _slices(
    batch: pa.RecordBatch, *, first_row: int
) -> Iterator[tuple[np.ndarray, pa.RecordBatch, list[BadLine]]]:
    """(1-based rows, their batch, rows over the line cap): pieces of at most ~SLICE_BYTES."""
    sizes = _row_bytes(batch)
    rows = np.arange(batch.num_rows, dtype=np.int64) + first_row
    too_long = sizes > lines.MAX_LINE_BYTES
    bad: list[BadLine] = [
        (int(row), LINE_TOO_LONG, f"[a row of {int(size)} bytes of text]")
        for row, size in zip(rows[too_long], sizes[too_long], strict=True)
    ]
    if bad:
        keep = ~too_long
        batch, rows, sizes = batch.filter(pa.array(keep)), rows[keep], sizes[keep]
    if int(sizes.sum()) <= SLICE_BYTES:
        yield rows, batch, bad
        return
    ends = np.cumsum(sizes)
    start = 0
    while start < batch.num_rows:
        base = int(ends[start - 1]) if start else 0
        stop = max(int(np.searchsorted(ends, base + SLICE_BYTES, side="right")), start + 1)
        yield rows[start:stop], batch.slice(start, stop - start), bad
        bad, start = [], stop


def _open(path: Path, fields: Mapping[str, str]) -> pq.ParquetFile:
    try:
        schema = pq.ParquetFile(path).schema_arrow
        text = [
            field
            for field in fields.values()
            if field in schema.names and _is_text(schema.field(field).type)
        ]
        parquet = pq.ParquetFile(path, read_dictionary=text)
    except (pa.ArrowException, OSError) as error:
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
    batch: pa.RecordBatch, fields: Mapping[str, str], *, rows: np.ndarray
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
    out["line"] = pa.array(rows, pa.int64())
    columns = list(fields)
    table = pa.table(
        {name: out[name] for name in [*columns, "line"]}, schema=output_schema(columns)
    )
    if not reasons:
        return table, []
    raw = batch.select([field for field in fields.values() if field in batch.schema.names])
    bad = [(int(rows[index]), reason, _row_json(raw, index)) for index, reason in reasons.items()]
    keep = np.ones(batch.num_rows, dtype=bool)
    keep[list(reasons)] = False
    return table.filter(pa.array(keep)), bad


def _row_json(batch: pa.RecordBatch, index: int) -> str:
    row = batch.slice(index, 1).to_pylist()[0]
    return json.dumps(row, default=str, ensure_ascii=False)
