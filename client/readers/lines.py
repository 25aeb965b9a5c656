"""Whole lines of a log file: gzip-aware blocks for streaming, and text Arrow can parse per line."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from client.readers.base import BadLine, LogFormatError, Progress

BLOCK_BYTES = 16 << 20  # one block of whole lines: a few hundred thousand records at most
ARROW_BLOCK_BYTES = 1 << 20  # Arrow's own default: cache friendly; a longer line gets one block
# A DNS log line is a few hundred bytes (Zeek with many answers: a few KB); a longer one is
# quarantined as 'line-too-long' with its first bytes, so one hostile line cannot take gigabytes.
MAX_LINE_BYTES = 1 << 20
LINE_TOO_LONG = "line-too-long"
_OVERLONG_PREFIX = 200  # bytes of an overlong line kept in the quarantine
_BARE_CR = re.compile(rb"\r(?!\n)")


class LineBlocks:
    """Whole lines of a plain or gzip'd file (every member) in blocks of about ``block_bytes``.

    Iterating yields ``(block, is_last)``; every block but the last ends with ``\\n``.
    :meth:`segments` also yields the lines longer than ``max_line_bytes`` that were cut out
    just before each block (a DNS log line is a few hundred bytes; a longer one is damage or an
    attack, and holding it whole could take gigabytes). Memory stays at a few blocks however
    long a line or however far a gzip member inflates. A gzip stream cut short or damaged keeps
    what decompressed before the damage and sets ``truncated``; one that yields nothing at all
    is a :class:`LogFormatError`.
    """

    def __init__(
        self,
        path: Path,
        *,
        block_bytes: int = BLOCK_BYTES,
        on_progress: Progress | None = None,
        max_line_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.block_bytes = max(1, int(block_bytes))
        self.max_line_bytes = max(1, int(max_line_bytes or MAX_LINE_BYTES))
        self.on_progress = on_progress
        self.truncated = False

    def __iter__(self) -> Iterator[tuple[bytes, bool]]:
        for block, is_last, _ in self.segments():
            if block or not is_last:
                yield block, is_last

    def segments(self) -> Iterator[tuple[bytes, bool, list[str]]]:
        """``(block, is_last, overlong)``: ``overlong`` describes the lines cut out just before
        ``block``, in order; after overlong last lines the final block is empty."""
        previous: bytes | None = None
        pending: list[str] = []
        held: list[str] = []
        for item in self._blocks():
            if isinstance(item, _Overlong):
                pending.append(item.describe())
                continue
            if previous is not None:
                yield previous, False, held
            previous, held, pending = item, pending, []
        if previous is not None:
            yield previous, not pending, held
        if pending:
            yield b"", True, pending

    def _blocks(self) -> Iterator[bytes | _Overlong]:
        parts: list[bytes] = []
        size = tail = 0  # tail: bytes after the last newline held
        skipping: _Overlong | None = None
        for piece in self._pieces():
            if skipping is not None:  # inside an overlong line: drop bytes up to its end
                end = piece.find(b"\n")
                if end < 0:
                    skipping.size += len(piece)
                    continue
                skipping.size += end
                yield skipping
                skipping, piece = None, piece[end + 1 :]
            newline = piece.rfind(b"\n")
            tail = tail + len(piece) if newline < 0 else len(piece) - newline - 1
            parts.append(piece)
            size += len(piece)
            if tail > self.max_line_bytes:  # the line still open is already too long
                data = b"".join(parts)
                start = len(data) - tail
                yield from self._whole_lines(data[:start])
                skipping = _Overlong(data[start : start + _OVERLONG_PREFIX], tail)
                parts, size, tail = [], 0, 0
                continue
            if size < self.block_bytes or size == tail:
                continue  # a line longer than a block (but allowed): keep reading until it ends
            data = b"".join(parts)
            cut = len(data) - tail
            yield from self._whole_lines(data[:cut])
            parts, size = ([data[cut:]], tail) if tail else ([], 0)
        if skipping is not None:
            yield skipping
        if size:
            yield from self._whole_lines(b"".join(parts))

    def _whole_lines(self, data: bytes) -> Iterator[bytes | _Overlong]:
        """``data`` as it is, or cut around its lines longer than ``max_line_bytes``."""
        if len(data) <= self.max_line_bytes or not self._may_hold_overlong(data):
            if data:
                yield data
            return
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 0x0A)
        if not data.endswith(b"\n"):
            ends = np.append(ends, len(data))
        starts = np.concatenate(([0], ends[:-1] + 1))
        start = 0
        for index in np.flatnonzero(ends - starts > self.max_line_bytes).tolist():
            line_start, line_end = int(starts[index]), int(ends[index])
            if line_start > start:
                yield data[start:line_start]
            yield _Overlong(data[line_start : line_start + _OVERLONG_PREFIX], line_end - line_start)
            start = line_end + 1
        if start < len(data):
            yield data[start:]

    def _may_hold_overlong(self, data: bytes) -> bool:
        """Whether some aligned window of half the cap has no newline: a line over the cap
        always spans one, and a real log has a newline every few hundred bytes, so this costs
        a few short finds per block instead of a scan of every line."""
        half = max(1, self.max_line_bytes // 2)
        return any(data.find(b"\n", start, start + half) < 0 for start in range(0, len(data), half))

    def _raw(self, handle, size: int) -> bytes:
        raw = handle.read(size)
        if raw and self.on_progress is not None:
            self.on_progress(len(raw))
        return raw

    def _pieces(self) -> Iterator[bytes]:
        try:
            yield from self._read()
        except OSError as error:  # gone, unreadable or a device error mid-file: one clear line
            raise LogFormatError(
                f"{self.path}: cannot be read ({error.strerror or error}); fix: check that the "
                "file exists, is a regular file and is readable by this user"
            ) from None

    def _read(self) -> Iterator[bytes]:
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


@dataclass
class _Overlong:
    """A line longer than the cap: its first bytes and its length (newline excluded)."""

    prefix: bytes
    size: int

    def describe(self) -> str:
        """The quarantine's raw text: the first bytes, then how long the line was."""
        text = self.prefix.rstrip(b"\r").decode("utf-8", "backslashreplace")
        return f"{text}... [a line of {self.size} bytes]"


