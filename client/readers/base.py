"""What every DNS log reader shares: the output contract, accounting, errors and timestamps.

Every reader returns a table with ``ts`` (float64 epoch seconds), ``query`` (decoded, not
normalised, null when unset or empty), the other requested columns (text) and ``line`` (int64:
physical line, or row for Parquet), plus a :class:`ReadStats` where ``lines_read ==
header_lines + records + sum(quarantined)``. Every line that is not a header or a record goes
to the quarantine with its line number and reason.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from client.quarantine import Quarantine

DEFAULT_COLUMNS = ("ts", "query", "qtype_name", "rcode_name")
REQUIRED_COLUMNS = ("ts", "query")
SET_SEPARATOR = ","  # vectors become text as Zeek TSV writes them
MILLISECONDS_ABOVE = 1e11  # a larger epoch is milliseconds (1e11 s is the year 5138)
_FLOAT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"

BadLine = tuple[int, str, str]  # (1-based line, reason, raw text)
Progress = Callable[[int], None]  # called with the number of on-disk bytes just consumed
T = TypeVar("T")


class LogFormatError(ValueError):
    """A log file is not the format the site config says; the message names the file and the fix."""


@dataclass(frozen=True)
class ReadStats:
    """Accounting for one file: lines_read == header_lines + records + sum(quarantined.values())."""

    path: str
    lines_read: int
    records: int
    quarantined: dict[str, int]
    header_lines: int
    compressed_stream_truncated: bool = False


TableStream = Generator[pa.Table, None, ReadStats]


# --- columns ----------------------------------------------------------------------------------


def check_columns(columns: Sequence[str]) -> tuple[str, ...]:
    """The requested columns as a tuple; ValueError unless distinct, with ts/query, no 'line'."""
    columns = tuple(columns)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing or len(set(columns)) != len(columns) or "line" in columns:
        raise ValueError(
            f"columns must be distinct, include {REQUIRED_COLUMNS} and not 'line'; got {columns}"
        )
    return columns


def resolve_fields(
    columns: Sequence[str], mapping: Mapping[str, str] | None, *, path: Path
) -> dict[str, str]:
    """Our column name -> the file's field name; entries for columns not asked for are ignored."""
    fields = {name: str((mapping or {}).get(name, name)) for name in columns}
    if len(set(fields.values())) != len(fields):
        raise ValueError(
            f"{path}: the column mapping sends two columns to one field: {fields} "
            "(fix: give every column in [logs] columns its own field)"
        )
    return fields


def output_schema(columns: Sequence[str]) -> pa.Schema:
    """``ts`` float64, every other column string, then ``line`` int64."""
    types = {"ts": pa.float64()}
    fields = [(name, types.get(name, pa.string())) for name in columns]
    return pa.schema([*fields, ("line", pa.int64())])


def as_text(values: pa.Array) -> pa.Array:
    """Any Arrow column as Zeek TSV would print it: bools T/F, vectors joined with ','."""
    kind = values.type
    if pa.types.is_string(kind):
        return values
    if pa.types.is_boolean(kind):
        return pc.if_else(values, "T", "F")
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pc.binary_join(as_list_of_text(values), SET_SEPARATOR)
    if pa.types.is_null(kind):
        return pa.nulls(len(values), pa.string())
    try:
        return values.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array(
            [
                None if value is None else json.dumps(value, default=str)
                for value in values.to_pylist()
            ],
            pa.string(),
        )


def as_list_of_text(values: pa.Array) -> pa.Array:
    """A list column with every element as text (see :func:`as_text`), nulls kept."""
    flat = as_text(pc.list_flatten(values))
    offsets = pc.subtract(values.offsets, values.offsets[0])  # a slice's offsets start later
    return pa.ListArray.from_arrays(offsets, flat, mask=pc.is_null(values))


# --- accounting and streaming -----------------------------------------------------------------


def quarantine_lines(quarantine: Quarantine, path: Path, bad: list[BadLine]) -> Counter:
    """Write bad lines in line order; return their count per reason."""
    bad.sort()
    for line_number, reason, raw in bad:
        quarantine.add(source=path, line_number=line_number, reason=reason, raw=raw)
    return Counter(reason for _, reason, _ in bad)


def collect(stream: TableStream, columns: Sequence[str]) -> tuple[pa.Table, ReadStats]:
    """Drain a stream into one table (the whole-file reader of a streaming format)."""
    tables = []
    while True:
        try:
            tables.append(next(stream))
        except StopIteration as stop:
            stats = stop.value
            break
    table = pa.concat_tables(tables) if tables else output_schema(columns).empty_table()
    return table, stats


def run_ahead(tasks: Iterator[Callable[[], T]], *, workers: int) -> Iterator[T]:
    """Results of ``tasks`` in order, computed on a thread pool at most ``workers`` ahead.

    Advancing ``tasks`` itself (the sequential part: reading, line counting) happens in the
    consumer's thread; each task (the parsing) runs on the pool, where Arrow drops the GIL.
    """
    pending: deque[Future[T]] = deque()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="log-reader")
    try:
        for task in tasks:
            pending.append(pool.submit(task))
            while len(pending) > workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    """Threads a streaming reader parses blocks on: up to 4, never more than the CPUs."""
    return min(4, os.cpu_count() or 1)


# --- timestamps -------------------------------------------------------------------------------


def parse_decimal_seconds(text: pa.Array) -> pa.Array:
    """Float seconds; null where the text is not a plain decimal or exponent number."""
    try:
        return pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        plain = pc.match_substring_regex(text, _FLOAT)
        return pc.cast(pc.if_else(plain, text, pa.scalar(None, pa.string())), pa.float64())


def parse_timestamps(text: pa.Array) -> pa.Array:
    """Epoch seconds (float64) from text: decimal seconds, or ISO 8601 (naive = UTC).

    A number above 1e11 is taken as milliseconds (Zeek's ``JSON::TS_MILLIS``); anything else
    that is not a finite time becomes null.

    >>> parse_timestamps(pa.array(["1.5", "2024-03-01T00:00:00Z", "x"])).to_pylist()
    [1.5, 1709251200.0, None]
    """
    if not pa.types.is_string(text.type):
        text = text.cast(pa.string())
    numbers = seconds_from_numbers(parse_decimal_seconds(text))
    other = pc.and_(pc.is_null(numbers), pc.is_valid(text))
    if not pc.any(other).as_py():
        return numbers
    rows = np.flatnonzero(other.to_numpy(zero_copy_only=False))
    iso = _iso_seconds(text.take(pa.array(rows)))
    return pc.replace_with_mask(numbers, other, iso)


def seconds_from_numbers(values: pa.Array) -> pa.Array:
    """float64 seconds from epoch numbers; milliseconds above 1e11; non-finite become null."""
    values = values.cast(pa.float64())
    millis = pc.greater(pc.abs(values), MILLISECONDS_ABOVE)
    values = pc.if_else(millis, pc.divide(values, 1000.0), values)
    return pc.if_else(pc.is_finite(values), values, pa.scalar(None, pa.float64()))


def _iso_seconds(text: pa.Array) -> pa.Array:
    for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            micros = pc.cast(text, target).cast(pa.int64())
            return pc.divide(micros.cast(pa.float64()), 1e6)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    return pa.array([_iso_one(value) for value in text.to_pylist()], pa.float64())


def _iso_one(value: str | None) -> float | None:
    try:
        moment = dt.datetime.fromisoformat(value.strip()) if value else None
    except ValueError:
        return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    seconds = moment.timestamp()
    return seconds if math.isfinite(seconds) else None
