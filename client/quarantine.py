"""Quarantine: bad input lines kept aside with line number and reason, never dropped silently."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import TextIO

HEADER = "line\treason\traw\n"
# Every control and line-break character is escaped, so even str.splitlines() keeps one
# record per line: \t \n \r \\ by name, the rest as \xNN or \uNNNN.
_ESCAPES = {code: f"\\x{code:02x}" for code in [*range(0x20), 0x7F, 0x85]}
_ESCAPES |= {0x2028: "\\u2028", 0x2029: "\\u2029"}
_ESCAPES |= {ord("\\"): "\\\\", ord("\t"): "\\t", ord("\n"): "\\n", ord("\r"): "\\r"}


def escape_field(text: str) -> str:
    r"""Escape backslash and control characters so one record stays on one TSV line.

    >>> escape_field("a\tb\\c")
    'a\\tb\\\\c'
    """
    return text.translate(_ESCAPES)


class Quarantine:
    """Bad input lines kept with line number and reason, counted per reason; never dropped silently.

    One TSV file per source file, ``<directory>/<source-name>.tsv`` with the header
    ``line\treason\traw``. The directory and each file are created on the first write
    for that source (a fresh file per ``Quarantine``: a rerun replaces the old one).
    Two sources with the same file name in different folders get distinct files
    (``<name>-<8 hex of the full path>.tsv``) so line numbers stay unambiguous.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self._files: dict[str, TextIO] = {}
        self._paths: dict[str, Path] = {}
        self._counts: dict[str, Counter[str]] = {}

    def add(self, *, source: Path | str, line_number: int, reason: str, raw: str) -> None:
        """Write one bad line (``line_number`` 1-based in ``source``), counted under ``reason``."""
        key = str(source)
        handle = self._files.get(key) or self._open(key)
        handle.write(f"{line_number}\t{escape_field(reason)}\t{escape_field(raw)}\n")
        self._counts.setdefault(key, Counter())[reason] += 1

    def counts(self) -> dict[str, int]:
        """Reason -> number of quarantined lines, over all sources."""
        total: Counter[str] = Counter()
        for per_source in self._counts.values():
            total.update(per_source)
        return dict(total)

    def counts_for(self, source: Path | str) -> dict[str, int]:
        """Reason -> number of quarantined lines for one source."""
        return dict(self._counts.get(str(source), {}))

    def file_for(self, source: Path | str) -> Path | None:
        """The quarantine file of ``source``, or None when nothing was quarantined from it."""
        return self._paths.get(str(source))

    @property
    def total(self) -> int:
        """Number of quarantined lines over all sources."""
        return sum(sum(per_source.values()) for per_source in self._counts.values())

    def flush(self) -> None:
        """Push buffered records to disk (files stay open)."""
        for handle in self._files.values():
            handle.flush()

    def close(self) -> None:
        """Close every quarantine file; counts stay readable."""
        for handle in self._files.values():
            handle.close()
        self._files.clear()

    def __enter__(self) -> Quarantine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _open(self, key: str) -> TextIO:
        path = self._paths.get(key)
        mode = "a"  # reopened after close(): keep what was written
        if path is None:
            path = self._unique_path(key)
            self._paths[key] = path
            mode = "w"
        self.directory.mkdir(parents=True, exist_ok=True)
        # backslashreplace: raw text may carry surrogate escapes from undecodable bytes
        handle = open(path, mode, encoding="utf-8", errors="backslashreplace", newline="\n")  # noqa: SIM115
        if mode == "w":
            handle.write(HEADER)
        self._files[key] = handle
        return handle

    def _unique_path(self, key: str) -> Path:
        name = Path(key).name or "input"
        path = self.directory / f"{name}.tsv"
        if path in self._paths.values():
            digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:8]
            path = self.directory / f"{name}-{digest}.tsv"
        return path
