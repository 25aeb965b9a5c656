"""DNS log readers behind one registry: Zeek TSV, Zeek JSON lines, CSV and Parquet.

Every reader has the contract of :func:`client.zeek.read_zeek_tsv`: a table with ``ts``
(float64 epoch seconds), ``query`` (decoded, not normalised, null when unset or empty), the
other requested columns (text) and ``line`` (int64: physical line, or row for Parquet), plus a
:class:`ReadStats` where ``lines_read == header_lines + records + sum(quarantined)``. Every line
that is not a header or a record goes to the quarantine with its line number and reason.

``READERS`` read a whole file; ``STREAMS`` yield a file's tables in order with bounded memory
(the generator's return value is the ``ReadStats``) for scoring logs of any size.
"""

from __future__ import annotations

import datetime as dt
import importlib
import math
import os
import zlib
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from client import zeek
from client.quarantine import Quarantine
from client.zeek import DEFAULT_COLUMNS, REQUIRED_COLUMNS, BadLine, LogFormatError, ReadStats

BLOCK_BYTES = 16 << 20  # one block of whole lines: a few hundred thousand records at most
MILLISECONDS_ABOVE = 1e11  # a larger epoch is milliseconds (1e11 s is the year 5138)
Progress = Callable[[int], None]  # called with the number of on-disk bytes just consumed
TableStream = Generator[pa.Table, None, ReadStats]
T = TypeVar("T")

__all__ = [
    "BLOCK_BYTES", "DEFAULT_COLUMNS", "FORMATS", "READERS", "STREAMS", "LineBlocks",
    "LogFormatError", "ReadStats", "collect", "detect_format", "parse_timestamps",
    "stream_zeek_tsv",
]


def check_columns(columns: Sequence[str]) -> tuple[str, ...]:
    columns = tuple(columns)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing or len(set(columns)) != len(columns) or "line" in columns:
        raise ValueError(
            f"columns must be distinct, include {REQUIRED_COLUMNS} and not 'line'; got {columns}"
        )
    return columns


def resolve_fields(columns: Sequence[str], mapping: Mapping[str, str] | None,
                   *, path: Path) -> dict[str, str]:
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
    return zeek._schema(columns)


