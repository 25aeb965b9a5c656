"""DNS log readers behind one registry: Zeek TSV, Zeek JSON lines, CSV and Parquet.

Every reader keeps the contract described in :mod:`client.readers.base`: a table with ``ts``,
``query``, the other requested columns and ``line``, plus a :class:`ReadStats`; every line that
is not a header or a record goes to the quarantine with its line number and reason.

``READERS`` read a whole file; ``STREAMS`` yield a file's tables in order with bounded memory
(the generator's return value is the ``ReadStats``) for scoring logs of any size. ``FORMATS``
holds both per format name. The registry imports the readers; they import only
:mod:`client.readers.base` and :mod:`client.readers.lines`, never this module.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from client.readers.base import (
    DEFAULT_COLUMNS,
    REQUIRED_COLUMNS,
    BadLine,
    LogFormatError,
    Progress,
    ReadStats,
    TableStream,
    collect,
    parse_timestamps,
)
from client.readers.csv_log import read_csv_log, stream_csv_log
from client.readers.lines import BLOCK_BYTES, LineBlocks
from client.readers.parquet import read_parquet_log, stream_parquet_log
from client.readers.zeek_json import read_zeek_json, stream_zeek_json
from client.readers.zeek_tsv import read_zeek_tsv, stream_zeek_tsv

__all__ = [
    "BLOCK_BYTES",
    "DEFAULT_COLUMNS",
    "FORMATS",
    "READERS",
    "REQUIRED_COLUMNS",
    "STREAMS",
    "BadLine",
    "Format",
    "LineBlocks",
    "LogFormatError",
    "Progress",
    "ReadStats",
    "Reader",
    "StreamReader",
    "TableStream",
    "collect",
    "detect_format",
    "parse_timestamps",
    "read_csv_log",
    "read_parquet_log",
    "read_zeek_json",
    "read_zeek_tsv",
    "stream_csv_log",
    "stream_parquet_log",
    "stream_zeek_json",
    "stream_zeek_tsv",
]

Reader = Callable[..., tuple[pa.Table, ReadStats]]
StreamReader = Callable[..., TableStream]


@dataclass(frozen=True)
class Format:
    """One log format: its config name, whole-file reader and streaming reader."""

    name: str
    read: Reader
    stream: StreamReader


FORMATS: dict[str, Format] = {
    fmt.name: fmt
    for fmt in (
        Format("zeek-tsv", read_zeek_tsv, stream_zeek_tsv),
        Format("zeek-json", read_zeek_json, stream_zeek_json),
        Format("csv", read_csv_log, stream_csv_log),
        Format("parquet", read_parquet_log, stream_parquet_log),
    )
}
READERS: dict[str, Reader] = {name: fmt.read for name, fmt in FORMATS.items()}
STREAMS: dict[str, StreamReader] = {name: fmt.stream for name, fmt in FORMATS.items()}


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
