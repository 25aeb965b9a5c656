"""Whole lines of a log file: gzip-aware blocks for streaming, and text Arrow can parse per line."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from client.readers.base import LogFormatError, Progress

BLOCK_BYTES = 16 << 20  # one block of whole lines: a few hundred thousand records at most
ARROW_BLOCK_BYTES = 1 << 20  # Arrow's own default: cache friendly; a longer line gets one block
_BARE_CR = re.compile(rb"\r(?!\n)")


class LineBlocks:
    """Whole lines of a plain or gzip'd file (every member) in blocks of about ``block_bytes``.

    Iterating yields ``(block, is_last)``; every block but the last ends with ``\\n``. A gzip
    stream cut short or damaged keeps what decompressed before the damage and sets
    ``truncated``; one that yields nothing at all is a :class:`LogFormatError`.
    """

    def __init__(
        self, path: Path, *, block_bytes: int = BLOCK_BYTES, on_progress: Progress | None = None
    ) -> None:
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
