"""Zeek dns.log TSV reader (plain or gzip): header blocks, bulk Arrow parsing, quarantine."""

from __future__ import annotations

import os
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from client.quarantine import Quarantine

DEFAULT_COLUMNS = ("ts", "query", "qtype_name", "rcode_name")
REQUIRED_COLUMNS = ("ts", "query")
# Chunks parse in parallel, each one single-threaded: only then does Arrow report row numbers.
CHUNK_BYTES = 16 << 20
ARROW_BLOCK_BYTES = 1 << 20  # Arrow's own default: cache friendly; a longer line gets one block
_FORMAT_FIX = "set [logs] format in the site config to the files' format (zeek-json, csv, parquet)"
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})|\\")
_BARE_CR = re.compile(rb"\r(?!\n)")
_FLOAT = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"

BadLine = tuple[int, str, str]  # (1-based line, reason, raw text)


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


@dataclass(frozen=True)
class _Header:
    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = "(empty)"
    unset_field: str = "-"
    fields: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Chunk:
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
    path: Path, *, quarantine: Quarantine, columns: Sequence[str] = DEFAULT_COLUMNS
) -> tuple[pa.Table, ReadStats]:
    """Read one Zeek TSV log: ``ts`` float64, ``query`` and other columns str, ``line`` int64.

    ``query`` is escape-decoded but not normalised; it is null when unset or ``(empty)``.
    Other columns are null when unset, ``""`` when ``(empty)``. A requested column absent
    from a block's ``#fields`` is null there. Every line that is neither a header nor a
    record goes to ``quarantine`` with its line number. Raises :class:`LogFormatError` when
    the file is not Zeek TSV or lacks ``ts``/``query``.
    """
    columns = tuple(columns)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing or len(set(columns)) != len(columns) or "line" in columns:
        raise ValueError(
            f"columns must be distinct, include {REQUIRED_COLUMNS} and not 'line'; got {columns}"
        )
    path = Path(path)
    data, stream_truncated = _load(path)
    chunks, header_lines, lines_read, bad = _split(data, path)
    cut_line = lines_read if data and not data.endswith(b"\n") else 0

    def parse(chunk: _Chunk) -> tuple[pa.Table, list[BadLine]]:
        return _parse_chunk(data, chunk, columns=columns, cut_line=cut_line)

    workers = min(len(chunks), os.cpu_count() or 1)
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(parse, chunks))
    else:
        results = [parse(chunk) for chunk in chunks]
    tables = [table for table, _ in results]
    bad.extend(line for _, chunk_bad in results for line in chunk_bad)
    bad.sort()
    for line_number, reason, raw in bad:
        quarantine.add(source=path, line_number=line_number, reason=reason, raw=raw)
    table = pa.concat_tables(tables) if tables else _schema(columns).empty_table()
    stats = ReadStats(
        path=str(path), lines_read=lines_read, records=table.num_rows,
        quarantined=dict(Counter(reason for _, reason, _ in bad)),
        header_lines=header_lines, compressed_stream_truncated=stream_truncated,
    )
    return table, stats


def _schema(columns: Sequence[str]) -> pa.Schema:
    types = {"ts": pa.float64()}
    fields = [(name, types.get(name, pa.string())) for name in columns]
    return pa.schema([*fields, ("line", pa.int64())])


def _load(path: Path) -> tuple[bytes, bool]:
    """The file's bytes, gunzipped (every member) when it starts with the gzip magic.

    A truncated or corrupt stream keeps what decompressed before the damage and is flagged.
    """
    data = path.read_bytes()
    if not data.startswith(b"\x1f\x8b"):
        return data, False
    parts: list[bytes] = []
    position, damaged = 0, False
    while position < len(data) and data.startswith(b"\x1f\x8b", position):
        inflater = zlib.decompressobj(wbits=31)
        try:  # in 1 MiB steps so damage near the end still leaves what came before it
            while not inflater.eof and position < len(data):
                piece = data[position:position + (1 << 20)]
                parts.append(inflater.decompress(piece))
                position += len(piece)
        except zlib.error:
            damaged = True
            break
        if not inflater.eof:
            damaged = True
            break
        position -= len(inflater.unused_data)
    damaged = damaged or bool(data[position:].strip(b"\0"))  # gzip allows zero padding at the end
    if damaged and not any(parts):
        raise LogFormatError(
            f"{path}: starts like gzip but cannot be decompressed; is the file corrupt?"
        )
    return b"".join(parts), damaged


