"""CSV DNS logs with a header row and a column mapping from the site config (plain or gzip).

Arrow parses each block; a block where a quote spans lines (so rows and lines no longer
pair up) is parsed line by line instead, since every row must keep its physical line number.
``ts`` is epoch seconds (milliseconds above 1e11) or ISO 8601 (naive = UTC); an empty
``query`` is unset; other empty fields stay ``""``. A requested column other than ``ts`` and
``query`` that the header lacks is null, as in the other formats, unless the mapping names it
(then the header must have it: a misspelt mapping is an error, not a column of nulls).
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from client.quarantine import Quarantine
from client.readers.base import (
    DEFAULT_COLUMNS,
    REQUIRED_COLUMNS,
    BadLine,
    LogFormatError,
    Progress,
    ReadStats,
    TableStream,
    check_columns,
    collect,
    default_workers,
    output_schema,
    parse_timestamps,
    quarantine_lines,
    resolve_fields,
    run_ahead,
)
from client.readers.lines import (
    ARROW_BLOCK_BYTES,
    BLOCK_BYTES,
    LineBlocks,
    LineText,
    is_utf8,
    overlong_lines,
    prepare_lines,
)

BAD_QUOTE = -1  # in place of a field count
_FIX = 'set [logs] columns in the site config, e.g. columns = {ts = "timestamp", query = "qname"}'


def read_csv_log(
    path: Path,
    *,
    quarantine: Quarantine,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    mapping: Mapping[str, str] | None = None,
    delimiter: str = ",",
) -> tuple[pa.Table, ReadStats]:
    """Read one CSV log; ``mapping`` gives the header name of each column (default: its own).

    A column the mapping does not name and the header lacks (e.g. ``rcode_name``) is null.
    """
    columns = check_columns(columns)
    return collect(
        stream_csv_log(
            path, quarantine=quarantine, columns=columns, mapping=mapping, delimiter=delimiter
        ),
        columns,
    )


def stream_csv_log(
    path: Path,
    *,
    quarantine: Quarantine,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    mapping: Mapping[str, str] | None = None,
    block_bytes: int = BLOCK_BYTES,
    on_progress: Progress | None = None,
    workers: int | None = None,
    delimiter: str = ",",
) -> TableStream:
    """:func:`read_csv_log` block by block with bounded memory; returns the ReadStats."""
    columns = check_columns(columns)
    if len(delimiter) != 1 or delimiter in '\r\n"':
        raise ValueError(
            f"delimiter must be one character other than a quote or newline; got {delimiter!r}"
        )
    path = Path(path)
    fields = resolve_fields(columns, mapping, path=path)
    blocks = LineBlocks(path, block_bytes=block_bytes, on_progress=on_progress)
    state: dict = {"line": 1, "header": None}

    def tasks() -> Iterator[Callable[[], tuple[pa.Table, list[BadLine]]]]:
        for block, is_last, overlong in blocks.segments():
            if overlong and state["header"] is None:
                raise LogFormatError(
                    f"{path}: line 1: the CSV header is longer than {blocks.max_line_bytes} "
                    "bytes, so this is not a DNS log's header (fix: point [logs] paths at the "
                    "CSV logs, or set [logs] format to the files' format)"
                )
            long_lines = overlong_lines(state["line"], overlong)
            state["line"] += len(long_lines)
            if state["header"] is None and block:
                block = _take_header(block, state, path, fields, delimiter, mapping or {})
            first_line = state["line"]
            lines = block.count(b"\n") + (bool(block) and not block.endswith(b"\n"))
            state["line"] += lines
            cut = first_line + lines - 1 if is_last and not block.endswith(b"\n") else 0
            if long_lines:
                yield lambda bad=long_lines: (output_schema(fields).empty_table(), bad)
            if lines:
                yield lambda block=block, first=first_line, count=lines, cut=cut: _parse_block(
                    block,
                    first_line=first,
                    lines=count,
                    cut_line=cut,
                    header=state["header"],
                    fields=fields,
                    delimiter=delimiter,
                )

    records, counts = 0, Counter()
    for table, bad in run_ahead(tasks(), workers=workers or default_workers()):
        counts += quarantine_lines(quarantine, path, bad)
        records += table.num_rows
        if table.num_rows:
            yield table
    return ReadStats(
        path=str(path),
        lines_read=state["line"] - 1,
        records=records,
        quarantined=dict(counts),
        header_lines=int(state["header"] is not None),
        compressed_stream_truncated=blocks.truncated,
    )


def _take_header(
    block: bytes,
    state: dict,
    path: Path,
    fields: Mapping[str, str],
    delimiter: str,
    mapping: Mapping[str, str],
) -> bytes:
    """Read the header row off the first block; check ts, query and every mapped field are in
    it (an optional column, neither required nor mapped, may be absent: it reads as null)."""
    start = 3 if block.startswith(b"\xef\xbb\xbf") else 0
    end = block.find(b"\n", start)
    end = len(block) if end < 0 else end
    raw = block[start:end].rstrip(b"\r").decode("utf-8", "backslashreplace")
    header = _header_cells(raw, path, delimiter)
    if raw.startswith("#") or raw.lstrip().startswith("{"):
        kind = "zeek-tsv" if raw.startswith("#") else "zeek-json"
        raise LogFormatError(
            f"{path}: line 1 looks like {kind}, not a CSV header: {raw[:80]!r} "
            f"(fix: set [logs] format = '{kind}')"
        )
    missing = [
        f"{name} (field {field!r})"
        for name, field in fields.items()
        if field not in header and (name in REQUIRED_COLUMNS or name in mapping)
    ]
    if missing:
        raise LogFormatError(
            f"{path}: line 1: the CSV header has no column for {', '.join(missing)}; its columns "
            f"are {header[:16]}. Fix: {_FIX}."
        )
    state["header"] = header
    state["line"] = 2
    return block[end + 1 :]


def _header_cells(raw: str, path: Path, delimiter: str) -> list[str]:
    """The header row's names; a row Python's csv module refuses is a LogFormatError."""
    try:
        return next(csv.reader([raw], delimiter=delimiter), [])
    except csv.Error as error:  # e.g. a field over csv.field_size_limit() (128 KiB)
        raise LogFormatError(
            f"{path}: line 1: the CSV header cannot be read ({error}; it is {len(raw)} "
            "characters long). Fix: point [logs] paths at CSV logs with a header row of "
            "column names, or set [logs] format to the files' format."
        ) from None


def _parse_block(
    block: bytes,
    *,
    first_line: int,
    lines: int,
    cut_line: int,
    header: list[str],
    fields: Mapping[str, str],
    delimiter: str,
) -> tuple[pa.Table, list[BadLine]]:
    buffer = prepare_lines(block, 0, len(block))  # bare CR and stray bytes: one row per '\n' line
    rewritten = isinstance(buffer, bytes) and not is_utf8(memoryview(block))
    undecodable = (
        {index for index, raw in enumerate(block.split(b"\n")[:lines]) if not _decodes(raw)}
        if rewritten
        else set()
    )
    present = {name: field for name, field in fields.items() if field in header}
    parsed = _arrow_rows(buffer, header, present, delimiter, lines)
    if parsed is None:
        parsed = _python_rows(buffer, header, present, delimiter)
    values, rows, invalid = parsed
    absent = pa.nulls(len(rows), pa.string())  # optional columns the header lacks
    values = {name: values.get(name, absent) for name in fields}
    line_text = LineText(buffer)
    bad = [
        (
            first_line + index,
            _invalid_reason(text, actual, len(header), cut=first_line + index == cut_line),
            text,
        )
        for index, actual, text in invalid
    ]
    return _finish(
        values, rows, first_line=first_line, line_text=line_text, undecodable=undecodable, bad=bad
    )


def _decodes(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


Rows = tuple[dict[str, pa.Array], np.ndarray, list[tuple[int, int, str]]]


def _arrow_rows(
    buffer, header: list[str], fields: Mapping[str, str], delimiter: str, lines: int
) -> Rows | None:
    """Arrow's parser (serial, so it numbers rows); None when rows and lines do not pair up."""
    invalid: list[tuple[int, int, str]] = []
    names = [f"f{index}" for index in range(len(header))]
    include = {name: f"f{header.index(field)}" for name, field in fields.items()}

    def on_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append((row.number - 1, row.actual_columns, _strip_cr(row.text)))
        return "skip"

    def read(block_size: int) -> pa.Table:
        invalid.clear()
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(buffer)),
            read_options=pacsv.ReadOptions(
                column_names=names, use_threads=False, block_size=block_size
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                quote_char='"',
                double_quote=True,
                escape_char=False,
                newlines_in_values=False,
                ignore_empty_lines=False,
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(set(include.values()), pa.string()),
                include_columns=list(dict.fromkeys(include.values())),
                strings_can_be_null=False,
                null_values=[],
                quoted_strings_can_be_null=False,
            ),
        )

    try:
        try:
            table = read(ARROW_BLOCK_BYTES)
        except pa.ArrowInvalid as error:
            if "straddl" not in str(error):
                raise
            table = read(min(len(buffer) + 1, 2**31 - 1))
    except pa.ArrowInvalid:
        return None
    if table.num_rows + len(invalid) != lines:
        return None
    rows = np.setdiff1d(np.arange(lines), np.array([index for index, _, _ in invalid], dtype=int))
    values = {name: table.column(column).combine_chunks() for name, column in include.items()}
    return values, rows.astype(np.int64), invalid


