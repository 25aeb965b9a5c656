"""Zeek JSON-lines dns.log reader (plain or gzip): Arrow parses each block, a line-by-line
fallback finds and quarantines the bad lines of a block that Arrow refuses.

Zeek's JSON writer omits unset fields, writes vectors as arrays and bytes that are not UTF-8 as
``\\xNN`` inside the string; ``ts`` is epoch seconds, ISO 8601 text or epoch milliseconds,
depending on ``LogAscii::json_timestamps``. Lines starting with '#' (shippers that keep
Zeek's header) count as header lines.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from client.quarantine import Quarantine
from client.readers.base import (
    DEFAULT_COLUMNS,
    BadLine,
    LogFormatError,
    Progress,
    ReadStats,
    TableStream,
    as_text,
    check_columns,
    collect,
    default_workers,
    output_schema,
    parse_timestamps,
    quarantine_lines,
    resolve_fields,
    run_ahead,
    seconds_from_numbers,
)
from client.readers.lines import BLOCK_BYTES, LineBlocks, overlong_lines

# dns.log field types as Zeek writes them in JSON; unknown fields are read as text
ZEEK_DNS_TYPES: dict[str, pa.DataType] = {
    "ts": pa.float64(),
    "uid": pa.string(),
    "id.orig_h": pa.string(),
    "id.orig_p": pa.int64(),
    "id.resp_h": pa.string(),
    "id.resp_p": pa.int64(),
    "proto": pa.string(),
    "trans_id": pa.int64(),
    "rtt": pa.float64(),
    "query": pa.string(),
    "qclass": pa.int64(),
    "qclass_name": pa.string(),
    "qtype": pa.int64(),
    "qtype_name": pa.string(),
    "rcode": pa.int64(),
    "rcode_name": pa.string(),
    "AA": pa.bool_(),
    "TC": pa.bool_(),
    "RD": pa.bool_(),
    "RA": pa.bool_(),
    "Z": pa.int64(),
    "answers": pa.list_(pa.string()),
    "TTLs": pa.list_(pa.float64()),
    "rejected": pa.bool_(),
}
_BYTE_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_TS_NUMBER, _TS_TEXT = "\0ts-number", "\0ts-text"


def read_zeek_json(
    path: Path,
    *,
    quarantine: Quarantine,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    mapping: Mapping[str, str] | None = None,
) -> tuple[pa.Table, ReadStats]:
    """Read one Zeek JSON-lines log; the reader contract of :mod:`client.readers.base`.

    ``mapping`` renames fields: ``{"query": "dns.qname"}`` reads column ``query`` from the
    field ``dns.qname`` (for shippers that rename Zeek's fields).
    """
    columns = check_columns(columns)
    return collect(
        stream_zeek_json(path, quarantine=quarantine, columns=columns, mapping=mapping), columns
    )


def stream_zeek_json(
    path: Path,
    *,
    quarantine: Quarantine,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    mapping: Mapping[str, str] | None = None,
    block_bytes: int = BLOCK_BYTES,
    on_progress: Progress | None = None,
    workers: int | None = None,
) -> TableStream:
    """:func:`read_zeek_json` block by block with bounded memory; returns the ReadStats."""
    columns = check_columns(columns)
    path = Path(path)
    fields = resolve_fields(columns, mapping, path=path)
    blocks = LineBlocks(path, block_bytes=block_bytes, on_progress=on_progress)
    position = {"line": 1}

    def tasks() -> Iterator[Callable[[], tuple[pa.Table, list[BadLine], int]]]:
        for block, is_last, overlong in blocks.segments():
            long_lines = overlong_lines(position["line"], overlong)
            position["line"] += len(long_lines)
            if long_lines:
                yield lambda bad=long_lines: (output_schema(fields).empty_table(), bad, 0)
            if not block:
                continue
            first_line = position["line"]
            lines = block.count(b"\n") + (not block.endswith(b"\n"))
            position["line"] += lines
            cut_line = first_line + lines - 1 if is_last and not block.endswith(b"\n") else 0
            yield lambda block=block, first=first_line, cut=cut_line: _parse_block(
                block, first_line=first, cut_line=cut, fields=fields, path=path
            )

    records, header_lines, counts = 0, 0, Counter()
    for table, bad, headers in run_ahead(tasks(), workers=workers or default_workers()):
        counts += quarantine_lines(quarantine, path, bad)
        header_lines += headers
        records += table.num_rows
        if table.num_rows:
            yield table
    return ReadStats(
        path=str(path),
        lines_read=position["line"] - 1,
        records=records,
        quarantined=dict(counts),
        header_lines=header_lines,
        compressed_stream_truncated=blocks.truncated,
    )


def _split_lines(block: bytes) -> list[bytes]:
    lines = block.split(b"\n")
    return lines[:-1] if block.endswith(b"\n") else lines


def _parse_block(
    block: bytes, *, first_line: int, cut_line: int, fields: Mapping[str, str], path: Path
) -> tuple[pa.Table, list[BadLine], int]:
    """Arrow first; the lines one by one only when Arrow refuses the block or loses count."""
    if block.startswith(b"#fields") or b"\n#fields" in block:
        line = first_line + block[: block.find(b"#fields")].count(b"\n")
        raise LogFormatError(
            f"{path}: line {line} is a '#fields' header, so this is Zeek TSV, not JSON lines "
            "(fix: set [logs] format = 'zeek-tsv' in the site config)"
        )
    lines = _split_lines(block)
    lead = next(
        (index for index, line in enumerate(lines) if not line.startswith(b"#")), len(lines)
    )
    tail = next(
        (index for index, line in enumerate(reversed(lines[lead:])) if not line.startswith(b"#")),
        len(lines) - lead,
    )
    body = lines[lead : len(lines) - tail]
    typed = _bulk(body, fields) if body else None
    if typed is None:
        return _per_line(lines, first_line=first_line, cut_line=cut_line, fields=fields)
    numbers = np.arange(len(body), dtype=np.int64) + first_line + lead
    table, bad = _finish(typed, numbers, lambda index: _text(body[index]), fields)
    return table, bad, lead + tail


def _bulk(body: list[bytes], fields: Mapping[str, str]) -> dict[str, pa.Array] | None:
    data = b"\n".join(body)
    if b"\n#" in data or data.startswith(b"#"):
        return None  # a header line in the middle of the data: numbering needs the slow path
    for ts_type in (pa.float64(), pa.string()):
        schema = pa.schema(
            [(fields[name], ts_type if name == "ts" else _type_of(fields[name])) for name in fields]
        )
        try:
            table = pajson.read_json(
                pa.BufferReader(data),
                read_options=pajson.ReadOptions(use_threads=False, block_size=len(data) + 1),
                parse_options=pajson.ParseOptions(
                    explicit_schema=schema, unexpected_field_behavior="ignore"
                ),
            )
        except (pa.ArrowInvalid, UnicodeDecodeError, OverflowError):
            continue
        if table.num_rows != len(body):  # blank lines or two objects on one line
            return None
        typed = {name: table.column(fields[name]).combine_chunks() for name in fields}
        ts = typed.pop("ts")
        typed[_TS_NUMBER if ts_type == pa.float64() else _TS_TEXT] = ts
        return typed
    return None


def _type_of(field: str) -> pa.DataType:
    return ZEEK_DNS_TYPES.get(field, pa.string())


def _per_line(
    lines: list[bytes], *, first_line: int, cut_line: int, fields: Mapping[str, str]
) -> tuple[pa.Table, list[BadLine], int]:
    bad: list[BadLine] = []
    objects: list[dict] = []
    numbers: list[int] = []
    texts: list[str] = []
    headers = 0
    for offset, raw in enumerate(lines):
        number = first_line + offset
        raw = raw[:-1] if raw.endswith(b"\r") else raw
        if raw.startswith(b"#"):
            headers += 1
            continue
        text = raw.decode("utf-8", "backslashreplace")
        reason, value = _parse_line(raw, cut=number == cut_line)
        if value is not None:
            reason = _query_problem(value.get(fields["query"]))
        if reason is not None:
            bad.append((number, reason, text))
            continue
        objects.append(value)
        numbers.append(number)
        texts.append(text)
    typed = {
        name: _column([obj.get(field) for obj in objects], _type_of(field))
        for name, field in fields.items()
        if name != "ts"
    }
    stamps = [obj.get(fields["ts"]) for obj in objects]
    typed[_TS_NUMBER] = _column(
        [value if _is_number(value) else None for value in stamps], pa.float64()
    )
    typed[_TS_TEXT] = _column(
        [value if isinstance(value, str) else None for value in stamps], pa.string()
    )
    table, late_bad = _finish(typed, np.array(numbers, dtype=np.int64), texts.__getitem__, fields)
    return table, bad + late_bad, headers


def _parse_line(raw: bytes, *, cut: bool) -> tuple[str | None, dict | None]:
    if not raw.strip():
        return "blank", None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "undecodable", None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return ("truncated" if cut else "bad-json"), None
    if not isinstance(value, dict):
        return "bad-json", None
    return None, value


def _query_problem(query: object) -> str | None:
    if query is None:
        return None
    if not isinstance(query, str):
        return "bad-field-type"
    try:
        query.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape such as \ud800
        return "undecodable"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _column(values: list, kind: pa.DataType) -> pa.Array:
    """Values of one field as ``kind``; a value that does not fit becomes null (``bad-field-type``
    for ``query`` is decided in :func:`_finish`, which sees the original)."""
    try:
        return pa.array(values, kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        pass
    fitted = []
    for value in values:
        try:
            fitted.append(pa.scalar(value, kind).as_py())
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            fitted.append(None)
    return pa.array(fitted, kind)


def _finish(
    typed: dict[str, pa.Array],
    numbers: np.ndarray,
    line_text: Callable[[int], str],
    fields: Mapping[str, str],
) -> tuple[pa.Table, list[BadLine]]:
    """Typed columns to the output contract; rows with a bad ts or query go to ``bad``."""
    reasons: dict[int, str] = {}
    ts = pc.coalesce(
        seconds_from_numbers(typed.pop(_TS_NUMBER, pa.nulls(len(numbers)))),
        parse_timestamps(typed.pop(_TS_TEXT, pa.nulls(len(numbers), pa.string()))),
    )
    for index in np.flatnonzero(pc.is_null(ts).to_numpy(zero_copy_only=False)):
        reasons[int(index)] = "bad-timestamp"
    out: dict[str, pa.Array] = {"ts": ts}
    for name in fields:
        if name == "query":
            out[name] = _decode_query(typed[name], reasons)
        elif name != "ts":
            out[name] = as_text(typed[name])
    columns = list(fields)
    out["line"] = pa.array(numbers, pa.int64())
    table = pa.table(
        {name: out[name] for name in [*columns, "line"]}, schema=output_schema(columns)
    )
    if not reasons:
        return table, []
    bad = [(int(numbers[index]), reason, line_text(index)) for index, reason in reasons.items()]
    keep = np.ones(len(numbers), dtype=bool)
    keep[list(reasons)] = False
    return table.filter(pa.array(keep)), bad


def _decode_query(values: pa.Array, reasons: dict[int, str]) -> pa.Array:
    r"""'' is unset; ``\xNN`` (bytes Zeek could not write as UTF-8) decoded, strictly."""
    values = values.cast(pa.string())
    values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
    escaped = pc.fill_null(pc.match_substring(values, "\\x"), False)
    indices = np.flatnonzero(escaped.to_numpy(zero_copy_only=False))
    if indices.size == 0:
        return values
    decoded = []
    for index, value in zip(indices, values.take(pa.array(indices)).to_pylist(), strict=True):
        text = decode_byte_escapes(value)
        if text is None:
            reasons.setdefault(int(index), "undecodable")
        decoded.append(text)
    return pc.replace_with_mask(values, escaped, pa.array(decoded, pa.string()))


def decode_byte_escapes(value: str) -> str | None:
    r"""Zeek JSON's ``\xNN`` byte escapes decoded as UTF-8; None when the bytes are not UTF-8.

    >>> decode_byte_escapes(r"caf\xc3\xa9.example"), decode_byte_escapes(r"\xff")
    ('café.example', None)
    """
    parts, last = [], 0
    for match in _BYTE_ESCAPE.finditer(value):
        parts.append(value[last : match.start()].encode("utf-8", "surrogatepass"))
        parts.append(bytes.fromhex(match.group(1)))
        last = match.end()
    parts.append(value[last:].encode("utf-8", "surrogatepass"))
    try:
        return b"".join(parts).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _text(raw: bytes) -> str:
    raw = raw[:-1] if raw.endswith(b"\r") else raw
    return raw.decode("utf-8", "backslashreplace")