def _split(data: bytes, path: Path) -> tuple[list[_Chunk], int, int, list[BadLine]]:
    """Cut the file at '#' lines into chunks sharing one header; count header and all lines."""
    chunks: list[_Chunk] = []
    bad: list[BadLine] = []
    header, header_lines, position, line = _Header(), 0, 0, 1
    if data.startswith(b"\xef\xbb\xbf#"):
        position = 3  # a UTF-8 byte order mark before the first header (editors add one)
    while position < len(data):
        if data[position] == 0x23:  # '#'
            end = data.find(b"\n", position)
            end = len(data) if end < 0 else end
            header = _apply_header_line(header, data[position:end], path=path, line=line)
            header_lines, line, position = header_lines + 1, line + 1, end + 1
            continue
        next_header = _next_header_line(data, position)
        end = len(data) if next_header < 0 else next_header
        if header.fields is None:
            blank = _blank_lines_before_fields(data[position:end], path=path, line=line)
            bad.extend(blank)
            line += len(blank)
        else:
            new = _cut(data, start=position, end=end, line=line, header=header)
            chunks.extend(new)
            line += sum(chunk.lines for chunk in new)
        position = end
    return chunks, header_lines, line - 1, bad


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
    return [(line + offset, "blank", text.decode("ascii", "backslashreplace"))
            for offset, text in enumerate(lines)]


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
        separator = unescape_zeek(text[len("#separator "):], strict=False)[0] or ""
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


def _is_utf8(buffer: memoryview) -> bool:
    offsets = pa.py_buffer(np.array([0, len(buffer)], dtype=np.int64))
    array = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(buffer)])
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


class _LineText:
    """Raw text of a chunk's lines by 0-based index; the newline scan runs only if asked."""

    def __init__(self, buffer: memoryview | bytes) -> None:
        self._buffer = buffer
        self._ends: np.ndarray | None = None

    def __call__(self, index: int) -> str:
        if self._ends is None:
            self._ends = np.flatnonzero(np.frombuffer(self._buffer, dtype=np.uint8) == 0x0A)
        start = int(self._ends[index - 1]) + 1 if index > 0 else 0
        stop = int(self._ends[index]) if index < len(self._ends) else len(self._buffer)
        raw = bytes(self._buffer[start:stop])
        return raw[:-1].decode() if raw.endswith(b"\r") else raw.decode()


def _prepare(data: bytes, chunk: _Chunk) -> memoryview | bytes:
    """The chunk as Arrow must see it: one row per '\n' line, valid UTF-8."""
    buffer: memoryview | bytes = memoryview(data)[chunk.start:chunk.end]
    start, end = chunk.start, chunk.end
    if data.find(b"\r", start, end) >= 0 and data.count(b"\r", start, end) != data.count(
        b"\r\n", start, end
    ):
        # Arrow ends a row at a bare CR; Zeek never writes one, it would be escaped as \x0d
        buffer = _BARE_CR.sub(rb"\\x0d", bytes(buffer))
    if not _is_utf8(memoryview(buffer)):
        # Zeek escapes non-UTF-8 bytes; rewriting stray ones as \xNN keeps the line count and
        # sends them down the same path (query: 'undecodable', ts: 'bad-timestamp')
        buffer = bytes(buffer).decode("utf-8", "backslashreplace").encode("utf-8")
    return buffer


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
                use_threads=False, block_size=block_size,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=header.separator, quote_char=False, escape_char=False,
                double_quote=False, newlines_in_values=False,
                ignore_empty_lines=False,  # blank lines stay rows, or row numbers skip them
                invalid_row_handler=on_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(include, pa.string()), include_columns=include,
                null_values=[header.unset_field], strings_can_be_null=True,
            ),
        )

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
    buffer = _prepare(data, chunk)
    table, invalid = _read_rows(buffer, header, list(dict.fromkeys(position.values())))
    bad = [_invalid_row(chunk, number, actual, text, cut_line=cut_line)
           for number, actual, text in invalid]
    rows = np.arange(chunk.lines, dtype=np.int64)  # 0-based line in the chunk of each row
    if invalid:
        rows = np.setdiff1d(rows, np.array([number - 1 for number, _, _ in invalid]))
    if len(rows) != table.num_rows:
        raise RuntimeError(f"line accounting broke at line {chunk.first_line}: "
                           f"{len(rows)} lines but {table.num_rows} rows")
    line_text = _LineText(buffer)
    reasons: dict[int, str] = {}  # row -> why it is dropped after parsing
    ts_text = table.column(position["ts"]).combine_chunks()
    ts = _parse_timestamps(ts_text)
    unusable = pc.invert(pc.is_finite(ts)).fill_null(True).to_numpy(zero_copy_only=False)
    for index in map(int, np.flatnonzero(unusable)):
        blank = ts_text[index].as_py() in (None, "") and line_text(int(rows[index])) == ""
        reasons[index] = "blank" if blank else "bad-timestamp"
    out = {name: pa.nulls(table.num_rows, pa.string()) if name not in position else
           _decode_column(table.column(position[name]).combine_chunks(), header,
                          strict=name == "query", reasons=reasons)
           for name in columns if name != "ts"}
    out |= {"ts": ts, "line": pa.array(rows + chunk.first_line, pa.int64())}
    result = pa.table(out, schema=_schema(columns))
    if not reasons:
        return result, bad
    bad += [(chunk.first_line + int(rows[index]), reason, line_text(int(rows[index])))
            for index, reason in reasons.items()]
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


def _parse_timestamps(text: pa.Array) -> pa.Array:
    """Float seconds; null where the text is not a plain decimal or exponent number."""
    try:
        return pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        plain = pc.match_substring_regex(text, _FLOAT)
        return pc.cast(pc.if_else(plain, text, pa.scalar(None, pa.string())), pa.float64())


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
