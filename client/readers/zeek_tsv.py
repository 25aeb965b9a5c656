"""Zeek dns.log TSV reader (plain or gzip): header blocks, bulk Arrow parsing, quarantine.

:func:`stream_zeek_tsv` parses the file block by block on a few threads with bounded memory;
:func:`read_zeek_tsv` collects its tables into one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
    parse_decimal_seconds,
    quarantine_lines,
    run_ahead,
)
from client.readers.lines import (
    ARROW_BLOCK_BYTES,
    BLOCK_BYTES,
    LineBlocks,
    LineText,
    overlong_lines,
    prepare_lines,
)

# Chunks parse in parallel, each one single-threaded: only then does Arrow report row numbers.
CHUNK_BYTES = 16 << 20
_FORMAT_FIX = "set [logs] format in the site config to the files' format (zeek-json, csv, parquet)"
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})|\\")


@dataclass(frozen=True)
class _Header:
    """The '#' header lines in force: separators, empty/unset markers and the field names."""

    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Chunk:
    """Whole lines of the file under one header, parsed by Arrow in one go."""

    start: int  # byte offsets into the decompressed file
    end: int
    first_line: int  # 1-based physical line number of the first byte
    lines: int  # physical lines, an unterminated last one included
    header: _Header


def unescape_zeek(value: str, *, strict: bool = True) -> tuple[str | None, str | None]:
    r"""Decode Zeek ``\xNN`` escapes: ``(text, None)`` or, when strict, ``(None, reason)``.

    Strict (the query): a backslash that starts no ``\xNN`` is ``bad-escape`` (Zeek writes
    ``\x5c``) and bytes that are not UTF-8 are ``undecodable``. Lenient keeps both as text.

    >>> unescape_zeek(r"caf\xc3\xa9\x2ecom")
    ('café.com', None)
    """
    lone_backslash = False

    def byte_of(match: re.Match[bytes]) -> bytes:
        nonlocal lone_backslash
        if match.group(1) is None:
            lone_backslash = True
            return b"\\"
        return bytes.fromhex(match.group(1).decode("ascii"))

    decoded = _ESCAPE.sub(byte_of, value.encode("utf-8", "surrogateescape"))
    if not strict:
        return decoded.decode("utf-8", "backslashreplace"), None
    if lone_backslash:
        return None, "bad-escape"
    try:
        return decoded.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "undecodable"


def read_zeek_tsv(
    path: Path,
    *,
    quarantine: Quarantine,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    mapping: Mapping[str, str] | None = None,
) -> tuple[pa.Table, ReadStats]:
    """Read one Zeek TSV log: ``ts`` float64, ``query`` and other columns str, ``line`` int64.

    ``query`` is escape-decoded but not normalised; it is null when unset or ``(empty)``.
    Other columns are null when unset, ``""`` when ``(empty)``. A requested column absent
    from a block's ``#fields`` is null there. Every line that is neither a header nor a
    record goes to ``quarantine`` with its line number. Raises :class:`LogFormatError` when
    the file is not Zeek TSV or lacks ``ts``/``query``. Zeek names its own fields, so a
    ``mapping`` that renames any column is a ValueError. The file is read block by block
    (:func:`stream_zeek_tsv`): a gzip bomb or one huge line cannot take the memory.
    """
    columns = check_columns(columns)
    return collect(
        stream_zeek_tsv(path, quarantine=quarantine, columns=columns, mapping=mapping), columns
    )


def stream_zeek_tsv(
    path: Path,
    *,
    quarantine: Quarantine,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    mapping: Mapping[str, str] | None = None,
    block_bytes: int = BLOCK_BYTES,
    on_progress: Progress | None = None,
    workers: int | None = None,
) -> TableStream:
    """:func:`read_zeek_tsv` block by block: same rows, same quarantine, in order.

    Blocks parse on a thread pool a few blocks ahead of the consumer, so memory stays at
    about ``(workers + 2) * block_bytes`` however large (or gzip'd) the file is.
    """
    columns = check_columns(columns)
    _no_mapping(mapping, "zeek-tsv")
    path = Path(path)
    blocks = LineBlocks(path, block_bytes=block_bytes, on_progress=on_progress)
    state = _TsvState()

    def tasks() -> Iterator[Callable[[], list[tuple[pa.Table, list[BadLine]]]]]:
        for block, is_last, overlong in blocks.segments():
            at_start = state.line == 1
            long_lines = overlong_lines(state.line, overlong)
            state.line += len(long_lines)
            chunks, bad = _split_block(block, state, path, at_start=at_start)
            bad = long_lines + bad
            cut_line = state.line - 1 if is_last and not block.endswith(b"\n") else 0

            def parse(block=block, chunks=chunks, bad=bad, cut_line=cut_line):
                parsed = [
                    _parse_chunk(block, chunk, columns=columns, cut_line=cut_line)
                    for chunk in chunks
                ]
                return [(output_schema(columns).empty_table(), bad), *parsed]

            yield parse

    records, counts = 0, Counter()
    for parsed in run_ahead(tasks(), workers=workers or default_workers()):
        counts += quarantine_lines(quarantine, path, [line for _, bad in parsed for line in bad])
        for table, _ in parsed:
            records += table.num_rows
            if table.num_rows:
                yield table
    return ReadStats(
        path=str(path),
        lines_read=state.line - 1,
        records=records,
        quarantined=dict(counts),
        header_lines=state.header_lines,
        compressed_stream_truncated=blocks.truncated,
    )


def _no_mapping(mapping: Mapping[str, str] | None, fmt: str) -> None:
    if mapping and any(key != value for key, value in mapping.items()):
        raise ValueError(
            f"a column mapping does not apply to {fmt}: Zeek names its fields in the '#fields' "
            "header (fix: remove [logs] columns, or use it with format csv, parquet, zeek-json)"
        )


@dataclass
class _TsvState:
    """Where a scan of the file stands: the header in force and the next line number."""

    header: _Header = field(default_factory=_Header)
    line: int = 1  # the next physical line number
    header_lines: int = 0


def _split_block(
    data: bytes, state: _TsvState, path: Path, *, at_start: bool
) -> tuple[list[_Chunk], list[BadLine]]:
    """Cut a block at '#' lines into chunks sharing one header, carrying the header across
    blocks; count header and all lines in ``state``."""
    chunks: list[_Chunk] = []
    bad: list[BadLine] = []
    position = 3 if at_start and data.startswith(b"\xef\xbb\xbf#") else 0
    while position < len(data):
        if data[position] == 0x23:  # '#'
            end = data.find(b"\n", position)
            end = len(data) if end < 0 else end
            state.header = _apply_header_line(
                state.header, data[position:end], path=path, line=state.line
            )
            state.header_lines += 1
            state.line, position = state.line + 1, end + 1
            continue
        next_header = _next_header_line(data, position)
        end = len(data) if next_header < 0 else next_header
        if state.header.fields is None:
            blank = _blank_lines_before_fields(data[position:end], path=path, line=state.line)
            bad.extend(blank)
            state.line += len(blank)
        else:
            new = _cut(data, start=position, end=end, line=state.line, header=state.header)
            chunks.extend(new)
            state.line += sum(chunk.lines for chunk in new)
        position = end
    return chunks, bad


def _next_header_line(data: bytes, position: int) -> int:
    """Offset of the next line after ``position`` that starts with '#', or -1."""
    for _ in range(64):  # one-byte find is ~15x faster than searching for b"\n#"
        hit = data.find(b"#", position + 1)
        if hit < 0 or data[hit - 1] == 0x0A:
            return hit
        position = hit
    hit = data.find(b"\n#", position)  # many '#' inside lines: the two-byte search wins
    return hit + 1 if hit >= 0 else -1


def _blank_lines_before_fields(block: bytes, *, path: Path, line: int) -> list[BadLine]:
    if block.strip():
        first = block.split(b"\n", 1)[0][:80].decode("utf-8", "backslashreplace")
        json = first.lstrip().startswith("{")
        hint = " (it looks like JSON lines: format = 'zeek-json')" if json else ""
        raise LogFormatError(
            f"{path}: line {line} is data but no '#fields' header came before it, so this is not "
            f"Zeek TSV{hint}. First bytes: {first!r}. Fix: {_FORMAT_FIX}, "
            "or point [logs] paths at Zeek dns.log files."
        )
    lines = block.split(b"\n")
    lines = lines[:-1] if block.endswith(b"\n") else lines
    return [
        (line + offset, "blank", text.decode("ascii", "backslashreplace"))
        for offset, text in enumerate(lines)
    ]


def _cut(data: bytes, *, start: int, end: int, line: int, header: _Header) -> list[_Chunk]:
    chunks = []
    while start < end:
        stop = data.find(b"\n", start + CHUNK_BYTES, end) + 1 if end - start > CHUNK_BYTES else end
        stop = stop or end
        lines = data.count(b"\n", start, stop) + (data[stop - 1] != 0x0A)
        chunks.append(_Chunk(start, stop, line, lines, header))
        line += lines
        start = stop
    return chunks


def _apply_header_line(header: _Header, raw: bytes, *, path: Path, line: int) -> _Header:
    text = raw.rstrip(b"\r").decode("utf-8", "backslashreplace")
    if text.startswith("#separator "):
        separator = unescape_zeek(text[len("#separator ") :], strict=False)[0] or ""
        if len(separator) != 1 or not separator.isascii() or separator in "\r\n":
            raise LogFormatError(
                f"{path}: line {line}: {text!r} must declare one ASCII character such as \\x09; "
                "fix the header or re-export the log with Zeek's default LogAscii::separator."
            )
        return replace(header, separator=separator)
    key, _, value = text.partition(header.separator)
    value = unescape_zeek(value, strict=False)[0] or ""
    if key == "#fields":
        fields = tuple(text.split(header.separator)[1:])
        missing = [name for name in REQUIRED_COLUMNS if name not in fields]
        if missing:
            raise LogFormatError(
                f"{path}: line {line}: the '#fields' header has no {' or '.join(missing)} column "
                f"(fields: {', '.join(fields[:12]) or 'none'}). Is this a Zeek dns.log? "
                f"Point [logs] paths at dns.log files, or {_FORMAT_FIX}."
            )
        return replace(header, fields=fields)
    if key in ("#set_separator", "#empty_field", "#unset_field"):
        return replace(header, **{key[1:]: value})
    return header  # #path, #open, #close, #types and comments carry nothing we need


_UTF8_BOM = b"\xef\xbb\xbf"


def _read_rows(
    buffer: memoryview | bytes, header: _Header, include: list[str]
) -> tuple[pa.Table, list[tuple[int, int, str]]]:
    """Arrow's CSV reader, serial so it numbers rows; a line over a block gets a bigger block."""
    assert header.fields is not None
    invalid: list[tuple[int, int, str]] = []

    def on_invalid(row: pacsv.InvalidRow) -> str:
        if row.number is None:  # only known on the serial path; never expected here
            raise RuntimeError("pyarrow did not report the row number of an invalid row")
        invalid.append((row.number, row.actual_columns, row.text))
        return "skip"

    def read(block_size: int) -> pa.Table:
        invalid.clear()
        return pacsv.read_csv(
            pa.BufferReader(pa.py_buffer(buffer)),
            read_options=pacsv.ReadOptions(
                column_names=[f"f{index}" for index in range(len(header.fields or ()))],
                use_threads=False,
                block_size=block_size,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=header.separator,
                quote_char=False,
                escape_char=False,
                double_quote=False,
                newlines_in_values=False,
                ignore_empty_lines=False,  # blank lines stay rows, or row numbers skip them
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(include, pa.string()),
                include_columns=include,
                null_values=[header.unset_field],
                strings_can_be_null=True,
            ),
        )

    if bytes(buffer[:3]) == _UTF8_BOM:
        # Arrow drops one byte-order mark at the start of its input; a BOM that begins a chunk
        # is data of the chunk's first line (the file's own BOM is dropped with its header).
        buffer = _UTF8_BOM + bytes(buffer)
    try:
        return read(ARROW_BLOCK_BYTES), invalid
    except pa.ArrowInvalid as error:
        if "straddl" not in str(error):
            raise
        return read(min(len(buffer) + 1, 2**31 - 1)), invalid


def _parse_chunk(
    data: bytes, chunk: _Chunk, *, columns: Sequence[str], cut_line: int
) -> tuple[pa.Table, list[BadLine]]:
    header = chunk.header
    assert header.fields is not None
    position = {name: f"f{header.fields.index(name)}" for name in columns if name in header.fields}
    buffer = prepare_lines(data, chunk.start, chunk.end)
    table, invalid = _read_rows(buffer, header, list(dict.fromkeys(position.values())))
    bad = [
        _invalid_row(chunk, number, actual, text, cut_line=cut_line)
        for number, actual, text in invalid
    ]
    rows = np.arange(chunk.lines, dtype=np.int64)  # 0-based line in the chunk of each row
    if invalid:
        rows = np.setdiff1d(rows, np.array([number - 1 for number, _, _ in invalid]))
    if len(rows) != table.num_rows:
        raise RuntimeError(
            f"line accounting broke at line {chunk.first_line}: "
            f"{len(rows)} lines but {table.num_rows} rows"
        )
    line_text = LineText(buffer)
    reasons: dict[int, str] = {}  # row -> why it is dropped after parsing
    ts_text = table.column(position["ts"]).combine_chunks()
    ts = parse_decimal_seconds(ts_text)
    unusable = pc.invert(pc.is_finite(ts)).fill_null(True).to_numpy(zero_copy_only=False)
    for index in map(int, np.flatnonzero(unusable)):
        blank = ts_text[index].as_py() in (None, "") and line_text(int(rows[index])) == ""
        reasons[index] = "blank" if blank else "bad-timestamp"
    out = {
        name: pa.nulls(table.num_rows, pa.string())
        if name not in position
        else _decode_column(
            table.column(position[name]).combine_chunks(),
            header,
            strict=name == "query",
            reasons=reasons,
        )
        for name in columns
        if name != "ts"
    }
    out |= {"ts": ts, "line": pa.array(rows + chunk.first_line, pa.int64())}
    result = pa.table(out, schema=output_schema(columns))
    if not reasons:
        return result, bad
    bad += [
        (chunk.first_line + int(rows[index]), reason, line_text(int(rows[index])))
        for index, reason in reasons.items()
    ]
    keep = np.ones(table.num_rows, dtype=bool)
    keep[list(reasons)] = False
    return result.filter(pa.array(keep)), bad


def _invalid_row(chunk: _Chunk, number: int, actual: int, text: str, *, cut_line: int) -> BadLine:
    line = chunk.first_line + number - 1
    if actual > len(chunk.header.fields or ()):
        reason = "too-many-fields"
    else:  # only the file's unterminated last line is 'truncated'
        reason = "truncated" if line == cut_line else "too-few-fields"
    return line, reason, text[:-1] if text.endswith("\r") else text


def _decode_column(
    values: pa.Array, header: _Header, *, strict: bool, reasons: dict[int, str]
) -> pa.Array:
    """Map ``(empty)`` (query: null, others: ""), decode escapes where a backslash occurs."""
    empty = pc.fill_null(pc.equal(values, header.empty_field), False)
    values = pc.if_else(empty, pa.scalar(None if strict else "", pa.string()), values)
    escaped = pc.fill_null(pc.match_substring(values, "\\"), False)
    indices = np.flatnonzero(escaped.to_numpy(zero_copy_only=False))
    if indices.size == 0:
        return values
    decoded = []
    for index, value in zip(indices, values.take(pa.array(indices)).to_pylist(), strict=True):
        text, reason = unescape_zeek(value, strict=strict)
        if reason is not None:
            reasons.setdefault(int(index), reason)
        decoded.append(text)
    return pc.replace_with_mask(values, escaped, pa.array(decoded, pa.string()))