def overlong_lines(first_line: int, described: list[str]) -> list[BadLine]:
    """The quarantine entries of lines cut out by :class:`LineBlocks`, numbered from first_line."""
    return [(first_line + offset, LINE_TOO_LONG, text) for offset, text in enumerate(described)]


def is_utf8(buffer: memoryview) -> bool:
    """Whether the bytes are valid UTF-8 (checked by Arrow, without copying them)."""
    offsets = pa.py_buffer(np.array([0, len(buffer)], dtype=np.int64))
    array = pa.Array.from_buffers(pa.large_string(), 1, [None, offsets, pa.py_buffer(buffer)])
    try:
        array.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


class LineText:
    """Raw text of a buffer's lines by 0-based index; the newline scan runs only if asked."""

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


def prepare_lines(data: bytes, start: int, end: int) -> memoryview | bytes:
    """``data[start:end]`` as Arrow must see it: one row per '\\n' line, valid UTF-8."""
    buffer: memoryview | bytes = memoryview(data)[start:end]
    if data.find(b"\r", start, end) >= 0 and data.count(b"\r", start, end) != data.count(
        b"\r\n", start, end
    ):
        # Arrow ends a row at a bare CR; Zeek never writes one, it would be escaped as \x0d
        buffer = _BARE_CR.sub(rb"\\x0d", bytes(buffer))
    if not is_utf8(memoryview(buffer)):
        # Zeek escapes non-UTF-8 bytes; rewriting stray ones as \xNN keeps the line count and
        # sends them down the same path (query: 'undecodable', ts: 'bad-timestamp')
        buffer = bytes(buffer).decode("utf-8", "backslashreplace").encode("utf-8")
    return buffer