def _python_rows(buffer, header: list[str], fields: Mapping[str, str], delimiter: str) -> Rows:
    """One physical line, one row: Python's csv module line by line (a quote never spans)."""
    text = bytes(buffer).decode("utf-8", "backslashreplace")
    lines = text.split("\n")
    lines = lines[:-1] if text.endswith("\n") else lines
    positions = {name: header.index(field) for name, field in fields.items()}
    values: dict[str, list[str]] = {name: [] for name in fields}
    rows, invalid = [], []
    for index, line in enumerate(lines):
        line = _strip_cr(line)
        try:
            cells = next(csv.reader([line], delimiter=delimiter, strict=True), [])
        except csv.Error:  # a quote left open at the line end, or text after a closing quote
            invalid.append((index, BAD_QUOTE, line))
            continue
        if len(cells) != len(header) and not (not line and len(header) == 1):
            invalid.append((index, len(cells), line))
            continue
        rows.append(index)
        for name, position in positions.items():
            values[name].append(cells[position] if cells else "")
    arrays = {name: pa.array(column, pa.string()) for name, column in values.items()}
    return arrays, np.array(rows, dtype=np.int64), invalid


def _strip_cr(text: str) -> str:
    return text[:-1] if text.endswith("\r") else text


def _invalid_reason(text: str, actual: int, expected: int, *, cut: bool) -> str:
    if not text.strip():
        return "blank"
    if actual == BAD_QUOTE:
        return "truncated" if cut else "bad-quote"
    if actual > expected:
        return "too-many-fields"
    return "truncated" if cut else "too-few-fields"