class LineBlocks:
    """Whole lines of a plain or gzip'd file (every member) in blocks of about ``block_bytes``.

    Iterating yields ``(block, is_last)``; every block but the last ends with ``\\n``. A gzip
    stream cut short or damaged keeps what decompressed before the damage and sets
    ``truncated``; one that yields nothing at all is a :class:`LogFormatError`.
    """

    def __init__(self, path: Path, *, block_bytes: int = BLOCK_BYTES,
                 on_progress: Progress | None = None) -> None:
        self.path = Path(path)
        self.block_bytes = max(1, int(block_bytes))
        self.on_progress = on_progress
        self.truncated = False

    def __iter__(self) -> Iterator[tuple[bytes, bool]]:
        previous: bytes | None = None
        for block in self._blocks():
            if previous is not None:
                yield previous, False
            previous = block
        if previous is not None:
            yield previous, True

    def _blocks(self) -> Iterator[bytes]:
        parts: list[bytes] = []
        size = 0
        for piece in self._pieces():
            parts.append(piece)
            size += len(piece)
            if size < self.block_bytes:
                continue
            data = b"".join(parts)
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: keep reading until it ends
                parts = [data]
                continue
            rest = data[cut:]
            parts, size = ([rest], len(rest)) if rest else ([], 0)
            yield data[:cut]
        if size:
            yield b"".join(parts)

    def _raw(self, handle, size: int) -> bytes:
        raw = handle.read(size)
        if raw and self.on_progress is not None:
            self.on_progress(len(raw))
        return raw

    def _pieces(self) -> Iterator[bytes]:
        with open(self.path, "rb") as handle:
            head = self._raw(handle, 2)
            if head != b"\x1f\x8b":
                yield head
                while piece := self._raw(handle, self.block_bytes):
                    yield piece
                return
            yield from self._gunzip(handle, head)

    def _gunzip(self, handle, head: bytes) -> Iterator[bytes]:
        step = max(1, self.block_bytes // 16)
        inflater: zlib._Decompress | None = None  # None between members
        produced, raw = False, head
        while True:
            raw = raw or self._raw(handle, step)
            if not raw:  # the end of the file: fine between members, a truncation inside one
                self.truncated = self.truncated or inflater is not None
                break
            if inflater is None:
                if not raw.strip(b"\0"):
                    raw = b""  # gzip allows zero padding after the last member
                    continue
                inflater = zlib.decompressobj(wbits=31)
            try:  # output bounded per call: a log inflates ~10x, a hostile file far more
                out = inflater.decompress(raw, self.block_bytes)
            except zlib.error:
                self.truncated = True
                break
            raw = inflater.unconsumed_tail
            if out:
                produced = True
                yield out
            if inflater.eof:
                raw, inflater = inflater.unused_data, None
        if self.truncated and not produced:
            raise LogFormatError(
                f"{self.path}: starts like gzip but cannot be decompressed; is the file corrupt?"
            )


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


def parse_timestamps(text: pa.Array) -> pa.Array:
    """Epoch seconds (float64) from text: decimal seconds, or ISO 8601 (naive = UTC).

    A number above 1e11 is taken as milliseconds (Zeek's ``JSON::TS_MILLIS``); anything else
    that is not a finite time becomes null.

    >>> parse_timestamps(pa.array(["1.5", "2024-03-01T00:00:00Z", "x"])).to_pylist()
    [1.5, 1709251200.0, None]
    """
    if not pa.types.is_string(text.type):
        text = text.cast(pa.string())
    numbers = seconds_from_numbers(zeek._parse_timestamps(text))
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


# --- Zeek TSV, streamed -----------------------------------------------------------------------


@dataclass
class _TsvState:
    header: zeek._Header = field(default_factory=zeek._Header)
    line: int = 1  # the next physical line number
    header_lines: int = 0


def _split_block(data: bytes, state: _TsvState, path: Path,
                 *, at_start: bool) -> tuple[list[zeek._Chunk], list[BadLine]]:
    """:func:`client.zeek._split` for one block, carrying the header across blocks."""
    chunks: list[zeek._Chunk] = []
    bad: list[BadLine] = []
    position = 3 if at_start and data.startswith(b"\xef\xbb\xbf#") else 0
    while position < len(data):
        if data[position] == 0x23:  # '#'
            end = data.find(b"\n", position)
            end = len(data) if end < 0 else end
            state.header = zeek._apply_header_line(state.header, data[position:end], path=path,
                                                   line=state.line)
            state.header_lines += 1
            state.line, position = state.line + 1, end + 1
            continue
        next_header = zeek._next_header_line(data, position)
        end = len(data) if next_header < 0 else next_header
        if state.header.fields is None:
            blank = zeek._blank_lines_before_fields(data[position:end], path=path, line=state.line)
            bad.extend(blank)
            state.line += len(blank)
        else:
            new = zeek._cut(data, start=position, end=end, line=state.line, header=state.header)
            chunks.extend(new)
            state.line += sum(chunk.lines for chunk in new)
        position = end
    return chunks, bad


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
    return min(4, os.cpu_count() or 1)


def stream_zeek_tsv(
    path: Path, *, quarantine: Quarantine, columns: Sequence[str] = DEFAULT_COLUMNS,
    mapping: Mapping[str, str] | None = None, block_bytes: int = BLOCK_BYTES,
    on_progress: Progress | None = None, workers: int | None = None,
) -> TableStream:
    """:func:`client.zeek.read_zeek_tsv` block by block: same rows, same quarantine, in order.

    Blocks parse on a thread pool a few blocks ahead of the consumer, so memory stays at
    about ``(workers + 2) * block_bytes`` however large (or gzip'd) the file is.
    """
    columns = check_columns(columns)
    _no_mapping(mapping, "zeek-tsv")
    path = Path(path)
    blocks = LineBlocks(path, block_bytes=block_bytes, on_progress=on_progress)
    state = _TsvState()

    def tasks() -> Iterator[Callable[[], list[tuple[pa.Table, list[BadLine]]]]]:
        for index, (block, is_last) in enumerate(blocks):
            chunks, bad = _split_block(block, state, path, at_start=index == 0)
            cut_line = state.line - 1 if is_last and not block.endswith(b"\n") else 0

            def parse(block=block, chunks=chunks, bad=bad, cut_line=cut_line):
                parsed = [zeek._parse_chunk(block, chunk, columns=columns, cut_line=cut_line)
                          for chunk in chunks]
                return [(output_schema(columns).empty_table(), bad), *parsed]
            yield parse

    records, counts = 0, Counter()
    for parsed in run_ahead(tasks(), workers=workers or default_workers()):
        counts += quarantine_lines(quarantine, path, [line for _, bad in parsed for line in bad])
        for table, _ in parsed:
            records += table.num_rows
            if table.num_rows:
                yield table
    return ReadStats(path=str(path), lines_read=state.line - 1, records=records,
                     quarantined=dict(counts), header_lines=state.header_lines,
                     compressed_stream_truncated=blocks.truncated)


def _no_mapping(mapping: Mapping[str, str] | None, fmt: str) -> None:
    if mapping and any(key != value for key, value in mapping.items()):
        raise ValueError(
            f"a column mapping does not apply to {fmt}: Zeek names its fields in the '#fields' "
            "header (fix: remove [logs] columns, or use it with format csv, parquet, zeek-json)"
        )


def read_zeek_tsv(path: Path, *, quarantine: Quarantine, columns: Sequence[str] = DEFAULT_COLUMNS,
                  mapping: Mapping[str, str] | None = None) -> tuple[pa.Table, ReadStats]:
    """:func:`client.zeek.read_zeek_tsv` behind the registry signature (no mapping)."""
    _no_mapping(mapping, "zeek-tsv")
    return zeek.read_zeek_tsv(path, quarantine=quarantine, columns=columns)


# --- the registry -----------------------------------------------------------------------------

# format -> (module, whole-file reader, streaming reader); modules load on first use because
# the other readers build on the helpers above
FORMATS: dict[str, tuple[str, str, str]] = {
    "zeek-tsv": ("client.readers", "read_zeek_tsv", "stream_zeek_tsv"),
    "zeek-json": ("client.zeek_json", "read_zeek_json", "stream_zeek_json"),
    "csv": ("client.csv_reader", "read_csv_log", "stream_csv_log"),
    "parquet": ("client.parquet_reader", "read_parquet_log", "stream_parquet_log"),
}


def _lazy(module: str, name: str) -> Callable:
    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"{module}.{name} (imported on first call)"
    return call


Reader = Callable[..., tuple[pa.Table, ReadStats]]
StreamReader = Callable[..., TableStream]
READERS: dict[str, Reader] = {fmt: _lazy(module, whole)
                              for fmt, (module, whole, _) in FORMATS.items()}
STREAMS: dict[str, StreamReader] = {fmt: _lazy(module, stream)
                                    for fmt, (module, _, stream) in FORMATS.items()}


def detect_format(path: Path) -> str:
    """Guess a log's format from its first bytes (gunzipped): Parquet, Zeek TSV/JSON, or CSV."""
    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(1 << 16)
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x1f\x8b"):
        inflater = zlib.decompressobj(wbits=31)
        try:
            head = inflater.decompress(head, 4096)
        except zlib.error:
            return "zeek-tsv"  # the reader names the damage
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    if text.startswith(b"#"):
        return "zeek-tsv"
    return "zeek-json" if text.startswith(b"{") else "csv"