def _finish(
    values: dict[str, pa.Array],
    rows: np.ndarray,
    *,
    first_line: int,
    line_text: LineText,
    undecodable: set[int],
    bad: list[BadLine],
) -> tuple[pa.Table, list[BadLine]]:
    reasons: dict[int, str] = {}
    ts = parse_timestamps(values["ts"])
    for index in np.flatnonzero(pc.is_null(ts).to_numpy(zero_copy_only=False)):
        blank = not line_text(int(rows[index])).strip()
        reasons[int(index)] = "blank" if blank else "bad-timestamp"
    if undecodable:
        for index in np.flatnonzero(np.isin(rows, list(undecodable))):
            reasons[int(index)] = "undecodable"
    query = values["query"]
    out = {name: column for name, column in values.items() if name not in ("ts", "query")}
    out |= {
        "ts": ts,
        "query": pc.if_else(pc.equal(query, ""), pa.scalar(None, pa.string()), query),
        "line": pa.array(rows + first_line, pa.int64()),
    }
    columns = list(values)
    table = pa.table(
        {name: out[name] for name in [*columns, "line"]}, schema=output_schema(columns)
    )
    if not reasons:
        return table, bad
    bad = bad + [
        (first_line + int(rows[index]), reason, line_text(int(rows[index])))
        for index, reason in reasons.items()
    ]
    keep = np.ones(len(rows), dtype=bool)
    keep[list(reasons)] = False
    return table.filter(pa.array(keep)), bad
